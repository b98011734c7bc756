//go:build linux

package integration

import (
	"testing"

	"github.com/cofferfs/coffer/keys/gcpkms/gcpkmstest"
)

// TestGCPKMS initialises a volume whose only master key is a gcp-kms key on
// the Cloud KMS contract server (there is no local Cloud KMS), round-trips a
// file through two mounts, then fails the mount with one line once the
// server has stopped, and once the key version is disabled. The built binary
// finds its service account through GOOGLE_APPLICATION_CREDENTIALS, as on a
// host outside Google Cloud.
func TestGCPKMS(t *testing.T) {
	requireFUSE(t)
	srv := gcpkmstest.Start(t)
	srv.WriteCredentials(t)
	endpoint := "--kms-endpoint=" + srv.URL

	t.Run("round trip, then the server stopped", func(t *testing.T) {
		name := srv.CreateKey(t, "coffer-test", "europe-west1", "coffer", "round-trip")
		v := kindVolume(t, "gcp-kms://"+name, endpoint)
		roundTrip(t, v, endpoint)
		gone := gcpkmstest.Start(t) // a second server, stopped at once
		gone.Stop()
		failMount(t, v, "cloud KMS is unreachable", "--kms-endpoint="+gone.URL)
	})
	t.Run("key version disabled", func(t *testing.T) {
		name := srv.CreateKey(t, "coffer-test", "europe-west1", "coffer", "disabled")
		v := kindVolume(t, "gcp-kms://"+name, endpoint)
		srv.SetState(name, 1, gcpkmstest.Disabled)
		failMount(t, v, "cloud KMS key version is disabled", endpoint)
	})
}
