package passphrase

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
)

// testCost keeps Argon2id cheap in tests.
var testCost = Cost{Time: 1, MemoryKiB: 64, Threads: 1}

func secret(s string) *keys.Secret { return keys.SecretFromBytes([]byte(s)) }

// TestDeriveKeyKnownAnswer checks Argon2id (version 0x13) against the
// reference implementation: every want value was made with the argon2 CLI
// from Debian 12's package argon2 (0~20171227-0.3+deb12u1), as
//
//	printf '%s' PASSWORD | argon2 SALT -id -t TIME -k MEMORY_KIB -p THREADS -l 32 -r
//
// (the first row used "-m 16", the same as "-k 65536").
func TestDeriveKeyKnownAnswer(t *testing.T) {
	tests := []struct {
		name     string
		password string
		salt     string
		cost     Cost
		want     string
	}{
		{name: "argon2 README parameters", password: "password", salt: "somesalt",
			cost: Cost{Time: 2, MemoryKiB: 65536, Threads: 4},
			want: "1a9677b0afe81fda7b548895e7a1bfeb8668ffc19a530e37e088a668fab1c02a"},
		{name: "default cost", password: "coffer default cost", salt: "0123456789abcdef",
			cost: DefaultCost(),
			want: "3bf8a30a945df3d2d68ae536aa92330c7d5c392478bd78920e1d03fb091e4cc0"},
		{name: "small memory", password: "correct horse battery staple",
			salt: "coffer-salt-0001", cost: Cost{Time: 3, MemoryKiB: 32, Threads: 4},
			want: "54e3d94f81092bc11844018dbe81f9ef396ac01801527a4a35c3f0e4ba21a0ef"},
		{name: "UTF-8 password, one lane", password: "pässwörd", salt: "saltsalt",
			cost: Cost{Time: 1, MemoryKiB: 8, Threads: 1},
			want: "98455d4ac84a580a23e08879b40c5de73a2a9d8873a5f34aacab992958fbe0bf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := DeriveKey(secret(tt.password), Params{Cost: tt.cost, Salt: []byte(tt.salt)})
			require.NoError(t, err)
			defer key.Wipe()
			assert.Equal(t, tt.want, hex.EncodeToString(key.InsecureBytes()))
		})
	}
}

func TestDefaultCost(t *testing.T) {
	assert.Equal(t, Cost{Time: 3, MemoryKiB: 65536, Threads: 4}, DefaultCost())
	assert.NoError(t, DefaultCost().Validate())
}

