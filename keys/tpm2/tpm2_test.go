//go:build linux

package tpm2

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/masterkey"
	"github.com/cofferfs/coffer/keys/tpm2/tpm2test"
)

// ad is associated data as coffer builds it: label, volume ID, master ID.
func ad(master string) []byte {
	return append([]byte("coffer-ring-v1\x000123456789abcdef"), master...)
}

func TestCanonical(t *testing.T) {
	tests := []struct {
		name string
		uri  string
		want string // empty: malformed
	}{
		{name: "no policy", uri: "tpm2:", want: "tpm2:"},
		{name: "one PCR", uri: "tpm2:?pcrs=7", want: "tpm2:?pcrs=7&bank=sha256"},
		{name: "upper-case scheme", uri: "TPM2:?pcrs=7", want: "tpm2:?pcrs=7&bank=sha256"},
		{name: "sorted and deduplicated", uri: "tpm2:?pcrs=7,0,7&bank=sha1",
			want: "tpm2:?pcrs=0,7&bank=sha1"},
		{name: "bank first", uri: "tpm2:?bank=sha384&pcrs=23", want: "tpm2:?pcrs=23&bank=sha384"},
		{name: "PCR 24", uri: "tpm2:?pcrs=24"},
		{name: "negative PCR", uri: "tpm2:?pcrs=-1"},
		{name: "leading zero", uri: "tpm2:?pcrs=07"},
		{name: "empty PCR", uri: "tpm2:?pcrs=0,,7"},
		{name: "empty list", uri: "tpm2:?pcrs="},
		{name: "bank alone", uri: "tpm2:?bank=sha256"},
		{name: "unknown bank", uri: "tpm2:?pcrs=7&bank=md5"},
		{name: "unknown attribute", uri: "tpm2:?pcrs=7&owner=x"},
		{name: "repeated attribute", uri: "tpm2:?pcrs=7&pcrs=8"},
		{name: "opaque part", uri: "tpm2:device"},
		{name: "fragment", uri: "tpm2:?pcrs=7#x"},
		{name: "empty query", uri: "tpm2:?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref, err := masterkey.Parse(tt.uri)
			if tt.want == "" {
				require.ErrorIs(t, err, masterkey.ErrMalformed)
				assert.NotContains(t, err.Error(), "\n")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, Scheme, ref.Kind)
			assert.Equal(t, tt.want, ref.URI)
			again, err := masterkey.Parse(ref.URI)
			require.NoError(t, err)
			assert.Equal(t, ref, again)
		})
	}
}

// enrollOn enrolls uri on tpm and returns the config entry and the
// enrollment's master.
func enrollOn(t *testing.T, tpm *tpm2test.TPM, uri string) (keys.MasterEntry, keys.Master) {
	t.Helper()
	e, err := masterkey.Enroll(context.Background(), uri,
		masterkey.Options{TPMDevice: tpm.Socket})
	require.NoError(t, err)
	return keys.MasterEntry{ID: "m1", Kind: e.Kind, URI: e.URI, Params: e.Params}, e.Master
}

// openOn opens entry on the TPM at socket.
func openOn(t *testing.T, socket string, entry keys.MasterEntry) keys.Master {
	t.Helper()
	m, err := masterkey.Open(context.Background(), entry, masterkey.Options{TPMDevice: socket})
	require.NoError(t, err)
	return m
}

