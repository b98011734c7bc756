// Package tpm2 implements the TPM 2.0 master key, "tpm2:" or
// "tpm2:?pcrs=0,7&bank=sha256".
//
// At enrollment the TPM seals a random 32-byte key-encryption key (KEK) as a
// keyed-hash object under the owner hierarchy's storage root key (SRK). The
// SRK is an ECC P-256 primary key made from the standard template; the TPM
// derives it from its owner seed, so it is made again at every use and
// nothing stays in the TPM. With pcrs, the object carries a PolicyPCR policy
// over the values those PCRs had at enrollment. The sealed object's public
// and private blobs, the SRK's name and the PCR values go in the master
// entry's params: they are useless without the TPM that made them.
//
// Seal and Unseal ask the TPM to unseal the KEK through a session salted
// with the SRK, with response parameter encryption, so the KEK does not cross
// the bus in clear; they then seal or open the ring with XChaCha20-Poly1305
// under the KEK, bound to the associated data, and wipe the KEK.
//
// The package works on Linux: a character device such as /dev/tpmrm0, or
// the Unix socket of a simulator such as swtpm.
package tpm2
