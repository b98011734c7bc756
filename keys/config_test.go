package keys

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// plainMaster is a Master for tests of this package: it appends a hash of
// the associated data instead of encrypting.
type plainMaster struct{}

func (plainMaster) Seal(_ context.Context, pt, ad []byte) ([]byte, error) {
	sum := sha256.Sum256(ad)
	return append(append([]byte{}, pt...), sum[:]...), nil
}

func (plainMaster) Unseal(_ context.Context, sealed, ad []byte) ([]byte, error) {
	sum := sha256.Sum256(ad)
	if len(sealed) < len(sum) || string(sealed[len(sealed)-len(sum):]) != string(sum[:]) {
		return nil, ErrWrongKey
	}
	return append([]byte{}, sealed[:len(sealed)-len(sum)]...), nil
}

func plainEnrollment() Enrollment {
	return Enrollment{Kind: "test", URI: "test:", Master: plainMaster{}}
}

// validConfigJSON returns the JSON of a freshly built valid config.
func validConfigJSON(t testing.TB) []byte {
	t.Helper()
	cfg, _, err := newVolume(context.Background(), []Enrollment{plainEnrollment()}, NamesEncrypted)
	require.NoError(t, err)
	b, err := json.MarshalIndent(cfg, "", "  ")
	require.NoError(t, err)
	return b
}

// editConfig decodes valid config JSON into a generic map, applies f and
// encodes it again.
func editConfig(t *testing.T, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(validConfigJSON(t), &m))
	f(m)
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return b
}

func firstMaster(m map[string]any) map[string]any {
	return m["masters"].([]any)[0].(map[string]any)
}

