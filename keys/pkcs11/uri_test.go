package pkcs11

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys/masterkey"
)

func TestParseURI(t *testing.T) {
	const mod = "?module-path=" + DefaultModule
	tests := []struct {
		name  string
		uri   string
		want  URI
		canon string
	}{
		{name: "minimal", uri: "pkcs11:token=vault;object=ring",
			want:  URI{Token: "vault", Object: "ring", Module: DefaultModule},
			canon: "pkcs11:token=vault;object=ring" + mod},
		{name: "upper-case scheme and names", uri: "PKCS11:TOKEN=vault;Object=ring",
			want:  URI{Token: "vault", Object: "ring", Module: DefaultModule},
			canon: "pkcs11:token=vault;object=ring" + mod},
		{name: "attribute order does not matter", uri: "pkcs11:object=ring;token=vault",
			want:  URI{Token: "vault", Object: "ring", Module: DefaultModule},
			canon: "pkcs11:token=vault;object=ring" + mod},
		// RFC 7512 section 3.3, with type=secret-key for the type=cert of
		// the RFC's example: percent-encoded spaces and '#', a literal ','.
		{name: "RFC 7512 token with spaces",
			uri: "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;" +
				"manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=secret-key;" +
				"id=%69%95%3E%5C%F4%BD%EC%91?pin-source=file:/etc/token_pin",
			want: URI{Token: "The Software PKCS#11 Softtoken", Manufacturer: "Snake Oil, Inc.",
				Model: "1.0", Object: "my-certificate", ID: []byte{0x69, 0x95, 0x3e, 0x5c, 0xf4, 0xbd,
					0xec, 0x91}, Module: DefaultModule, PINSource: "/etc/token_pin"},
			canon: "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;" +
				"manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;" +
				"id=%69%95%3E%5C%F4%BD%EC%91?module-path=" + DefaultModule +
				"&pin-source=file:/etc/token_pin"},
		// RFC 7512: "%25" is a literal '%', "%3B" a literal ';'.
		{name: "RFC 7512 percent and semicolon",
			uri:   "pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate",
			want:  URI{Token: "A name with a substring %;", Object: "my-certificate", Module: DefaultModule},
			canon: "pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate" + mod},
		// RFC 7512: UTF-8 in a label, "%C3%A1" is U+00E1. The RFC's label
		// is 34 bytes, more than a token label holds: used as the object.
		{name: "RFC 7512 UTF-8",
			uri:   "pkcs11:object=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;token=t",
			want:  URI{Token: "t", Object: "Name with a small A with acute: \u00e1", Module: DefaultModule},
			canon: "pkcs11:token=t;object=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1" + mod},
		{name: "RFC 7512 module-path", uri: "pkcs11:object=k;token=t?module-path=/mnt/libmypkcs11.so.1",
			want:  URI{Token: "t", Object: "k", Module: "/mnt/libmypkcs11.so.1"},
			canon: "pkcs11:token=t;object=k?module-path=/mnt/libmypkcs11.so.1"},
		{name: "lower-case hex and literal reserved characters", uri: "pkcs11:token=a%2fb&c=d;object=x'y",
			want:  URI{Token: "a/b&c=d", Object: "x'y", Module: DefaultModule},
			canon: "pkcs11:token=a%2Fb%26c%3Dd;object=x%27y" + mod},
		{name: "pin-source forms", uri: "pkcs11:token=t;object=o?pin-source=file:///run/pin&module-path=/m.so",
			want:  URI{Token: "t", Object: "o", Module: "/m.so", PINSource: "/run/pin"},
			canon: "pkcs11:token=t;object=o?module-path=/m.so&pin-source=file:/run/pin"},
		{name: "pin-source plain path", uri: "pkcs11:token=t;object=o?pin-source=%2Frun%2Fpin",
			want:  URI{Token: "t", Object: "o", Module: DefaultModule, PINSource: "/run/pin"},
			canon: "pkcs11:token=t;object=o" + mod + "&pin-source=file:/run/pin"},
		{name: "token selectors", uri: "pkcs11:token=t;serial=0a1b;model=SoftHSM%20v2;slot-id=7;object=o",
			want: URI{Token: "t", Serial: "0a1b", Model: "SoftHSM v2", SlotID: 7, HasSlot: true,
				Object: "o", Module: DefaultModule},
			canon: "pkcs11:token=t;model=SoftHSM%20v2;serial=0a1b;slot-id=7;object=o" + mod},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseURI(tt.uri)
			require.NoError(t, err)
			assert.Equal(t, tt.want, *u)
			assert.Equal(t, tt.canon, u.String())

			again, err := ParseURI(u.String())
			require.NoError(t, err, "the canonical form must parse")
			assert.Equal(t, *u, *again)
		})
	}
}

