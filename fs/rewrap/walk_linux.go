package rewrap

import (
	iofs "io/fs"
	"path/filepath"

	"github.com/cofferfs/coffer/fs/deeppath"
)

// walk calls f for every regular file under backing, skipping the .coffer
// folder at its root and entries that vanish meanwhile, with a path that
// reaches the file however deep it lies and its full path for messages.
func walk(backing string, f func(path, full string)) error {
	return deeppath.Walk(backing, func(e deeppath.Entry) error {
		if e.IsDir() && e.Rel == ".coffer" {
			return iofs.SkipDir
		}
		if e.Type().IsRegular() {
			f(e.Path, filepath.Join(backing, e.Rel))
		}
		return nil
	})
}
