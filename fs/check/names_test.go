//go:build linux

package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/fs/names"
)

// namedVolume is a volume with encrypted names built by hand from
// docs/format.md ("Names"), independently of package fs:
//
//	/a            file
//	/d/           directory with its own record
//	/d/b          file
//	/d/LLL…       file with a long name (and its sidecar)
type namedVolume struct {
	*volume
	root, sub *names.Key
	a, d, b   string // backing names
	long      string // backing name of d's long-named file
	longPlain string
}

func newNamedVolume(t *testing.T) *namedVolume {
	t.Helper()
	v := &namedVolume{volume: newVolume(t), longPlain: strings.Repeat("L", 200)}
	v.root = v.record(t, ".")
	v.a = v.name(t, v.root, "a")
	v.d = v.name(t, v.root, "d")
	require.NoError(t, os.Mkdir(filepath.Join(v.dir, v.d), 0o700))
	v.sub = v.record(t, v.d)
	v.b = v.name(t, v.sub, "b")
	nm, err := v.sub.Encrypt(v.longPlain)
	require.NoError(t, err)
	require.True(t, nm.Long())
	v.long = nm.Backing
	v.write(t, filepath.Join(v.d, names.Sidecar(v.long)), nm.Sidecar)

	v.write(t, v.a, v.newFile(t, plain(1, 2*bs)).data)
	v.write(t, filepath.Join(v.d, v.b), v.newFile(t, plain(2, 10)).data)
	v.write(t, filepath.Join(v.d, v.long), v.newFile(t, plain(3, 10)).data)
	return v
}

// record writes a new record into backing directory rel and returns its
// name key.
func (v *namedVolume) record(t *testing.T, rel string) *names.Key {
	t.Helper()
	b, k, err := names.NewRecord(v.ring, v.id)
	require.NoError(t, err)
	v.write(t, filepath.Join(rel, names.RecordName), b)
	return k
}

func (v *namedVolume) name(t *testing.T, k *names.Key, plain string) string {
	t.Helper()
	nm, err := k.Encrypt(plain)
	require.NoError(t, err)
	require.False(t, nm.Long())
	return nm.Backing
}

func (v *namedVolume) run(t *testing.T, repair bool) *Report {
	t.Helper()
	r, err := Run(v.dir, Options{VolumeID: v.id, Keys: v.ring, EncryptedNames: true, Repair: repair})
	require.NoError(t, err)
	return r
}

func (v *namedVolume) path(rel ...string) string {
	return filepath.Join(append([]string{v.dir}, rel...)...)
}

// brief returns the problems without their details.
func brief(r *Report) []Problem {
	out := []Problem{}
	for _, p := range r.Problems {
		p.Detail = ""
		out = append(out, p)
	}
	return out
}

func TestNamesClean(t *testing.T) {
	v := newNamedVolume(t)
	r := v.run(t, false)
	assert.Equal(t, []Problem{}, r.Problems, "an empty list, not nil")
	assert.Equal(t, 3, r.Files)
	assert.False(t, r.Damaged())

	// Damage in a file names its decrypted path.
	raw := readFile(t, v.volume, filepath.Join(v.d, v.long))
	raw[len(raw)-1] ^= 1
	v.write(t, filepath.Join(v.d, v.long), raw)
	r = v.run(t, false)
	require.Len(t, r.Problems, 1)
	assert.Equal(t, "d/"+v.longPlain, r.Problems[0].Path)
	assert.Equal(t, KindBlock, r.Problems[0].Kind)
}