func TestParseURIRefuses(t *testing.T) {
	tests := []struct {
		name string
		uri  string
		msg  string
	}{
		{name: "pin-value in query", uri: "pkcs11:token=t;object=o?pin-value=123456",
			msg: "pin-value is refused"},
		{name: "pin-value in path", uri: "pkcs11:token=t;object=o;pin-value=123456",
			msg: "pin-value is refused"},
		{name: "escaped pin-value name", uri: "pkcs11:token=t;object=o?PIN-VALUE=123456",
			msg: "pin-value is refused"},
		{name: "no token", uri: "pkcs11:object=o", msg: "token=LABEL is required"},
		{name: "no object", uri: "pkcs11:token=t", msg: "object=LABEL is required"},
		{name: "empty", uri: "pkcs11:", msg: "token=LABEL is required"},
		{name: "other scheme", uri: "pkcs12:token=t;object=o", msg: "must start with pkcs11:"},
		{name: "unknown path attribute", uri: "pkcs11:token=t;object=o;vendor-aaa=x",
			msg: `unknown attribute "vendor-aaa"`},
		{name: "unsupported RFC attribute", uri: "pkcs11:token=t;object=o;library-version=3",
			msg: `"library-version" is not supported`},
		{name: "unknown query attribute", uri: "pkcs11:token=t;object=o?vendor-bbb=x",
			msg: `unknown query attribute "vendor-bbb"`},
		{name: "module-name", uri: "pkcs11:token=t;object=o?module-name=softhsm2",
			msg: "module-name is not supported"},
		{name: "relative module", uri: "pkcs11:token=t;object=o?module-path=lib.so",
			msg: "module-path must be a clean absolute path"},
		{name: "unclean module", uri: "pkcs11:token=t;object=o?module-path=/a/../b.so",
			msg: "module-path must be a clean absolute path"},
		{name: "command pin-source", uri: "pkcs11:token=t;object=o?pin-source=%7Ccat%20/x",
			msg: "runs a command"},
		{name: "relative pin-source", uri: "pkcs11:token=t;object=o?pin-source=file:pin",
			msg: "pin-source must be file:/ABSOLUTE/PATH"},
		{name: "repeated attribute", uri: "pkcs11:token=t;object=o;token=u",
			msg: `"token" appears twice`},
		{name: "no value", uri: "pkcs11:token;object=o", msg: "not an attribute=value pair"},
		{name: "empty value", uri: "pkcs11:token=;object=o", msg: "token must not be empty"},
		{name: "empty id", uri: "pkcs11:token=t;object=o;id=", msg: "id must not be empty"},
		{name: "bad escape", uri: "pkcs11:token=t%2;object=o", msg: "bad percent-encoding"},
		{name: "bad hex", uri: "pkcs11:token=t%zz;object=o", msg: "bad percent-encoding"},
		{name: "space", uri: "pkcs11:token=a b;object=o", msg: "must be percent-encoded"},
		{name: "slash in path", uri: "pkcs11:token=a/b;object=o", msg: "must be percent-encoded"},
		{name: "fragment", uri: "pkcs11:token=t;object=o#x", msg: "fragment"},
		{name: "NUL", uri: "pkcs11:token=t%00;object=o", msg: "NUL"},
		{name: "bad UTF-8", uri: "pkcs11:token=%FF;object=o", msg: "not valid UTF-8"},
		{name: "long token label", uri: "pkcs11:token=" + strings.Repeat("x", 33) + ";object=o",
			msg: "at most 32"},
		{name: "wrong type", uri: "pkcs11:token=t;object=o;type=private", msg: "type=secret-key"},
		{name: "bad slot", uri: "pkcs11:token=t;object=o;slot-id=x1", msg: "not a decimal number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseURI(tt.uri)
			require.Error(t, err)
			assert.Nil(t, u)
			assert.ErrorIs(t, err, masterkey.ErrMalformed)
			assert.Contains(t, err.Error(), tt.msg)
			assert.NotContains(t, err.Error(), "123456", "a PIN must never be echoed")
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestReadPINFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), mode))
		require.NoError(t, os.Chmod(p, mode))
		return p
	}

	pin, err := ReadPINFile(write("crlf", "1234\r\n", 0o600))
	require.NoError(t, err)
	assert.Equal(t, "1234", string(pin.InsecureBytes()))
	pin.Wipe()
	pin, err = ReadPINFile(write("bare", "12 34", 0o400))
	require.NoError(t, err)
	assert.Equal(t, "12 34", string(pin.InsecureBytes()))
	pin.Wipe()

	_, err = ReadPINFile(write("group", "1234\n", 0o640))
	var perm *PINFileError
	require.ErrorAs(t, err, &perm)
	assert.Equal(t, "chmod 600 "+perm.Path, perm.Hint())
	assert.Contains(t, err.Error(), "mode 0640")

	_, err = ReadPINFile(write("empty", "\n", 0o600))
	assert.ErrorContains(t, err, "is empty")
	_, err = ReadPINFile(write("long", strings.Repeat("1", 257), 0o600))
	assert.ErrorContains(t, err, "longer than 256 bytes")
	_, err = ReadPINFile(dir)
	assert.ErrorContains(t, err, "not a regular file")
	_, err = ReadPINFile(filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}
