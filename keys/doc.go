// Package keys holds coffer's key hierarchy: the master keys, the key ring
// they seal, and the volume config that stores the sealed ring.
//
// # Hierarchy
//
//	master key(s)  outside the backing directory: key file, passphrase, ...
//	   │ each seals one copy of the ring payload (Master.Seal), bound by
//	   │ associated data to the volume ID and the master's ID
//	ring           a Tink keyset of AES-256-GCM key-wrapping keys (Ring)
//	   │ the primary key wraps each file's data key (Ring.Wrap), bound by
//	   │ associated data the caller chooses (volume, file, key ID, generation)
//	data key       32 random bytes per file, stored wrapped in the file header
//
// A Master is one master key: it seals and unseals the ring payload but
// never hands out its key (HSM, TPM and KMS masters cannot). Sub-packages
// implement the kinds: keyfile (file:///PATH) and passphrase (passphrase:),
// with masterkey parsing URIs and choosing the kind.
//
// The ring is a Tink keyset of AES-256-GCM keys with the TINK output prefix,
// so every wrapped key starts with 0x01 and the ID of the key that wrapped
// it. Each key has a creation time and a state: one primary (wraps and
// unwraps), any number active or retired (unwrap only). The ring payload
// sealed by each master is JSON holding the cleartext Tink keyset; it exists
// unsealed only in memory.
//
// The volume config, .coffer/volume.json in the backing directory (Config,
// ReadConfig, WriteConfig), is public: volume ID, file format, the master
// entries (kind, URI, public params such as an Argon2id salt), the ring's
// public key list and the sealed ring copies. Init creates a volume; Unlock
// returns its Ring given one working master; SealRing and UnsealRing make
// and open single sealed copies, for rotation and enrolment of further
// masters. docs/format.md specifies the bytes.
//
// Ring.DeriveKey derives keys for other purposes from a ring key with
// HKDF; the audit trail (sub-package audit, docs/audit.md) MACs its records
// with one, and Unlock reports each master key that fails through
// UnlockOptions.Failed so that the trail can record it.
//
// # Threat model
//
// An attacker who can read and write the backing directory, but holds no
// master key, learns file sizes (to 4 KiB blocks plus a fixed header),
// names, the directory tree, timestamps, the number and kinds of master
// keys, key-file paths and Argon2id costs. They cannot read file contents or
// ring keys; they cannot alter a sealed ring copy, move it to another master
// entry or another volume, or make Unlock accept a ring other than the one
// sealed (the associated data binds each copy to volume ID and master ID,
// and the payload repeats the volume ID). They can guess passphrases
// offline at the Argon2id cost recorded in the config, roll the whole
// directory back to an older state, or delete it.
//
// The config is not authenticated as a whole; each master entry carries
// a tag (EntryTag), an HMAC under a key derived from the ring over the
// volume ID, master ID, kind, URI and params. Rotation (CommitRing) seals
// the new ring only to master keys it opened, which proves their entries,
// and to recovery keys, which it cannot open, only when their entry's tag
// verifies: otherwise anyone who could write volume.json could plant a
// recovery entry with a public key of their own and receive the next ring.
//
// One attack follows from the config not being authenticated: replacing it whole with a config of the attacker's own, whose ring
// is sealed under a key file the attacker wrote somewhere the mount can
// read. Unlock then succeeds with the attacker's ring; old files fail to
// decrypt, but new files are wrapped under keys the attacker knows. The
// defence is to take the master key's location from a trusted place, not
// from the config: mount with an explicit master URI (UnlockOptions.Only
// with the ID the caller resolved from a trusted URI), and set
// masterkey.Options.Backing so that a key file inside the backing directory
// is refused. A passphrase master is not exposed: the attacker cannot seal
// a ring under a passphrase they do not know.
//
// An attacker with root on the running host while a volume is unlocked can
// read the ring and every data key from process memory, read plaintext
// through the mount, and capture passphrases as they are typed. Secret
// (locked, redacted, wipeable memory) only narrows accidental exposure
// through swap, core dumps, logs and error messages; it is no defence
// against such an attacker. Tink keeps ring keys on the Go heap, where
// they are neither locked nor wiped; callers that need that can lock the
// whole process (mlockall) and disable core dumps.
//
// # Concurrency
//
// Ring is safe for concurrent use: Wrap, Unwrap and Keys read an immutable
// snapshot, and the rotation methods (AddKey, SetPrimary, Retire) install a
// new snapshot atomically. Masters from the sub-packages are safe for
// concurrent use. Config values are plain data with no locking. Secret is
// safe for concurrent reads but not for a Wipe racing a read. Two processes
// running Init on one directory at once cannot both succeed: creating
// .coffer is atomic. Every later change of a config (AddMaster,
// RemoveMaster, Restore, RecordUse) goes through UpdateConfig or the same
// lock: an exclusive flock on .coffer/lock, under which the config is read
// again, changed and replaced atomically, so concurrent changes from
// several processes are applied one after the other and none is lost.
// Slow work (unlocking, sealing with an HSM or KMS) happens before the lock
// is taken. A volume holds at most MaxMasters (32) master keys.
//
// # Backup and recovery
//
// WriteBackup exports the config (sealed ring copies included; no key) to a
// new 0600 file; Restore puts it back, refusing another volume's backup and,
// unless forced, one older than the current config. The recovery
// sub-package implements recovery keys: HPKE key pairs whose public half is
// a master key and whose private half is printed for a person to keep.
//
// # Errors
//
// Callers act on these sentinels, matched with errors.Is:
//
//   - ErrWrongKey: a master failed to unseal the ring (wrong key file or
//     passphrase, or an altered sealed copy). Unlock returns an
//     *UnlockError listing each master tried; it matches ErrWrongKey.
//   - ErrUnsupportedVersion: the config, the file format or the ring payload
//     is newer than this build.
//   - ErrNotInitialized: the backing directory has no volume config.
//   - ErrAlreadyInitialized: Init found an existing .coffer folder.
//   - ErrNotEmpty: Init found other files in the backing directory.
//   - ErrMalformed: the config or ring payload breaks a rule.
//   - ErrAuth and ErrUnknownKey: Unwrap failed authentication, or names a
//     ring key this ring lacks (reload the ring and retry).
//
// A missing backing directory gives an error matching fs.ErrNotExist. Error
// messages never hold key material; master-key URIs in them pass through
// RedactURI.
//
// # Dependencies
//
// keys never imports fs or any of its sub-packages: the file layer depends
// on the keys layer, through the Wrap/Unwrap pair only.
package keys
