package names

import (
	"strings"
	"testing"

	"github.com/cofferfs/coffer/fs/content"
)

// fuzzKey is a fixed key so that the corpus stays meaningful across runs.
func fuzzKey(t testing.TB) (*Key, *XattrKey) {
	secret := []byte(strings.Repeat("k", SecretSize))
	k, err := NewKey(secret, DirID{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	x, err := NewXattrKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	return k, x
}

// FuzzDecrypt feeds arbitrary backing names and sidecars to the decoders:
// they must never panic, and whatever decrypts must be a valid name that
// encrypts back to the same backing name.
func FuzzDecrypt(f *testing.F) {
	k, x := fuzzKey(f)
	for _, name := range []string{"a", "config.json", strings.Repeat("L", 200)} {
		nm, err := k.Encrypt(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(nm.Backing, nm.Sidecar)
	}
	f.Add("user.abc", []byte(nil))
	f.Fuzz(func(t *testing.T, backing string, sidecar []byte) {
		var plain string
		var err error
		if IsLong(backing) {
			plain, err = k.DecryptLong(backing, sidecar)
		} else {
			plain, err = k.Decrypt(backing)
		}
		if err == nil {
			if Valid(plain) != nil {
				t.Fatalf("decrypted to an invalid name %q", plain)
			}
			nm, err := k.Encrypt(plain)
			if err != nil || nm.Backing != backing {
				t.Fatalf("%q does not encrypt back to %q", plain, backing)
			}
		}
		_, _ = x.DecryptName(backing)
		_, _ = x.OpenValue(backing, sidecar)
	})
}

// FuzzParseRecord checks that the record parser never panics and that what
// it accepts marshals back to the same bytes.
func FuzzParseRecord(f *testing.F) {
	r := &Record{ID: DirID{9}}
	r.Slots[0] = content.Slot{KeyID: 5, Generation: 1, Wrapped: []byte("wrapped key")}
	b, err := r.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRecord(b)
		if err != nil {
			return
		}
		again, err := r.MarshalBinary()
		if err != nil || string(again) != string(b) {
			t.Fatalf("record does not round-trip: %v", err)
		}
	})
}
