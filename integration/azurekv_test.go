//go:build linux

package integration

import (
	"testing"

	"github.com/cofferfs/coffer/keys/azurekv/kvtest"
)

// TestAzureKV initialises a volume whose only master key is an azure-kv key
// on the Key Vault contract server (there is no local Key Vault), round-trips
// a file through two mounts, then fails the mount with one line once the
// server has stopped, and once the key is disabled. The built binary finds
// the server's certificate through SSL_CERT_FILE and its token through the
// managed identity variables, as on an Azure host.
func TestAzureKV(t *testing.T) {
	requireFUSE(t)
	srv := kvtest.Start(t)
	srv.ManagedIdentity(t)
	t.Setenv("SSL_CERT_FILE", srv.WriteCA(t))
	endpoint := "--kms-endpoint=" + srv.URL

	t.Run("round trip, then the vault stopped", func(t *testing.T) {
		srv.CreateKey(t, "round-trip")
		v := kindVolume(t, "azure-kv://cofferkv.vault.azure.net/keys/round-trip", endpoint)
		roundTrip(t, v, endpoint)
		gone := kvtest.Start(t) // a second vault, stopped at once
		gone.Stop()
		failMount(t, v, "Key Vault is unreachable", "--kms-endpoint="+gone.URL)
	})
	t.Run("key disabled", func(t *testing.T) {
		srv.CreateKey(t, "disabled")
		v := kindVolume(t, "azure-kv://cofferkv.vault.azure.net/keys/disabled", endpoint)
		srv.SetEnabled("disabled", false)
		failMount(t, v, "Key Vault key is disabled", endpoint)
	})
}