func TestRoundTrip(t *testing.T) {
	for _, uri := range []string{"tpm2:", "tpm2:?pcrs=7", "tpm2:?pcrs=0,7,16&bank=sha1"} {
		t.Run(uri, func(t *testing.T) {
			ctx := context.Background()
			tpm := tpm2test.Start(t)
			entry, enrolled := enrollOn(t, tpm, uri)
			ring := []byte("the ring payload")

			sealed, err := enrolled.Seal(ctx, ring, ad("m1"))
			require.NoError(t, err)
			assert.NotContains(t, string(sealed), string(ring))

			m := openOn(t, tpm.Socket, entry)
			got, err := m.Unseal(ctx, sealed, ad("m1"))
			require.NoError(t, err)
			assert.Equal(t, ring, got)

			resealed, err := m.Seal(ctx, ring, ad("m1"))
			require.NoError(t, err)
			got, err = enrolled.Unseal(ctx, resealed, ad("m1"))
			require.NoError(t, err)
			assert.Equal(t, ring, got)

			_, err = m.Unseal(ctx, sealed, ad("m2"))
			require.ErrorIs(t, err, keys.ErrWrongKey, "bound to the master ID")
			other := append([]byte("coffer-ring-v1\x00fedcba9876543210"), "m1"...)
			_, err = m.Unseal(ctx, sealed, other)
			require.ErrorIs(t, err, keys.ErrWrongKey, "bound to the volume ID")
			assert.Zero(t, tpm.Loaded(t), "objects or sessions left in the TPM")
		})
	}
}

func TestParamsHoldNoKey(t *testing.T) {
	tpm := tpm2test.Start(t)
	entry, _ := enrollOn(t, tpm, "tpm2:?pcrs=7")
	var p map[string]any
	require.NoError(t, json.Unmarshal(entry.Params, &p))
	assert.ElementsMatch(t, []string{"version", "srk_name", "public", "private", "pcr_values"},
		keysOf(p))
	assert.Len(t, p["pcr_values"], 1)
	// PCR 7 of a fresh swtpm is all zeros in the SHA-256 bank.
	assert.Equal(t, strings.Repeat("00", 32), p["pcr_values"].([]any)[0])
}

func keysOf(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestPCRChanged(t *testing.T) {
	ctx := context.Background()
	tpm := tpm2test.Start(t)
	entry, enrolled := enrollOn(t, tpm, "tpm2:?pcrs=0,7")
	sealed, err := enrolled.Seal(ctx, []byte("ring"), ad("m1"))
	require.NoError(t, err)

	tpm.ExtendPCR(t, 16, "PCR 16 is not in the policy")
	got, err := openOn(t, tpm.Socket, entry).Unseal(ctx, sealed, ad("m1"))
	require.NoError(t, err, "a PCR outside the policy does not matter")
	assert.Equal(t, []byte("ring"), got)

	tpm.ExtendPCR(t, 7, "a new boot loader")
	_, err = openOn(t, tpm.Socket, entry).Unseal(ctx, sealed, ad("m1"))
	require.ErrorIs(t, err, ErrPCRChanged)
	assert.NotErrorIs(t, err, keys.ErrWrongKey)
	var pe *PCRError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, []uint{7}, pe.Changed)
	assert.Contains(t, err.Error(), "sha256 PCR 7")
	assert.Contains(t, err.Error(), "another master key or a recovery key")
	assert.NotContains(t, err.Error(), "\n")
}

// TestPCRPolicyEnforcedByTPM rewrites the recorded PCR values to the current
// ones, so that coffer's own check passes: the TPM must still refuse.
func TestPCRPolicyEnforcedByTPM(t *testing.T) {
	ctx := context.Background()
	tpm := tpm2test.Start(t)
	entry, enrolled := enrollOn(t, tpm, "tpm2:?pcrs=7")
	sealed, err := enrolled.Seal(ctx, []byte("ring"), ad("m1"))
	require.NoError(t, err)
	tpm.ExtendPCR(t, 7, "a new boot loader")

	m := openOn(t, tpm.Socket, entry).(*master)
	values, err := readCurrent(tpm.Socket, m.policy)
	require.NoError(t, err)
	m.params.PCRValues = values
	_, err = m.Unseal(ctx, sealed, ad("m1"))
	require.ErrorIs(t, err, ErrPCRChanged)
	assert.Contains(t, err.Error(), "the TPM refused the PCR policy")
	assert.Zero(t, tpm.Loaded(t), "objects or sessions left in the TPM after a failure")
}

