package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestHelpListsMasterKeyKinds checks that "coffer --help" names every
// master-key kind the Linux build imports (the kind_*.go files), not only
// the two built-in ones.
func TestHelpListsMasterKeyKinds(t *testing.T) {
	t.Parallel()
	r := cli(t, "--help")
	requireOK(t, r)
	for _, form := range []string{"file:///ABSOLUTE/PATH", "passphrase:",
		"aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID", "pkcs11:token=LABEL;object=LABEL",
		"azure-kv://VAULT.vault.azure.net/keys/NAME[/VERSION]", "hcvault://HOST[:PORT]/MOUNT/keys/NAME",
		"gcp-kms://projects/P/locations/L/keyRings/R/cryptoKeys/K",
		"recovery:", "systemd-creds:host|tpm2|host+tpm2", "tpm2:[?pcrs=N,N[&bank=sha256]]"} {
		assert.Contains(t, r.stdout, "\n  "+form+"\n")
	}
}
