//go:build !unix

package keys

// openNoBlock is not needed where named pipes cannot be opened as files.
const openNoBlock = 0