func readCurrent(socket string, p policy) ([]hexBytes, error) {
	t, err := openDevice(socket)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	values, err := readPCRs(t, p)
	out := make([]hexBytes, len(values))
	for i, v := range values {
		out[i] = v
	}
	return out, err
}

func TestOtherTPM(t *testing.T) {
	ctx := context.Background()
	first := tpm2test.Start(t)
	entry, enrolled := enrollOn(t, first, "tpm2:")
	sealed, err := enrolled.Seal(ctx, []byte("ring"), ad("m1"))
	require.NoError(t, err)

	second := tpm2test.Start(t)
	_, err = openOn(t, second.Socket, entry).Unseal(ctx, sealed, ad("m1"))
	require.ErrorIs(t, err, ErrOtherTPM)
	assert.NotContains(t, err.Error(), "\n")

	// With the other TPM's storage key name written in, coffer's check
	// passes; the TPM itself must refuse the blob.
	var p params
	require.NoError(t, json.Unmarshal(entry.Params, &p))
	p.SRKName = srkNameOf(t, second.Socket)
	entry.Params, err = json.Marshal(p)
	require.NoError(t, err)
	_, err = openOn(t, second.Socket, entry).Unseal(ctx, sealed, ad("m1"))
	require.ErrorIs(t, err, keys.ErrWrongKey)
}

func srkNameOf(t *testing.T, socket string) []byte {
	t.Helper()
	tpm, err := openDevice(socket)
	require.NoError(t, err)
	defer tpm.Close()
	s, err := createSRK(tpm)
	require.NoError(t, err)
	flush(tpm, s.handle)
	return s.name.Buffer
}

func TestTampered(t *testing.T) {
	ctx := context.Background()
	tpm := tpm2test.Start(t)
	entry, enrolled := enrollOn(t, tpm, "tpm2:?pcrs=7")
	sealed, err := enrolled.Seal(ctx, []byte("ring"), ad("m1"))
	require.NoError(t, err)
	var good params
	require.NoError(t, json.Unmarshal(entry.Params, &good))

	flip := func(b []byte, i int) []byte {
		b = append([]byte(nil), b...)
		b[i] ^= 0x01
		return b
	}
	tests := []struct {
		name   string
		change func(p *params)
	}{
		{name: "private blob, first byte", change: func(p *params) { p.Private = flip(p.Private, 2) }},
		{name: "private blob, last byte", change: func(p *params) {
			p.Private = flip(p.Private, len(p.Private)-1)
		}},
		{name: "private blob truncated", change: func(p *params) { p.Private = p.Private[:40] }},
		{name: "public area", change: func(p *params) {
			p.Public = flip(p.Public, len(p.Public)-1)
		}},
		{name: "policy removed from public area", change: func(p *params) {
			// The last field is the policy digest (2-byte size, 32 bytes),
			// then the empty keyed-hash parameters (2-byte scheme).
			pub := append([]byte(nil), p.Public[:len(p.Public)-36]...)
			p.Public = append(pub, 0, 0, 0, 0x10)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := good
			tt.change(&p)
			e := entry
			var err error
			e.Params, err = json.Marshal(p)
			require.NoError(t, err)
			_, err = openOn(t, tpm.Socket, e).Unseal(ctx, sealed, ad("m1"))
			require.ErrorIs(t, err, keys.ErrWrongKey)
			assert.NotContains(t, err.Error(), "\n")
			assert.Zero(t, tpm.Loaded(t), "objects or sessions left in the TPM")
		})
	}

	t.Run("sealed ring", func(t *testing.T) {
		bad := append([]byte(nil), sealed...)
		bad[len(bad)-1] ^= 0x80
		_, err := openOn(t, tpm.Socket, entry).Unseal(ctx, bad, ad("m1"))
		require.ErrorIs(t, err, keys.ErrWrongKey)
	})
}

