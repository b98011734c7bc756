package masterkey

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/keyfile"
	"github.com/cofferfs/coffer/keys/passphrase"
)

var testCost = passphrase.Cost{Time: 1, MemoryKiB: 64, Threads: 1}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		uri     string
		want    Ref
		wantErr error
		msg     string
	}{
		{name: "key file", uri: "file:///etc/coffer/master.key",
			want: Ref{Kind: "file", URI: "file:///etc/coffer/master.key",
				Path: "/etc/coffer/master.key"}},
		{name: "key file upper-case scheme", uri: "FILE:///k",
			want: Ref{Kind: "file", URI: "file:///k", Path: "/k"}},
		{name: "passphrase", uri: "passphrase:", want: Ref{Kind: "passphrase", URI: "passphrase:"}},
		{name: "passphrase with argument", uri: "passphrase:hunter2", wantErr: ErrMalformed,
			msg: "takes nothing"},
		{name: "relative key file", uri: "file://k", wantErr: ErrMalformed},
		{name: "bare path", uri: "/etc/coffer/master.key", wantErr: ErrMalformed,
			msg: "file:///ABSOLUTE/PATH"},
		{name: "empty", uri: "", wantErr: ErrMalformed},
		{name: "no scheme", uri: ":x", wantErr: ErrMalformed},
		{name: "bad scheme", uri: "1file:///k", wantErr: ErrMalformed},
		{name: "pkcs11", uri: "pkcs11:token=t;object=o;pin-value=1234", wantErr: ErrNotSupported,
			msg: "pkcs11"},
		{name: "tpm2", uri: "tpm2:", wantErr: ErrNotSupported, msg: "not supported yet"},
		{name: "systemd-creds", uri: "systemd-creds:host", wantErr: ErrNotSupported},
		{name: "aws-kms", uri: "aws-kms://arn:aws:kms:eu-west-1:1:key/x", wantErr: ErrNotSupported},
		{name: "hcvault", uri: "hcvault://127.0.0.1:8200/transit/keys/k", wantErr: ErrNotSupported},
		{name: "gcp-kms", uri: "gcp-kms://projects/p", wantErr: ErrNotSupported},
		{name: "azure-kv", uri: "azure-kv://v", wantErr: ErrNotSupported},
		{name: "recovery", uri: "recovery:abc", wantErr: ErrNotSupported},
		{name: "dpapi", uri: "dpapi:machine", wantErr: ErrNotSupported},
		{name: "unknown", uri: "gopher://x", wantErr: ErrUnknownScheme,
			msg: "file:///ABSOLUTE/PATH, passphrase:"},
		{name: "http", uri: "https://example.com/key", wantErr: ErrUnknownScheme},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.uri)
			if tt.wantErr == nil {
				require.NoError(t, err)
				assert.Equal(t, tt.want, got)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
			for _, other := range []error{ErrMalformed, ErrNotSupported, ErrUnknownScheme} {
				if other != tt.wantErr {
					assert.NotErrorIs(t, err, other, "errors must be distinct")
				}
			}
			assert.Contains(t, err.Error(), tt.msg)
			assert.NotContains(t, err.Error(), "1234", "errors must not show secrets")
			assert.NotContains(t, err.Error(), "\n", "errors are one line")
		})
	}
}

func TestRefRedacted(t *testing.T) {
	r := Ref{Kind: "pkcs11", URI: "pkcs11:token=t;pin-value=1234"}
	assert.Equal(t, "pkcs11:token=t;pin-value=REDACTED", r.Redacted())
	assert.Equal(t, r.Redacted(), r.String())
}

// recorder is a PassphraseFunc that records requests.
type recorder struct {
	pass string
	reqs []PassphraseRequest
}

func (r *recorder) get(_ context.Context, req PassphraseRequest) (*keys.Secret, error) {
	r.reqs = append(r.reqs, req)
	return keys.SecretFromBytes([]byte(r.pass)), nil
}

func TestEnrollOpenPassphrase(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{pass: "pw"}
	opts := Options{Passphrase: rec.get, PassphraseCost: &testCost}

	e, err := Enroll(ctx, "passphrase:", opts)
	require.NoError(t, err)
	assert.Equal(t, "passphrase", e.Kind)
	assert.Equal(t, "passphrase:", e.URI)
	assert.Equal(t, []PassphraseRequest{{Enroll: true}}, rec.reqs)
	p, err := passphrase.ParseParams(e.Params)
	require.NoError(t, err)
	assert.Equal(t, testCost, p.Cost)

	sealed, err := e.Master.Seal(ctx, []byte("ring"), []byte("ad"))
	require.NoError(t, err)
	entry := keys.MasterEntry{ID: "0a0b0c0d", Kind: e.Kind, URI: e.URI, Params: e.Params}
	m, err := Open(ctx, entry, opts)
	require.NoError(t, err)
	assert.Equal(t, PassphraseRequest{MasterID: "0a0b0c0d"}, rec.reqs[1])
	got, err := m.Unseal(ctx, sealed, []byte("ad"))
	require.NoError(t, err)
	assert.Equal(t, []byte("ring"), got)
}

func TestEnrollDefaultCost(t *testing.T) {
	rec := &recorder{pass: "pw"}
	e, err := Enroll(context.Background(), "passphrase:", Options{Passphrase: rec.get})
	require.NoError(t, err)
	p, err := passphrase.ParseParams(e.Params)
	require.NoError(t, err)
	assert.Equal(t, passphrase.DefaultCost(), p.Cost)
}

func TestEnrollOpenKeyFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k")
	require.NoError(t, keyfile.Create(path))

	e, err := Enroll(ctx, "file://"+path, Options{})
	require.NoError(t, err)
	assert.Equal(t, keys.Enrollment{Kind: "file", URI: "file://" + path, Master: e.Master}, e)
	sealed, err := e.Master.Seal(ctx, []byte("ring"), nil)
	require.NoError(t, err)

	m, err := Open(ctx, keys.MasterEntry{ID: "0a0b0c0d", Kind: "file", URI: e.URI}, Options{})
	require.NoError(t, err)
	got, err := m.Unseal(ctx, sealed, nil)
	require.NoError(t, err)
	assert.Equal(t, []byte("ring"), got)
}

func TestEnrollOpenErrors(t *testing.T) {
	ctx := context.Background()
	failing := func(context.Context, PassphraseRequest) (*keys.Secret, error) {
		return nil, errors.New("no terminal")
	}
	rec := &recorder{pass: ""}
	params, err := json.Marshal(passphrase.Params{Cost: testCost, Salt: make([]byte, 16)})
	require.NoError(t, err)
	missing := "file://" + filepath.Join(t.TempDir(), "missing")

	tests := []struct {
		name    string
		enroll  string
		entry   *keys.MasterEntry
		opts    Options
		want    error
		wantMsg string
	}{
		{name: "enroll: no passphrase source", enroll: "passphrase:", want: ErrNoPassphrase},
		{name: "enroll: source fails", enroll: "passphrase:",
			opts: Options{Passphrase: failing}, wantMsg: "no terminal"},
		{name: "enroll: empty passphrase", enroll: "passphrase:",
			opts: Options{Passphrase: rec.get, PassphraseCost: &testCost},
			want: passphrase.ErrEmpty},
		{name: "enroll: bad cost", enroll: "passphrase:",
			opts:    Options{Passphrase: rec.get, PassphraseCost: &passphrase.Cost{}},
			wantMsg: "invalid passphrase cost"},
		{name: "enroll: missing key file", enroll: missing, wantMsg: "no such file"},
		{name: "enroll: unsupported", enroll: "tpm2:", want: ErrNotSupported},
		{name: "open: kind mismatch",
			entry: &keys.MasterEntry{ID: "0a0b0c0d", Kind: "passphrase", URI: missing},
			want:  ErrMalformed},
		{name: "open: newer kind",
			entry: &keys.MasterEntry{ID: "0a0b0c0d", Kind: "tpm2", URI: "tpm2:"},
			want:  ErrNotSupported},
		{name: "open: passphrase without params",
			entry:   &keys.MasterEntry{ID: "0a0b0c0d", Kind: "passphrase", URI: "passphrase:"},
			opts:    Options{Passphrase: rec.get},
			wantMsg: "no params"},
		{name: "open: no passphrase source",
			entry: &keys.MasterEntry{ID: "0a0b0c0d", Kind: "passphrase", URI: "passphrase:",
				Params: params},
			want: ErrNoPassphrase},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.entry != nil {
				var m keys.Master
				m, err = Open(ctx, *tt.entry, tt.opts)
				assert.Nil(t, m)
			} else {
				var e keys.Enrollment
				e, err = Enroll(ctx, tt.enroll, tt.opts)
				assert.Nil(t, e.Master)
			}
			require.Error(t, err)
			if tt.want != nil {
				assert.ErrorIs(t, err, tt.want)
			}
			assert.Contains(t, err.Error(), tt.wantMsg)
		})
	}
}

func TestKeyFileInBacking(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	backing := filepath.Join(root, "backing")
	require.NoError(t, os.Mkdir(backing, 0o700))
	inside := filepath.Join(backing, "sub", "k")
	require.NoError(t, os.Mkdir(filepath.Dir(inside), 0o700))
	require.NoError(t, keyfile.Create(inside))
	outside := filepath.Join(root, "backing-sibling.key")
	require.NoError(t, keyfile.Create(outside))
	linkToInside := filepath.Join(root, "link.key")
	require.NoError(t, os.Symlink(inside, linkToInside))
	linkedBacking := filepath.Join(root, "linked-backing")
	require.NoError(t, os.Symlink(backing, linkedBacking))

	tests := []struct {
		name    string
		path    string
		backing string
		inside  bool
	}{
		{name: "inside", path: inside, backing: backing, inside: true},
		{name: "symlink to inside", path: linkToInside, backing: backing, inside: true},
		{name: "backing through a symlink", path: inside, backing: linkedBacking, inside: true},
		{name: "outside with a shared prefix", path: outside, backing: backing},
		{name: "no backing given", path: inside},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := Options{Backing: tt.backing}
			_, errEnroll := Enroll(ctx, keyfile.URI(tt.path), opts)
			entry := keys.MasterEntry{ID: "0a0b0c0d", Kind: "file", URI: keyfile.URI(tt.path)}
			_, errOpen := Open(ctx, entry, opts)
			for _, err := range []error{errEnroll, errOpen} {
				if tt.inside {
					require.ErrorIs(t, err, ErrKeyInBacking)
				} else {
					require.NoError(t, err)
				}
			}
		})
	}
}
