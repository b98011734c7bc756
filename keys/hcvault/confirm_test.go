package hcvault

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/hcvault/vaulttest"
	"github.com/cofferfs/coffer/keys/masterkey"
)

// TestConfigServerNeedsConfirmation edits the host of an hcvault entry in
// a volume config to another server that the client trusts, as whoever can
// write the backing directory could, and checks that unlocking never sends
// that server anything unless something outside the config confirms it;
// then that each way of confirming the real server unlocks.
func TestConfigServerNeedsConfirmation(t *testing.T) {
	legit, evil := vaulttest.Start(t), vaulttest.Start(t)
	vaulttest.SetEnv(t, legit)
	for _, s := range []*vaulttest.Server{legit, evil} {
		s.CreateKey("transit", "coffer", false)
	}
	// Both servers' certificates are trusted, so that only the check
	// stands between the token and the other server.
	var cas []byte
	for _, s := range []*vaulttest.Server{legit, evil} {
		b, err := os.ReadFile(s.CAFile(t))
		require.NoError(t, err)
		cas = append(cas, b...)
	}
	caFile := filepath.Join(t.TempDir(), "cas.pem")
	require.NoError(t, os.WriteFile(caFile, cas, 0o600))
	t.Setenv("VAULT_CACERT", caFile)
	t.Setenv("VAULT_ADDR", "")

	uri := "hcvault://" + legit.Host + "/transit/keys/coffer"
	e, err := masterkey.Enroll(context.Background(), uri, masterkey.Options{})
	require.NoError(t, err, "enrolling takes the URI from the user: no confirmation")
	cfg, _, err := keys.Init(context.Background(), t.TempDir(), []keys.Enrollment{e},
		keys.InitOptions{})
	require.NoError(t, err)
	edited := *cfg
	edited.Masters = []keys.MasterEntry{cfg.Masters[0]}
	edited.Masters[0].URI = strings.Replace(uri, legit.Host, evil.Host, 1)

	unlock := func(t *testing.T, c *keys.Config, opts masterkey.Options) error {
		_, _, err := keys.Unlock(context.Background(), c, masterkey.Opener(
			context.Background(), opts), keys.UnlockOptions{})
		return err
	}
	refused := []struct {
		name    string
		vaultAd string
		opts    masterkey.Options
	}{
		{name: "nothing confirms"},
		{name: "VAULT_ADDR names the real server", vaultAd: legit.Address},
		{name: "VAULT_ADDR on another port", vaultAd: "https://" +
			strings.Split(evil.Host, ":")[0] + ":1"},
		{name: "VAULT_ADDR over http", vaultAd: "http://" + evil.Host},
		{name: "the real URI was named", opts: masterkey.Options{NamedURI: uri}},
	}
	for _, tt := range refused {
		t.Run("edited/"+tt.name, func(t *testing.T) {
			t.Setenv("VAULT_ADDR", tt.vaultAd)
			err := unlock(t, &edited, tt.opts)
			require.ErrorIs(t, err, ErrUnconfirmed)
			assert.Contains(t, err.Error(), "https://"+evil.Host+" is named only by the "+
				"volume config")
			var ue *UnconfirmedError
			require.ErrorAs(t, err, &ue)
			assert.Contains(t, ue.Hint(), "VAULT_ADDR=https://"+evil.Host)
			assert.Contains(t, ue.Hint(), "--master "+edited.Masters[0].URI)
			assert.NotContains(t, err.Error(), "\n")
			assert.Empty(t, evil.Requests(), "the other server must receive nothing")
		})
	}
	t.Run("original/nothing confirms", func(t *testing.T) {
		before := len(legit.Requests())
		require.ErrorIs(t, unlock(t, cfg, masterkey.Options{}), ErrUnconfirmed)
		assert.Len(t, legit.Requests(), before, "no call without confirmation")
	})

	confirmed := []struct {
		name    string
		vaultAd string
		opts    masterkey.Options
	}{
		{name: "VAULT_ADDR", vaultAd: legit.Address},
		{name: "VAULT_ADDR with a slash and upper case",
			vaultAd: strings.ToUpper("https://"+legit.Host) + "/"},
		{name: "named URI", opts: masterkey.Options{NamedURI: uri}},
		{name: "endpoint", opts: masterkey.Options{KMSEndpoint: legit.Address}},
	}
	for _, tt := range confirmed {
		t.Run("original/"+tt.name, func(t *testing.T) {
			t.Setenv("VAULT_ADDR", tt.vaultAd)
			before := len(legit.Requests())
			require.NoError(t, unlock(t, cfg, tt.opts))
			assert.Len(t, legit.Requests(), before+1)
		})
	}
	// A confirmed edited server is the user's choice: it is contacted.
	t.Run("edited/confirmed by the endpoint", func(t *testing.T) {
		err := unlock(t, &edited, masterkey.Options{KMSEndpoint: evil.Address})
		require.ErrorIs(t, err, keys.ErrWrongKey)
		assert.Len(t, evil.Requests(), 1)
	})
}

func TestSameServer(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		want bool
	}{
		{name: "equal", a: "https://v.example:8200", b: "https://v.example:8200", want: true},
		{name: "default https port", a: "https://v.example", b: "https://v.example:443",
			want: true},
		{name: "case and path", a: "HTTPS://V.Example:8200/", b: "https://v.example:8200",
			want: true},
		{name: "IPv6", a: "https://[::1]:8200", b: "https://[::1]:8200", want: true},
		{name: "other port", a: "https://v.example:8201", b: "https://v.example:8200"},
		{name: "default port differs", a: "https://v.example", b: "https://v.example:8200"},
		{name: "scheme", a: "http://v.example:8200", b: "https://v.example:8200"},
		{name: "other host", a: "https://w.example:8200", b: "https://v.example:8200"},
		{name: "suffix host", a: "https://v.example.evil:8200", b: "https://v.example:8200"},
		{name: "empty", a: "", b: "https://v.example:8200"},
		{name: "no scheme", a: "v.example:8200", b: "https://v.example:8200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, sameServer(tt.a, tt.b))
		})
	}
}
