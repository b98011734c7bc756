//go:build !unix

package keys

// openNoBlock is not needed where named pipes cannot be opened as files.
const openNoBlock = 0

// openNoFollow has no counterpart here; CheckReserved refuses links.
const openNoFollow = 0