func ringOf(m map[string]any) map[string]any { return m["ring"].(map[string]any) }

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		wantErr error
		msg     []string
	}{
		{name: "valid", data: validConfigJSON(t)},
		{name: "version 2", data: editConfig(t, func(m map[string]any) { m["version"] = 2 }),
			wantErr: ErrUnsupportedVersion, msg: []string{"version 2", "version 1"}},
		{name: "version 2 with unknown fields",
			data:    []byte(`{"version": 2, "everything": "changed"}`),
			wantErr: ErrUnsupportedVersion},
		{name: "format 2", data: editConfig(t, func(m map[string]any) { m["format"] = 2 }),
			wantErr: ErrUnsupportedVersion, msg: []string{"format 2"}},
		{name: "version 0", data: editConfig(t, func(m map[string]any) { m["version"] = 0 }),
			wantErr: ErrMalformed},
		{name: "no version", data: editConfig(t, func(m map[string]any) { delete(m, "version") }),
			wantErr: ErrMalformed},
		{name: "version as string", data: []byte(`{"version": "1"}`), wantErr: ErrMalformed},
		{name: "empty", data: nil, wantErr: ErrMalformed},
		{name: "not JSON", data: []byte("version = 1"), wantErr: ErrMalformed},
		{name: "truncated", data: validConfigJSON(t)[:100], wantErr: ErrMalformed},
		{name: "trailing data", data: append(validConfigJSON(t), []byte(" {}")...),
			wantErr: ErrMalformed},
		{name: "unknown field", data: editConfig(t, func(m map[string]any) { m["extra"] = 1 }),
			wantErr: ErrMalformed},
		{name: "names encrypted",
			data: editConfig(t, func(m map[string]any) { m["names"] = NamesEncrypted })},
		{name: "names plaintext",
			data: editConfig(t, func(m map[string]any) { m["names"] = NamesPlaintext })},
		{name: "names unknown", data: editConfig(t, func(m map[string]any) { m["names"] = "hashed" }),
			wantErr: ErrMalformed, msg: []string{"names"}},
		{name: "names not a string", data: editConfig(t, func(m map[string]any) { m["names"] = true }),
			wantErr: ErrMalformed},
		{name: "short volume ID",
			data:    editConfig(t, func(m map[string]any) { m["volume_id"] = "00ff" }),
			wantErr: ErrMalformed},
		{name: "upper-case volume ID", data: editConfig(t, func(m map[string]any) {
			m["volume_id"] = strings.ToUpper(m["volume_id"].(string))
		}), wantErr: ErrMalformed},
		{name: "zero volume ID", data: editConfig(t, func(m map[string]any) {
			m["volume_id"] = strings.Repeat("0", 32)
		}), wantErr: ErrMalformed},
		{name: "no masters", data: editConfig(t, func(m map[string]any) { m["masters"] = []any{} }),
			wantErr: ErrMalformed},
		{name: "bad master ID", data: editConfig(t, func(m map[string]any) {
			firstMaster(m)["id"] = "XYZ"
		}), wantErr: ErrMalformed},
		{name: "bad kind", data: editConfig(t, func(m map[string]any) {
			firstMaster(m)["kind"] = "Kind!"
		}), wantErr: ErrMalformed},
		{name: "empty URI", data: editConfig(t, func(m map[string]any) {
			firstMaster(m)["uri"] = ""
		}), wantErr: ErrMalformed},
		{name: "no tag (older coffer)", data: editConfig(t, func(m map[string]any) {
			delete(firstMaster(m), "tag")
		})},
		{name: "short tag", data: editConfig(t, func(m map[string]any) {
			firstMaster(m)["tag"] = map[string]any{"key": 1, "mac": "AAAA"}
		}), wantErr: ErrMalformed, msg: []string{"tag of 3 bytes"}},
		{name: "tag with unknown field", data: editConfig(t, func(m map[string]any) {
			firstMaster(m)["tag"].(map[string]any)["extra"] = 1
		}), wantErr: ErrMalformed},
		{name: "duplicate master", data: editConfig(t, func(m map[string]any) {
			m["masters"] = append(m["masters"].([]any), firstMaster(m))
		}), wantErr: ErrMalformed},
		{name: "one key listed twice under two IDs", data: editConfig(t, func(m map[string]any) {
			first := firstMaster(m)
			dup := map[string]any{}
			for k, v := range first {
				dup[k] = v
			}
			dup["id"] = "dec0dec0"
			delete(dup, "tag")
			m["masters"] = append([]any{dup}, m["masters"].([]any)...)
			sealed := ringOf(m)["sealed"].(map[string]any)
			sealed["dec0dec0"] = sealed[first["id"].(string)]
		}), wantErr: ErrMalformed, msg: []string{"dec0dec0", "listed twice"}},
		{name: "sealed copy missing", data: editConfig(t, func(m map[string]any) {
			ringOf(m)["sealed"] = map[string]any{}
		}), wantErr: ErrMalformed},
		{name: "sealed copy for unknown master", data: editConfig(t, func(m map[string]any) {
			ringOf(m)["sealed"] = map[string]any{"0badc0de": "AAAA"}
		}), wantErr: ErrMalformed},
		{name: "sealed copy not base64", data: editConfig(t, func(m map[string]any) {
			id := firstMaster(m)["id"].(string)
			ringOf(m)["sealed"] = map[string]any{id: "***"}
		}), wantErr: ErrMalformed},
		{name: "generation 0", data: editConfig(t, func(m map[string]any) {
			ringOf(m)["generation"] = 0
		}), wantErr: ErrMalformed},
		{name: "no ring keys", data: editConfig(t, func(m map[string]any) {
			ringOf(m)["keys"] = []any{}
		}), wantErr: ErrMalformed},
		{name: "ring key ID 0", data: editConfig(t, func(m map[string]any) {
			ringOf(m)["keys"].([]any)[0].(map[string]any)["id"] = 0
		}), wantErr: ErrMalformed},
		{name: "unknown key state", data: editConfig(t, func(m map[string]any) {
			ringOf(m)["keys"].([]any)[0].(map[string]any)["state"] = "lost"
		}), wantErr: ErrMalformed},
		{name: "no primary", data: editConfig(t, func(m map[string]any) {
			ringOf(m)["keys"].([]any)[0].(map[string]any)["state"] = "active"
		}), wantErr: ErrMalformed},
		{name: "bad time", data: editConfig(t, func(m map[string]any) { m["created"] = "today" }),
			wantErr: ErrMalformed},
		{name: "too large", data: make([]byte, maxConfigSize+1), wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfig(tt.data)
			if tt.wantErr == nil {
				require.NoError(t, err)
				assert.Equal(t, ConfigVersion, cfg.Version)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
			assert.Nil(t, cfg, "a refused config must not be half-read")
			for _, s := range tt.msg {
				assert.Contains(t, err.Error(), s)
			}
		})
	}
}