// TestNamesProblems damages records, names and sidecars and checks what is
// reported, that a check changes nothing, what --repair does, and that the
// files are still checked.
func TestNamesProblems(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, v *namedVolume)
		want   func(v *namedVolume) []Problem
		detail string // in the first problem's detail
		files  int    // files checked
	}{
		{
			name: "root record overwritten in the middle",
			damage: func(t *testing.T, v *namedVolume) {
				raw := readFile(t, v.volume, names.RecordName)
				copy(raw[60:], "garbage")
				v.write(t, names.RecordName, raw)
			},
			want: func(v *namedVolume) []Problem {
				return []Problem{{Backing: ".", Path: ".", Block: -1, Kind: KindRecord, Repair: RepairNone}}
			},
			detail: "restore this directory's .coffer.dir from a backup",
			files:  3,
		},
		{
			name: "root record zeroed",
			damage: func(t *testing.T, v *namedVolume) {
				v.write(t, names.RecordName, make([]byte, names.RecordSize))
			},
			want: func(v *namedVolume) []Problem {
				return []Problem{{Backing: ".", Path: ".", Block: -1, Kind: KindRecord, Repair: RepairNone}}
			},
			detail: "damaged",
			files:  3,
		},
		{
			name: "root record deleted",
			damage: func(t *testing.T, v *namedVolume) {
				require.NoError(t, os.Remove(v.path(names.RecordName)))
			},
			want: func(v *namedVolume) []Problem {
				return []Problem{{Backing: ".", Path: ".", Block: -1, Kind: KindRecord, Repair: RepairNone}}
			},
			detail: "missing",
			files:  3,
		},
		{
			name: "subdirectory record deleted",
			damage: func(t *testing.T, v *namedVolume) {
				require.NoError(t, os.Remove(v.path(v.d, names.RecordName)))
			},
			want: func(v *namedVolume) []Problem {
				return []Problem{{Backing: v.d, Path: "d", Block: -1, Kind: KindRecord, Repair: RepairNone}}
			},
			detail: "missing",
			files:  3,
		},
		{
			name: "subdirectory record of another volume",
			damage: func(t *testing.T, v *namedVolume) {
				b, _, err := names.NewRecord(v.ring, [16]byte{1})
				require.NoError(t, err)
				v.write(t, filepath.Join(v.d, names.RecordName), b)
			},
			want: func(v *namedVolume) []Problem {
				return []Problem{{Backing: v.d, Path: "d", Block: -1, Kind: KindRecord, Repair: RepairNone}}
			},
			detail: "no key slot",
			files:  3,
		},
		{
			name: "root and subdirectory records swapped",
			damage: func(t *testing.T, v *namedVolume) {
				root, sub := readFile(t, v.volume, names.RecordName), readFile(t, v.volume, filepath.Join(v.d, names.RecordName))
				v.write(t, names.RecordName, sub)
				v.write(t, filepath.Join(v.d, names.RecordName), root)
			},
			want: func(v *namedVolume) []Problem {
				return []Problem{
					{Backing: ".", Path: ".", Block: -1, Kind: KindRecord, Repair: RepairNone},
					{Backing: v.d, Path: "", Block: -1, Kind: KindRecord, Repair: RepairNone},
				}
			},
			detail: "not this directory's own record",
			files:  3,
		},
		{
			name: "name moved from another directory",
			damage: func(t *testing.T, v *namedVolume) {
				require.NoError(t, os.Rename(v.path(v.d, v.b), v.path(v.b)))
			},
			want: func(v *namedVolume) []Problem {
				return []Problem{{Backing: v.b, Path: "", Block: -1, Kind: KindName, Repair: RepairNone}}
			},
			detail: "moved here from another directory",
			files:  3,
		},
		{
			name: "name not written by coffer",
			damage: func(t *testing.T, v *namedVolume) {
				v.write(t, ".profile", nil)
			},
			want: func(v *namedVolume) []Problem {
				return []Problem{{Backing: ".profile", Path: "", Block: -1, Kind: KindName, Repair: RepairNone}}
			},
			detail: "never start with a dot",
			files:  3,
		},
		{
			name: "long-name sidecar deleted",
			damage: func(t *testing.T, v *namedVolume) {
				require.NoError(t, os.Remove(v.path(v.d, names.Sidecar(v.long))))
			},
			want: func(v *namedVolume) []Problem {
				return []Problem{{Backing: filepath.Join(v.d, v.long), Block: -1, Kind: KindSidecar, Repair: RepairNone}}
			},
			detail: "missing",
			files:  3,
		},
		{
			name: "long-name sidecar damaged",
			damage: func(t *testing.T, v *namedVolume) {
				sc := readFile(t, v.volume, filepath.Join(v.d, names.Sidecar(v.long)))
				sc[5] ^= 1
				v.write(t, filepath.Join(v.d, names.Sidecar(v.long)), sc)
			},
			want: func(v *namedVolume) []Problem {
				return []Problem{{Backing: filepath.Join(v.d, v.long), Block: -1, Kind: KindSidecar, Repair: RepairNone}}
			},
			detail: "does not hash",
			files:  3,
		},
		{
			name: "sidecar without its long name",
			damage: func(t *testing.T, v *namedVolume) {
				require.NoError(t, os.Remove(v.path(v.d, v.long)))
			},
			want: func(v *namedVolume) []Problem {
				return []Problem{{Backing: filepath.Join(v.d, names.Sidecar(v.long)), Block: -1, Kind: KindSidecar,
					Repair: RepairRemove}}
			},
			detail: "safe to remove",
			files:  2,
		},
		{
			name: "directory being made when the mount stopped",
			damage: func(t *testing.T, v *namedVolume) {
				require.NoError(t, os.Mkdir(v.path(v.d, names.TmpPrefix+"0123456789abcdef"), 0o700))
				v.record(t, filepath.Join(v.d, names.TmpPrefix+"0123456789abcdef"))
			},
			want: func(v *namedVolume) []Problem {
				return []Problem{{Backing: filepath.Join(v.d, names.TmpPrefix+"0123456789abcdef"), Block: -1,
					Kind: KindTemporary, Repair: RepairRemove}}
			},
			detail: "a directory being made",
			files:  3,
		},
		{
			name: "sidecar being written when the mount stopped",
			damage: func(t *testing.T, v *namedVolume) {
				v.write(t, names.TmpPrefix+"00ff", make([]byte, 220))
			},
			want: func(v *namedVolume) []Problem {
				return []Problem{{Backing: names.TmpPrefix + "00ff", Block: -1, Kind: KindTemporary,
					Repair: RepairRemove}}
			},
			detail: "a name sidecar being written",
			files:  3,
		},
		{
			name: "copy left by an interrupted re-encryption",
			damage: func(t *testing.T, v *namedVolume) {
				v.write(t, filepath.Join(v.d, names.ReencryptPrefix+"0011223344556677.ab"),
					make([]byte, 5000))
			},
			want: func(v *namedVolume) []Problem {
				return []Problem{{Backing: filepath.Join(v.d, names.ReencryptPrefix+"0011223344556677.ab"),
					Block: -1, Kind: KindTemporary, Repair: RepairRemove}}
			},
			detail: "interrupted coffer rotate --reencrypt",
			files:  3,
		},
		{
			name: "temporary directory holding data is kept",
			damage: func(t *testing.T, v *namedVolume) {
				require.NoError(t, os.Mkdir(v.path(names.TmpPrefix+"1"), 0o700))
				v.record(t, names.TmpPrefix+"1")
				v.write(t, filepath.Join(names.TmpPrefix+"1", "data"), []byte("keep me"))
			},
			want: func(v *namedVolume) []Problem {
				return []Problem{{Backing: names.TmpPrefix + "1", Block: -1, Kind: KindTemporary, Repair: RepairNone}}
			},
			detail: "move it out",
			files:  3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newNamedVolume(t)
			tt.damage(t, v)
			want := tt.want(v)
			r := v.run(t, false)
			assert.Equal(t, want, brief(r))
			require.NotEmpty(t, r.Problems)
			assert.Contains(t, r.Problems[0].Detail, tt.detail)
			assert.True(t, r.Damaged())
			assert.Equal(t, tt.files, r.Files, "the files are checked all the same")
			for _, p := range r.Problems {
				assert.NotContains(t, p.Detail, "\n")
			}

			// Nothing was removed without --repair; with it, what can be
			// removed is, and the rest stays.
			var removable []string
			for _, p := range want {
				if p.Repair == RepairRemove {
					_, err := os.Lstat(v.path(p.Backing))
					assert.NoError(t, err, "a check without --repair removes nothing")
					removable = append(removable, p.Backing)
				}
			}
			if _, err := os.Stat(v.path(names.TmpPrefix+"1", "data")); err == nil {
				defer func() {
					b := readFile(t, v.volume, filepath.Join(names.TmpPrefix+"1", "data"))
					assert.Equal(t, "keep me", string(b))
				}()
			}
			r = v.run(t, true)
			for i := range want {
				want[i].Repaired = want[i].Repair == RepairRemove
			}
			assert.Equal(t, want, brief(r))
			for _, rel := range removable {
				assert.NoFileExists(t, v.path(rel))
				assert.NoDirExists(t, v.path(rel))
			}
			r = v.run(t, false)
			assert.Equal(t, len(removable) == 0, r.Damaged(), "after the repair: %+v", r.Problems)
		})
	}
}

// TestNamesRecordSlot gives the root record a current slot that fails next
// to one that works: reported, not damage, as for a file header.
func TestNamesRecordSlot(t *testing.T) {
	v := newNamedVolume(t)
	rec, err := names.ParseRecord(readFile(t, v.volume, names.RecordName))
	require.NoError(t, err)
	s := rec.Slots[0]
	bad := append([]byte(nil), s.Wrapped...)
	bad[len(bad)-1] ^= 1
	rec.Slots[1] = s
	rec.Slots[1].Generation, rec.Slots[1].Wrapped = 2, bad
	b, err := rec.MarshalBinary()
	require.NoError(t, err)
	v.write(t, names.RecordName, b)

	r := v.run(t, false)
	assert.Equal(t, []Problem{{Backing: ".", Path: ".", Block: -1, Kind: KindSlot, Repair: RepairNone}}, brief(r))
	assert.False(t, r.Damaged())
}