func TestCostValidate(t *testing.T) {
	tests := []struct {
		name    string
		cost    Cost
		wantErr string
	}{
		{name: "default", cost: DefaultCost()},
		{name: "test cost", cost: testCost},
		{name: "4 GiB", cost: Cost{Time: 1, MemoryKiB: 4 << 20, Threads: 4}},
		{name: "time 0", cost: Cost{Time: 0, MemoryKiB: 64, Threads: 1}, wantErr: "time 0"},
		{name: "time too high", cost: Cost{Time: MaxTime + 1, MemoryKiB: 64, Threads: 1},
			wantErr: "time"},
		{name: "no threads", cost: Cost{Time: 1, MemoryKiB: 64}, wantErr: "threads"},
		{name: "memory below 8 KiB per thread", cost: Cost{Time: 1, MemoryKiB: 31, Threads: 4},
			wantErr: "8 KiB per thread"},
		{name: "memory over 4 GiB", cost: Cost{Time: 1, MemoryKiB: 4<<20 + 1, Threads: 4},
			wantErr: "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cost.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

func TestParamsJSON(t *testing.T) {
	p, err := NewParams(testCost)
	require.NoError(t, err)
	assert.Len(t, p.Salt, SaltSize)
	b, err := json.Marshal(p)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"algorithm":"argon2id","version":19,"time":1,`+
		`"memory_kib":64,"threads":1,"salt":"`)
	got, err := ParseParams(b)
	require.NoError(t, err)
	assert.Equal(t, p, got)

	q, err := NewParams(testCost)
	require.NoError(t, err)
	assert.NotEqual(t, p.Salt, q.Salt, "salts must be random")
}

func TestParseParamsRejects(t *testing.T) {
	valid := `{"algorithm":"argon2id","version":19,"time":3,"memory_kib":65536,"threads":4,` +
		`"salt":"AAECAwQFBgcICQoLDA0ODw=="}`
	tests := []struct {
		name    string
		raw     string
		wantErr string
	}{
		{name: "missing", raw: "", wantErr: "no params"},
		{name: "null", raw: "null", wantErr: "argon2id"},
		{name: "argon2i", raw: strings.Replace(valid, "argon2id", "argon2i", 1),
			wantErr: "unsupported"},
		{name: "version 16", raw: strings.Replace(valid, ":19", ":16", 1), wantErr: "unsupported"},
		{name: "time 0", raw: strings.Replace(valid, `"time":3`, `"time":0`, 1), wantErr: "time"},
		{name: "memory 5 GiB", raw: strings.Replace(valid, "65536", "5242880", 1),
			wantErr: "limit"},
		{name: "memory overflow", raw: strings.Replace(valid, "65536", "4294967296", 1),
			wantErr: "malformed"},
		{name: "threads 0", raw: strings.Replace(valid, `"threads":4`, `"threads":0`, 1),
			wantErr: "threads"},
		{name: "threads 256", raw: strings.Replace(valid, `"threads":4`, `"threads":256`, 1),
			wantErr: "malformed"},
		{name: "negative time", raw: strings.Replace(valid, `"time":3`, `"time":-1`, 1),
			wantErr: "malformed"},
		{name: "short salt", raw: strings.Replace(valid, "AAECAwQFBgcICQoLDA0ODw==", "AAEC", 1),
			wantErr: "salt"},
		{name: "no salt", raw: strings.Replace(valid, `,"salt":"AAECAwQFBgcICQoLDA0ODw=="`, "", 1),
			wantErr: "salt"},
		{name: "unknown field", raw: strings.Replace(valid, "{", `{"pepper":1,`, 1),
			wantErr: "unknown field"},
		{name: "trailing data", raw: valid + "{}", wantErr: "trailing"},
		{name: "not an object", raw: "[]", wantErr: "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseParams(json.RawMessage(tt.raw))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
	_, err := ParseParams(json.RawMessage(valid))
	require.NoError(t, err)
}

func TestEnrollOpen(t *testing.T) {
	ctx := context.Background()
	m, params, err := Enroll(secret("correct horse"), testCost)
	require.NoError(t, err)
	assert.Equal(t, testCost, params.Cost)
	sealed, err := m.Seal(ctx, []byte("ring"), []byte("ad"))
	require.NoError(t, err)

	tests := []struct {
		name string
		pass string
		ok   bool
	}{
		{name: "right passphrase", pass: "correct horse", ok: true},
		{name: "wrong passphrase", pass: "correct horsf"},
		{name: "prefix", pass: "correct"},
		{name: "trailing newline", pass: "correct horse\n"},
		{name: "empty", pass: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := Open(secret(tt.pass), params)
			require.NoError(t, err)
			got, err := o.Unseal(ctx, sealed, []byte("ad"))
			if tt.ok {
				require.NoError(t, err)
				assert.Equal(t, []byte("ring"), got)
				return
			}
			require.ErrorIs(t, err, keys.ErrWrongKey)
		})
	}
}

func TestEnrollRefuses(t *testing.T) {
	tests := []struct {
		name string
		pass *keys.Secret
		cost Cost
		want error
	}{
		{name: "empty passphrase", pass: secret(""), cost: testCost, want: ErrEmpty},
		{name: "nil passphrase", pass: nil, cost: testCost, want: ErrEmpty},
		{name: "bad cost", pass: secret("pw"), cost: Cost{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _, err := Enroll(tt.pass, tt.cost)
			require.Error(t, err)
			assert.Nil(t, m)
			if tt.want != nil {
				assert.ErrorIs(t, err, tt.want)
			}
		})
	}
}