func TestReadConfigErrors(t *testing.T) {
	root := t.TempDir()
	plain := filepath.Join(root, "plain")
	require.NoError(t, os.Mkdir(plain, 0o755))
	halfInit := filepath.Join(root, "half")
	require.NoError(t, os.MkdirAll(filepath.Join(halfInit, DirName), 0o700))
	file := filepath.Join(root, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	newer := filepath.Join(root, "newer")
	require.NoError(t, os.MkdirAll(filepath.Join(newer, DirName), 0o700))
	require.NoError(t, os.WriteFile(ConfigPath(newer), []byte(`{"version":2}`), 0o600))

	tests := []struct {
		name    string
		backing string
		want    error
		msg     string
	}{
		{name: "missing", backing: filepath.Join(root, "nope"), want: iofs.ErrNotExist,
			msg: "does not exist"},
		{name: "not a directory", backing: file, msg: "not a directory"},
		{name: "not initialised", backing: plain, want: ErrNotInitialized, msg: plain},
		{name: "interrupted init", backing: halfInit, want: ErrNotInitialized,
			msg: "interrupted init"},
		{name: "newer version", backing: newer, want: ErrUnsupportedVersion,
			msg: "version 2 is newer than version 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ReadConfig(tt.backing)
			require.Error(t, err)
			assert.Nil(t, cfg)
			if tt.want != nil {
				assert.ErrorIs(t, err, tt.want)
			}
			assert.Contains(t, err.Error(), tt.msg)
			assert.NotErrorIs(t, err, ErrWrongKey)
		})
	}
}

func TestWriteConfig(t *testing.T) {
	backing := t.TempDir()
	cfg, err := parseConfig(validConfigJSON(t))
	require.NoError(t, err)

	err = WriteConfig(backing, cfg)
	require.ErrorIs(t, err, ErrNotInitialized, ".coffer must exist")

	require.NoError(t, os.Mkdir(filepath.Join(backing, DirName), 0o700))
	require.NoError(t, WriteConfig(backing, cfg))
	got, err := ReadConfig(backing)
	require.NoError(t, err)
	assert.Equal(t, cfg.VolumeID, got.VolumeID)
	assert.Equal(t, cfg.Ring.Sealed, got.Ring.Sealed)

	cfg.Ring.Generation = 7
	require.NoError(t, WriteConfig(backing, cfg), "replacing a config")
	got, err = ReadConfig(backing)
	require.NoError(t, err)
	assert.Equal(t, uint64(7), got.Ring.Generation)

	bad := *cfg
	bad.Masters = nil
	before, err := os.ReadFile(ConfigPath(backing))
	require.NoError(t, err)
	require.ErrorIs(t, WriteConfig(backing, &bad), ErrMalformed)
	after, err := os.ReadFile(ConfigPath(backing))
	require.NoError(t, err)
	assert.Equal(t, before, after, "an invalid config must not be written")

	entries, err := os.ReadDir(filepath.Join(backing, DirName))
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file may remain")
	fi, err := entries[0].Info()
	require.NoError(t, err)
	assert.Equal(t, iofs.FileMode(0o600), fi.Mode())
}

func TestVolumeIDText(t *testing.T) {
	tests := []struct {
		name string
		text string
		ok   bool
	}{
		{name: "valid", text: "00112233445566778899aabbccddeeff", ok: true},
		{name: "upper case", text: "00112233445566778899AABBCCDDEEFF"},
		{name: "short", text: "0011"},
		{name: "long", text: "00112233445566778899aabbccddeeff00"},
		{name: "not hex", text: "0011223344556677889xaabbccddeeff"},
		{name: "empty", text: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v VolumeID
			err := v.UnmarshalText([]byte(tt.text))
			if !tt.ok {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.text, v.String())
		})
	}
}

func TestUnlockErrorMatches(t *testing.T) {
	e := &UnlockError{Attempts: []Attempt{
		{Master: MasterEntry{ID: "0a0b0c0d", URI: "pkcs11:token=t;pin-value=1234"},
			Err: iofs.ErrNotExist},
	}}
	assert.ErrorIs(t, e, ErrWrongKey)
	assert.ErrorIs(t, e, iofs.ErrNotExist)
	assert.NotContains(t, e.Error(), "1234", "URIs in errors must be redacted")
	var ue *UnlockError
	assert.True(t, errors.As(error(e), &ue))
}

func TestConfigNames(t *testing.T) {
	for _, tc := range []struct {
		name      string
		value     any
		encrypted bool
	}{
		{name: "absent (volumes made before the field)", value: nil},
		{name: "plaintext", value: NamesPlaintext},
		{name: "encrypted", value: NamesEncrypted, encrypted: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseConfig(editConfig(t, func(m map[string]any) {
				delete(m, "names")
				if tc.value != nil {
					m["names"] = tc.value
				}
			}))
			require.NoError(t, err)
			assert.Equal(t, tc.encrypted, cfg.EncryptedNames())
		})
	}
}
