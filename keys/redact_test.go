package keys

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRedactURI(t *testing.T) {
	tests := []struct {
		name string
		uri  string
		want string
	}{
		{name: "key file", uri: "file:///etc/coffer/master.key",
			want: "file:///etc/coffer/master.key"},
		{name: "passphrase", uri: "passphrase:", want: "passphrase:"},
		{name: "pkcs11 pin-value", uri: "pkcs11:token=vault;object=ring;pin-value=1234",
			want: "pkcs11:token=vault;object=ring;pin-value=REDACTED"},
		{name: "pkcs11 pin-value first", uri: "pkcs11:pin-value=1234;token=t",
			want: "pkcs11:pin-value=REDACTED;token=t"},
		{name: "pkcs11 query pin", uri: "pkcs11:token=t?pin-value=1234&module-path=/x.so",
			want: "pkcs11:token=t?pin-value=REDACTED&module-path=/x.so"},
		{name: "user password", uri: "hcvault://bob:s3cret@127.0.0.1:8200/transit/keys/k",
			want: "hcvault://bob:REDACTED@127.0.0.1:8200/transit/keys/k"},
		{name: "query secret", uri: "aws-kms://arn?secret_key=abc&region=x",
			want: "aws-kms://arn?secret_key=REDACTED&region=x"},
		{name: "escaped name", uri: "pkcs11:token=t;pin%2Dvalue=1234",
			want: "pkcs11:token=t;pin%2Dvalue=REDACTED"},
		{name: "upper-case name", uri: "x:?PASSWORD=abc", want: "x:?PASSWORD=REDACTED"},
		{name: "empty", uri: "", want: ""},
		// Read as a URL, "&pin=" is a password and "000" the host; read as
		// parameters, "@000" is the value of pin. Neither may get through.
		{name: "ambiguous, no scheme", uri: "//:&pin=@000", want: "REDACTED"},
		{name: "ambiguous, password holds a parameter", uri: "hcvault://bob:p&pin=x@host/k",
			want: "hcvault:REDACTED"},
		{name: "password and query secret", uri: "hcvault://bob:pw@host/k?token=t&secret=s",
			want: "hcvault://bob:REDACTED@host/k?token=t&secret=REDACTED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, RedactURI(tt.uri))
		})
	}
}
