package rewrap

import (
	"encoding/binary"
	"io"
	"os"
)

// Tally counts the file headers and directory records under backing by
// the ring key of their current slot (the higher generation), without
// unwrapping anything: no key is needed. Files too short for a header and
// files without a header magic are not counted.
func Tally(backing string) (map[uint32]int, error) {
	out := map[uint32]int{}
	err := walk(backing, func(path, _ string) {
		if id, ok := currentKey(path); ok {
			out[id]++
		}
	})
	return out, err
}

// currentKey reads the key ID of the current slot of the header of path.
func currentKey(path string) (uint32, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var b [280]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return 0, false
	}
	if m := string(b[:6]); m != "coffer" && m != "cofdir" {
		return 0, false
	}
	k0, g0 := binary.BigEndian.Uint32(b[24:28]), binary.BigEndian.Uint64(b[28:36])
	k1, g1 := binary.BigEndian.Uint32(b[152:156]), binary.BigEndian.Uint64(b[156:164])
	if g1 > g0 {
		return k1, true
	}
	return k0, true
}
