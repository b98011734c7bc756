//go:build !linux

package rewrap

import (
	"errors"
	iofs "io/fs"
	"path/filepath"
)

// walk calls f with the path of every regular file under backing (twice:
// as the path to use and for messages), skipping the .coffer folder at its
// root and entries that vanish meanwhile.
func walk(backing string, f func(path, full string)) error {
	return filepath.WalkDir(backing, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, iofs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() && p != backing && filepath.Dir(p) == filepath.Clean(backing) &&
			d.Name() == ".coffer" {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			f(p, p)
		}
		return nil
	})
}
