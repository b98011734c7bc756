//go:build linux

// Package stress holds coffer's robustness tests and the random-operation
// exerciser they drive.
//
// The exerciser ([Run], [Main], command stress/exerciser) applies a seeded
// random sequence of operations ([Op]) to files in the file system under
// test and to files in a reference directory, in lockstep, and compares
// what every operation returns, the file size, the blocks around the range
// it touched and, every Config.FullEvery operations, the whole file read
// through a new descriptor. Operations cross 4096-byte block boundaries
// often and write from 1 byte to 300 KiB. On a mismatch the worker replays
// its operation log on new files to confirm the failure, keeps only the
// failing file's operations if that still fails, then shrinks the log by
// delta debugging (Zeller's ddmin) within a bounded number of replays, and
// prints the seed and the minimal log, which -replay runs again.
//
// The tests of this package mount coffer for real, as root, and cover
// what docs/testing.md lists: the exerciser on a coffer mount, crash
// consistency (kill -9 of the mount process during writes), tampering with
// the backing directory while mounted and not, a full backing file system,
// concurrent writers on overlapping and disjoint ranges, and fuzz targets
// for parsers of untrusted bytes that have none in their own package.
package stress
