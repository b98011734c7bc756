// Package systemdcreds implements the host credential store master key,
// "systemd-creds:host", "systemd-creds:tpm2" or "systemd-creds:host+tpm2":
// the Linux counterpart of Windows DPAPI, a secret bound to this machine
// through systemd's credential encryption (the host secret in
// /var/lib/systemd/credential.secret, the TPM, or both).
//
// systemd-creds takes no associated data, so each Seal draws a random
// 32-byte key-encryption key (KEK), has the real systemd-creds binary
// encrypt it under the credential name coffer-VOLUMEID-MASTERID, and seals
// the ring with XChaCha20-Poly1305 under the KEK, bound to the associated
// data. The credential travels in the sealed ring copy:
//
//	offset size  field
//	0      1     version, 1
//	1      2     length n of the credential, big endian
//	3      n     the credential as systemd-creds writes it (base64 text)
//	3+n    m     nonce (24), ciphertext, Poly1305 tag (16) of the ring
//
// The KEK passes to and from systemd-creds through pipes, never through
// the command line or a file.
package systemdcreds
