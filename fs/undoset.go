//go:build linux

package fs

import (
	"sync"

	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/content"
)

// undoSet is the set of undo records in the backing directory, by file
// name. The mount lists the undo folder once and then tracks the records it
// writes and removes, so that unlinking, renaming over or truncating a file
// reads the file's header and removes a record only when the volume holds
// any: with none, an unlink is one backing unlink.
type undoSet struct {
	mu    sync.Mutex
	names map[string]struct{}

	// shared is set in shared mode, where other processes write and
	// remove records: the set then claims every record may exist.
	shared bool
}

// load adds the records in the undo folder of f's backing directory,
// listed without following a link.
func (s *undoSet) load(f *filesystem) {
	dfd, err := f.openUndoDir(false)
	if err != nil {
		return
	}
	names, err := listDir(dfd)
	_ = unix.Close(dfd)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range names {
		s.addLocked(name)
	}
}

func (s *undoSet) addLocked(name string) {
	if s.names == nil {
		s.names = make(map[string]struct{})
	}
	s.names[name] = struct{}{}
}

// add records that the record of file id exists.
func (s *undoSet) add(id content.FileID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addLocked(content.UndoName(id))
}

// empty reports whether the volume holds no undo record.
func (s *undoSet) empty() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.names) == 0 && !s.shared
}

// take forgets the record of file id and reports whether it existed.
func (s *undoSet) take(id content.FileID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := content.UndoName(id)
	_, ok := s.names[name]
	delete(s.names, name)
	return ok || s.shared
}
