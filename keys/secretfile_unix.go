//go:build unix

package keys

import "syscall"

// openNoBlock keeps opening a named pipe from waiting for a writer.
const openNoBlock = syscall.O_NONBLOCK

// openNoFollow refuses a symbolic link in place of a file coffer keeps in
// .coffer.
const openNoFollow = syscall.O_NOFOLLOW
