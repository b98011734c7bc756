package recovery

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/masterkey"
)

func newKey(t *testing.T) *PrivateKey {
	t.Helper()
	k, err := Generate()
	require.NoError(t, err)
	t.Cleanup(k.Wipe)
	return k
}

func TestTextRoundTrip(t *testing.T) {
	k := newKey(t)
	text := k.Text()
	lines := strings.Split(text, "\n")
	require.Len(t, lines, 2)
	for _, l := range lines {
		assert.Len(t, strings.Split(l, "-"), 7)
		assert.Len(t, l, 7*5+6)
	}

	variants := map[string]string{
		"as printed":       text,
		"lower case":       strings.ToLower(text),
		"one line":         strings.ReplaceAll(text, "\n", "-"),
		"spaces":           strings.NewReplacer("-", " ", "\n", "  ").Replace(text),
		"no separators":    strings.NewReplacer("-", "", "\n", "").Replace(text),
		"with comments":    "# coffer recovery key\n\n" + text + "\n# end\n",
		"O for 0, l for 1": strings.NewReplacer("0", "O", "1", "l").Replace(text),
		// The breaker's case: a dash left out between groups 6 and 7.
		"one dash missing": dropDash(text, 6),
		"dashes and spaces mixed, some missing": strings.NewReplacer("\n", " ").Replace(
			dropDash(dropDash(text, 2), 9)),
		"lines without dashes": strings.ReplaceAll(text, "-", ""),
	}
	for name, v := range variants {
		t.Run(name, func(t *testing.T) {
			got, err := Parse(v)
			require.NoError(t, err)
			defer got.Wipe()
			assert.Equal(t, k.Fingerprint(), got.Fingerprint())
			assert.Equal(t, k.secret.InsecureBytes(), got.secret.InsecureBytes())
		})
	}
}

// groupsOf returns the 14 groups of a printed key.
func groupsOf(text string) []string {
	return strings.FieldsFunc(text, func(r rune) bool { return r == '-' || r == '\n' })
}

func TestEverySingleTypoNamesItsGroup(t *testing.T) {
	k := newKey(t)
	grps := groupsOf(k.Text())
	require.Len(t, grps, groups)
	for g := range grps {
		for i := range groupSize {
			for _, c := range []byte(alphabet) {
				if c == grps[g][i] {
					continue
				}
				typo := []byte(grps[g])
				typo[i] = c
				edited := append([]string(nil), grps...)
				edited[g] = string(typo)

				_, err := Parse(strings.Join(edited, "-"))
				var ce *ChecksumError
				require.ErrorAs(t, err, &ce, "group %d char %d -> %c", g+1, i, c)
				assert.Equal(t, g+1, ce.Group)
				assert.ErrorIs(t, err, ErrTypo)
			}
		}
	}
}

func TestTypoMessages(t *testing.T) {
	k := newKey(t)
	grps := groupsOf(k.Text())
	swap := append([]string(nil), grps...)
	swap[2], swap[5] = swap[5], swap[2]
	short := append([]string(nil), grps...)
	short[3] = short[3][:4]
	bad := append([]string(nil), grps...)
	bad[0] = "U" + bad[0][1:]

	tests := []struct {
		name string
		text string
		want string
	}{
		{"swapped groups", strings.Join(swap, "-"), "recovery key group 3 is mistyped"},
		{"short group", strings.Join(short, "-"), "recovery key group 4 has 4 characters, want 5"},
		{"bad character", strings.Join(bad, "-"), "recovery key group 1 has 'U', which is not"},
		{"missing group", strings.Join(grps[:13], "-"), "has 13 groups, want 14"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.text)
			require.ErrorIs(t, err, ErrTypo)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestSealUnseal(t *testing.T) {
	ctx := context.Background()
	k := newKey(t)
	other := newKey(t)
	ad := []byte("coffer-ring-v1\x00volume-and-master")
	pt := []byte(`{"ring":"payload"}`)

	pubOnly, err := NewMaster(k.Params(), nil)
	require.NoError(t, err)
	sealed, err := pubOnly.Seal(ctx, pt, ad)
	require.NoError(t, err)
	assert.NotContains(t, string(sealed), "payload")

	_, err = pubOnly.Unseal(ctx, sealed, ad)
	require.ErrorIs(t, err, ErrNoPrivateKey)

	full, err := NewMaster(k.Params(), k)
	require.NoError(t, err)
	got, err := full.Unseal(ctx, sealed, ad)
	require.NoError(t, err)
	assert.Equal(t, pt, got)

	_, err = full.Unseal(ctx, sealed, []byte("coffer-ring-v1\x00other-master"))
	require.ErrorIs(t, err, keys.ErrWrongKey)
	tampered := append([]byte(nil), sealed...)
	tampered[len(tampered)-1] ^= 1
	_, err = full.Unseal(ctx, tampered, ad)
	require.ErrorIs(t, err, keys.ErrWrongKey)

	_, err = NewMaster(k.Params(), other)
	require.ErrorIs(t, err, ErrOtherKey)
}

func TestKindOpen(t *testing.T) {
	ctx := context.Background()
	k := newKey(t)
	e, err := k.Enrollment()
	require.NoError(t, err)
	entry := keys.MasterEntry{ID: "0a0b0c0d", Kind: Kind, URI: URI, Params: e.Params}
	sealed, err := e.Master.Seal(ctx, []byte("ring"), []byte("ad"))
	require.NoError(t, err)

	dir := t.TempDir()
	file := filepath.Join(dir, "recovery.txt")
	require.NoError(t, os.WriteFile(file, []byte("# key\n"+k.Text()+"\n"), 0o600))
	m, err := masterkey.Open(ctx, entry, masterkey.Options{RecoveryKey: file})
	require.NoError(t, err)
	got, err := m.Unseal(ctx, sealed, []byte("ad"))
	require.NoError(t, err)
	assert.Equal(t, "ring", string(got))

	stdin := func(context.Context) (*keys.Secret, error) {
		return keys.SecretFromBytes([]byte(strings.ToLower(k.Text()))), nil
	}
	m, err = masterkey.Open(ctx, entry, masterkey.Options{RecoveryKey: "-", RecoveryKeyText: stdin})
	require.NoError(t, err)
	_, err = m.Unseal(ctx, sealed, []byte("ad"))
	require.NoError(t, err)

	require.NoError(t, os.Chmod(file, 0o640))
	_, err = masterkey.Open(ctx, entry, masterkey.Options{RecoveryKey: file})
	var perm *PermissionError
	require.True(t, errors.As(err, &perm), "got %v", err)

	_, err = masterkey.Enroll(ctx, URI, masterkey.Options{})
	require.ErrorIs(t, err, ErrNoPrivateKey)
	_, err = masterkey.Parse("recovery:abc")
	require.ErrorIs(t, err, masterkey.ErrMalformed)
}

// dropDash removes the n-th dash (1-based) of text.
func dropDash(text string, n int) string {
	for i, c := range text {
		if c == '-' {
			if n--; n == 0 {
				return text[:i] + text[i+1:]
			}
		}
	}
	panic("too few dashes")
}
