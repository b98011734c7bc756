//go:build linux

package integration

import (
	"testing"

	"github.com/cofferfs/coffer/keys/awskms/kmstest"
)

// TestAWSKMS initialises a volume whose only master key is a KMS key on
// local-kms, round-trips a file through two mounts, then fails the mount
// with one line once KMS has stopped, and once the key is disabled.
func TestAWSKMS(t *testing.T) {
	requireFUSE(t)
	kmstest.SetCredentials(t)
	srv := kmstest.Start(t)
	endpoint := "--kms-endpoint=" + srv.Endpoint

	t.Run("round trip, then KMS stopped", func(t *testing.T) {
		v := kindVolume(t, "aws-kms://"+srv.CreateKey(t), endpoint)
		roundTrip(t, v, endpoint)
		gone := kmstest.Start(t) // a second KMS, stopped at once
		gone.Stop()
		failMount(t, v, "KMS is unreachable", "--kms-endpoint="+gone.Endpoint)
	})
	t.Run("key disabled", func(t *testing.T) {
		arn := srv.CreateKey(t)
		v := kindVolume(t, "aws-kms://"+arn, endpoint)
		srv.DisableKey(t, arn)
		failMount(t, v, "KMS key is disabled", endpoint)
	})
}
