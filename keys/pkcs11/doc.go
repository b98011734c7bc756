// Package pkcs11 implements the PKCS#11 master key: an AES-256 secret key
// inside a hardware security module or a software token such as SoftHSM2,
// named by an RFC 7512 URI:
//
//	pkcs11:token=LABEL;object=LABEL[;id=%01%02][?module-path=/PATH/lib.so&pin-source=file:/PATH]
//
// The key is generated inside the token (Create) as a token object that is
// private, sensitive and never extractable; an existing key is accepted if
// it has those properties. Sealing and unsealing run inside the token with
// CKM_AES_GCM, so the key never reaches coffer's memory; coffer draws the
// 12-byte IV and passes the associated data that binds the sealed ring to
// its volume and master entry.
//
// The PIN is read from the URI's pin-source file, else from
// masterkey.Options.PINFile, else asked for through masterkey.Options.PIN.
// A pin-value attribute is refused: the URI is stored in the volume config.
// Without a module-path the module is DefaultModule; the canonical URI
// always names it.
//
// Loading a module runs its code, and the module path comes from the
// volume config, which anyone who can write the backing directory can
// edit. So a module is loaded only after a check in the manner of sshd's
// StrictModes: with symbolic links resolved, a regular file that, like every
// directory above it, is owned by root or the effective user and not
// writable by group or others (sticky directories such as /tmp excepted),
// and that lies outside masterkey.Options.Backing. The resolved path is
// what is loaded. A refused module gives ErrUntrustedModule.
//
// The kind needs cgo (the module is loaded with dlopen). Builds without
// cgo, and non-Unix builds, have the URI parser only and do not register
// the kind, so masterkey reports pkcs11: URIs as not supported.
//
// A Master holds one logged-in session, used under a mutex. Modules are
// loaded once per process and finalised when the last Master using them is
// wiped, which also logs out.
package pkcs11