func TestMalformedParams(t *testing.T) {
	tests := []struct {
		name   string
		params string
	}{
		{name: "not JSON", params: `x`},
		{name: "unknown field", params: `{"version":1,"srk_name":"00","public":"AA==",` +
			`"private":"AA==","extra":1}`},
		{name: "no blobs", params: `{"version":1,"srk_name":"00"}`},
		{name: "missing PCR values", params: `{"version":1,"srk_name":"00","public":"AA==",` +
			`"private":"AA=="}`},
		{name: "bad hex", params: `{"version":1,"srk_name":"zz","public":"AA==","private":"AA=="}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := keys.MasterEntry{ID: "m1", Kind: Scheme, URI: "tpm2:?pcrs=7&bank=sha256",
				Params: json.RawMessage(tt.params)}
			_, err := masterkey.Open(context.Background(), e, masterkey.Options{})
			require.ErrorIs(t, err, keys.ErrMalformed)
		})
	}
	e := keys.MasterEntry{ID: "m1", Kind: Scheme, URI: "tpm2:",
		Params: json.RawMessage(`{"version":2,"srk_name":"00","public":"AA==","private":"AA=="}`)}
	_, err := masterkey.Open(context.Background(), e, masterkey.Options{})
	require.ErrorIs(t, err, keys.ErrUnsupportedVersion)
}

func TestNoTPM(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name   string
		device string
		msg    string
	}{
		{name: "missing device", device: dir + "/tpmrm0", msg: "does not exist"},
		{name: "regular file", device: dir, msg: "neither a TPM character device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := masterkey.Enroll(context.Background(), "tpm2:",
				masterkey.Options{TPMDevice: tt.device})
			require.ErrorIs(t, err, ErrNoTPM)
			assert.Contains(t, err.Error(), tt.msg)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

// recorder is a transport that keeps every command and response.
type recorder struct {
	transport.TPM
	seen [][]byte
}

func (r *recorder) Send(cmd []byte) ([]byte, error) {
	rsp, err := r.TPM.Send(cmd)
	r.seen = append(r.seen, bytes.Clone(cmd), bytes.Clone(rsp))
	return rsp, err
}

// TestKEKNotOnTheBus records the traffic of sealing and unsealing (with and
// without a PCR policy): the KEK must appear in no command or response.
func TestKEKNotOnTheBus(t *testing.T) {
	tpm := tpm2test.Start(t)
	for _, p := range []policy{{}, {PCRs: []uint{7}, Bank: "sha256"}} {
		t.Run(p.uri(), func(t *testing.T) {
			dev, err := openDevice(tpm.Socket)
			require.NoError(t, err)
			defer dev.Close()
			rec := &recorder{TPM: dev}
			s, err := createSRK(rec)
			require.NoError(t, err)
			defer flush(rec, s.handle)

			var authPolicy []byte
			if p.selection() != nil {
				values, err := readPCRs(rec, p)
				require.NoError(t, err)
				authPolicy, err = policyDigest(p, values)
				require.NoError(t, err)
			}
			kek, err := keys.RandomSecret(KEKSize)
			require.NoError(t, err)
			obj, err := sealKEK(rec, s, kek, authPolicy)
			require.NoError(t, err)
			got, err := unsealKEK(rec, s, obj, p.selection())
			require.NoError(t, err)
			require.True(t, kek.Equal(got), "unsealed KEK differs")

			require.NotEmpty(t, rec.seen)
			for i, msg := range rec.seen {
				assert.False(t, bytes.Contains(msg, kek.InsecureBytes()[:8]),
					"message %d carries the KEK in clear", i)
			}
		})
	}
}

func TestRefused(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "integrity", err: fmt.Errorf("load: %w", tpm2.TPMRCIntegrity), want: true},
		{name: "size", err: tpm2.TPMRCSize, want: true},
		{name: "out of object memory", err: tpm2.TPMRCObjectMemory},
		{name: "retry", err: tpm2.TPMRCRetry},
		{name: "transport", err: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, refused(tt.err))
		})
	}
}
