// Package fs is coffer's FUSE file system: a go-fuse node tree over a backing
// directory in which every regular file is stored encrypted.
package fs
