package keys

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"testing"
	"unsafe"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSecretRedacts(t *testing.T) {
	raw := []byte("hunter2-hunter2")
	s := SecretFromBytes(bytes.Clone(raw))
	defer s.Wipe()
	holder := struct {
		Key *Secret `json:"key"`
	}{s}

	var logged bytes.Buffer
	log := zerolog.New(&logged)
	log.Info().Object("key", s).Interface("holder", holder).Msg("x")
	jsonOut, err := json.Marshal(holder)
	require.NoError(t, err)

	tests := []struct {
		name string
		out  string
	}{
		{name: "%v", out: fmt.Sprintf("%v", s)},
		{name: "%+v", out: fmt.Sprintf("%+v", s)},
		{name: "%#v", out: fmt.Sprintf("%#v", s)},
		{name: "%s", out: fmt.Sprintf("%s", s)},
		{name: "%x", out: fmt.Sprintf("%x", s)},
		{name: "%q", out: fmt.Sprintf("%q", s)},
		{name: "%d", out: fmt.Sprintf("%d", s)},
		{name: "struct %+v", out: fmt.Sprintf("%+v", holder)},
		{name: "String", out: s.String()},
		{name: "JSON", out: string(jsonOut)},
		{name: "zerolog", out: logged.String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.NotContains(t, tt.out, "hunter2")
			assert.NotContains(t, tt.out, fmt.Sprintf("%x", raw[:4]))
			assert.NotContains(t, tt.out, fmt.Sprint(raw[:4]))
		})
	}
}

func TestSecretLifecycle(t *testing.T) {
	tests := []struct {
		name string
		make func() *Secret
		len  int
	}{
		{name: "new", make: func() *Secret { return NewSecret(32) }, len: 32},
		{name: "from bytes", make: func() *Secret { return SecretFromBytes([]byte("abc")) }, len: 3},
		{name: "multi-page", make: func() *Secret { return NewSecret(10000) }, len: 10000},
		{name: "empty", make: func() *Secret { return NewSecret(0) }, len: 0},
		{name: "random", make: func() *Secret {
			s, err := RandomSecret(32)
			require.NoError(t, err)
			return s
		}, len: 32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.make()
			require.Equal(t, tt.len, s.Len())
			require.Len(t, s.InsecureBytes(), tt.len)
			if runtime.GOOS == "linux" && tt.len > 0 {
				t.Logf("locked: %v", s.Locked()) // mlock may fail under a low RLIMIT_MEMLOCK
			}
			for i := range s.InsecureBytes() {
				s.InsecureBytes()[i] = 0xaa
			}

			s.Wipe()
			assert.Zero(t, s.Len())
			assert.Nil(t, s.InsecureBytes())
			assert.False(t, s.Locked())
			s.Wipe() // idempotent
		})
	}
}

func TestSecretFromBytesClearsSource(t *testing.T) {
	src := []byte("passphrase")
	s := SecretFromBytes(src)
	defer s.Wipe()
	assert.Equal(t, make([]byte, len(src)), src)
	assert.Equal(t, []byte("passphrase"), s.InsecureBytes())
}

func TestSecretEqual(t *testing.T) {
	tests := []struct {
		name string
		a, b *Secret
		want bool
	}{
		{name: "same", a: SecretFromBytes([]byte("abc")), b: SecretFromBytes([]byte("abc")),
			want: true},
		{name: "different", a: SecretFromBytes([]byte("abc")), b: SecretFromBytes([]byte("abd"))},
		{name: "prefix", a: SecretFromBytes([]byte("ab")), b: SecretFromBytes([]byte("abc"))},
		{name: "both nil", want: true},
		{name: "nil and empty", a: NewSecret(0), want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.a.Equal(tt.b))
			assert.Equal(t, tt.want, tt.b.Equal(tt.a))
		})
	}
}

// TestSecretPagesPrivate checks that two secrets never share a page, so that
// wiping (and unlocking) one cannot unlock the other.
func TestSecretPagesPrivate(t *testing.T) {
	a, b := NewSecret(32), NewSecret(32)
	defer a.Wipe()
	defer b.Wipe()
	if a.pages == nil {
		return // this platform does not lock memory
	}
	page := uintptr(os.Getpagesize())
	pa := uintptr(unsafe.Pointer(&a.pages[0]))
	pb := uintptr(unsafe.Pointer(&b.pages[0]))
	assert.Zero(t, pa%page, "pages must be aligned")
	assert.NotEqual(t, pa/page, pb/page)
	assert.Len(t, a.pages, int(page))
}

// TestSecretSurvivesGC keeps only a slice from InsecureBytes: the memory must
// stay valid after the Secret itself is gone.
func TestSecretSurvivesGC(t *testing.T) {
	b := SecretFromBytes([]byte("still here")).InsecureBytes()
	runtime.GC()
	runtime.GC()
	assert.Equal(t, []byte("still here"), b)
}
