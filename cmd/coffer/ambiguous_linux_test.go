package main

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
)

// addDecoy puts a copy of the entry of master key id first in the volume
// config, as whoever can write the backing directory can: a new ID, the
// same URI, params changed so that the config still parses, the sealed
// copy copied and no tag.
func addDecoy(t *testing.T, backing, id, decoy string) {
	t.Helper()
	b, err := os.ReadFile(keys.ConfigPath(backing))
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	masters := m["masters"].([]any)
	var dup map[string]any
	for _, e := range masters {
		if e.(map[string]any)["id"] == id {
			dup = map[string]any{}
			for k, v := range e.(map[string]any) {
				dup[k] = v
			}
		}
	}
	require.NotNil(t, dup, "no master key %s", id)
	dup["id"] = decoy
	dup["params"] = map[string]any{"copy": true}
	delete(dup, "tag")
	m["masters"] = append([]any{dup}, masters...)
	sealed := m["ring"].(map[string]any)["sealed"].(map[string]any)
	sealed[decoy] = sealed[id]
	b, err = json.Marshal(m)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(keys.ConfigPath(backing), b, 0o600))
}

// TestURINamingSeveralMasters checks that a URI that several master
// entries have is refused wherever a master key is named by URI, instead
// of acting on the first entry (breaker4 F10: a replacement hit a decoy
// and the compromised entry stayed).
func TestURINamingSeveralMasters(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	real := f.masterID(t, f.keyURI())
	second := f.newKey(t, "second.key")
	requireOK(t, cli(t, "master", "add", f.backing, second))
	addDecoy(t, f.backing, real, "dec0dec0")
	before := f.config(t)
	newURI := f.newKey(t, "new.key")

	want := "names 2 master keys of the volume: dec0dec0, " + real
	tests := []struct {
		name string
		run  func() result
	}{
		{"rotate --master OLD=NEW", func() result {
			return cli(t, "rotate", f.backing, "--master", f.keyURI()+"="+newURI, "--with", second)
		}},
		{"rotate --skip-master", func() result {
			return cli(t, "rotate", f.backing, "--skip-master", f.keyURI())
		}},
		{"master add --with", func() result {
			return cli(t, "master", "add", f.backing, newURI, "--with", f.keyURI())
		}},
		{"master remove --with", func() result {
			return cli(t, "master", "remove", f.backing, "dec0dec0", "--with", f.keyURI())
		}},
		{"mount --master", func() result { return f.mount(t, "--master", f.keyURI()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.run()
			assertFailure(t, r, exitFailure, want)
			assert.Contains(t, r.stderr, "hint: give the ID instead")
			assert.Equal(t, string(before), string(f.config(t)), "config unchanged")
		})
	}
	assert.False(t, isMounted(t, f.mnt))

	// The ID still picks the entry.
	requireOK(t, cli(t, "rotate", f.backing, "--master", real+"="+newURI, "--with", second))
	ids := map[string]bool{}
	for _, m := range f.masters(t) {
		ids[m.ID] = true
	}
	assert.False(t, ids[real], "the named entry was replaced")
	assert.True(t, ids["dec0dec0"], "the decoy is left for the admin to remove")
}
