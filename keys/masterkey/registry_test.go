package masterkey

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
)

// testMaster seals by prefixing a marker; it only has to be told apart.
type testMaster struct{ uri string }

func (m testMaster) Seal(_ context.Context, p, _ []byte) ([]byte, error) {
	return append([]byte(m.uri+"|"), p...), nil
}

func (m testMaster) Unseal(_ context.Context, s, _ []byte) ([]byte, error) {
	rest, ok := strings.CutPrefix(string(s), m.uri+"|")
	if !ok {
		return nil, keys.ErrWrongKey
	}
	return []byte(rest), nil
}

var testKindCalls []string

func init() {
	Register(Kind{
		Scheme: "x-test",
		Name:   "x-test-kind",
		Form:   "x-test:NAME",
		Canonical: func(uri string) (string, error) {
			name, _ := strings.CutPrefix(uri, "x-test:")
			if name == "" {
				return "", fmt.Errorf("%w: x-test: needs a name", ErrMalformed)
			}
			return "x-test:" + strings.ToLower(name), nil
		},
		Create: func(_ context.Context, ref Ref, opts Options) (string, error) {
			testKindCalls = append(testKindCalls, "create "+ref.URI+" "+opts.KMSEndpoint)
			return "made " + ref.URI, nil
		},
		Enroll: func(_ context.Context, ref Ref, _ Options) (keys.Enrollment, error) {
			testKindCalls = append(testKindCalls, "enroll "+ref.URI)
			return keys.Enrollment{Kind: ref.Kind, URI: ref.URI, Master: testMaster{ref.URI}}, nil
		},
		Open: func(_ context.Context, e keys.MasterEntry, opts Options) (keys.Master, error) {
			testKindCalls = append(testKindCalls, "open "+e.URI+" "+opts.TPMDevice)
			return testMaster{e.URI}, nil
		},
	})
}

func TestRegisteredKind(t *testing.T) {
	testKindCalls = nil
	ctx := context.Background()

	ref, err := Parse("X-Test:Alpha")
	require.NoError(t, err)
	assert.Equal(t, Ref{Kind: "x-test-kind", URI: "x-test:alpha"}, ref)

	_, err = Parse("x-test:")
	require.ErrorIs(t, err, ErrMalformed)

	msg, err := Create(ctx, "x-test:alpha", Options{KMSEndpoint: "e"})
	require.NoError(t, err)
	assert.Equal(t, "made x-test:alpha", msg)

	e, err := Enroll(ctx, "x-test:ALPHA", Options{})
	require.NoError(t, err)
	assert.Equal(t, "x-test-kind", e.Kind)
	assert.Equal(t, "x-test:alpha", e.URI)

	m, err := Open(ctx, keys.MasterEntry{ID: "m1", Kind: "x-test-kind", URI: "x-test:alpha"},
		Options{TPMDevice: "d"})
	require.NoError(t, err)
	sealed, err := m.Seal(ctx, []byte("ring"), nil)
	require.NoError(t, err)
	assert.Equal(t, "x-test:alpha|ring", string(sealed))

	// A config entry whose kind does not match its URI is refused.
	_, err = Open(ctx, keys.MasterEntry{ID: "m2", Kind: "keyfile", URI: "x-test:alpha"}, Options{})
	require.ErrorIs(t, err, ErrMalformed)

	assert.Equal(t, []string{"create x-test:alpha e", "enroll x-test:alpha", "open x-test:alpha d"},
		testKindCalls)
	assert.Contains(t, Supported(), "x-test:NAME")
	assert.True(t, strings.HasPrefix(Supported(), "file:///ABSOLUTE/PATH, passphrase:"))
}

func TestCreateWithoutStep(t *testing.T) {
	_, err := Create(context.Background(), "passphrase:", Options{})
	require.ErrorIs(t, err, ErrNoCreate)
	_, err = Create(context.Background(), "nope:x", Options{})
	require.True(t, errors.Is(err, ErrUnknownScheme))
}

func TestRegisterRefusesDuplicatesAndBuiltins(t *testing.T) {
	k := Kind{Scheme: "x-test", Name: "n", Form: "f",
		Canonical: func(string) (string, error) { return "", nil },
		Enroll: func(context.Context, Ref, Options) (keys.Enrollment, error) {
			return keys.Enrollment{}, nil
		},
		Open: func(context.Context, keys.MasterEntry, Options) (keys.Master, error) { return nil, nil },
	}
	assert.Panics(t, func() { Register(k) })
	k.Scheme = "passphrase"
	assert.Panics(t, func() { Register(k) })
	k.Scheme = "Upper"
	assert.Panics(t, func() { Register(k) })
	k.Scheme, k.Open = "x-other", nil
	assert.Panics(t, func() { Register(k) })
}
