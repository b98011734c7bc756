package content_test

import (
	"crypto/rand"
	"fmt"

	"github.com/cofferfs/coffer/fs/content"
)

// A new file: a random file ID and DEK, the DEK wrapped into slot 0 with
// generation 1, and its content sealed block by block.
func Example() {
	var id content.FileID
	dek := make([]byte, content.DEKSize)
	_, _ = rand.Read(id[:])
	_, _ = rand.Read(dek)

	// The key ring wraps dek with content.SlotAD(volumeID, id, keyID, 1) as
	// associated data; a placeholder stands in for its output here.
	h := &content.Header{Version: content.Version, FileID: id, Slots: [2]content.Slot{
		{KeyID: 42, Generation: 1, Wrapped: make([]byte, 65)},
	}}
	header, err := h.MarshalBinary()
	if err != nil {
		panic(err)
	}

	c, err := content.NewCipher(dek, id)
	if err != nil {
		panic(err)
	}
	file := c.Seal(header, []byte("hello, world\n"), 0)

	size, _, _ := content.PlainSize(int64(len(file)))
	plain, err := c.Open(nil, file[content.BlockOffset(0):], 0)
	fmt.Println(len(file), size, err, string(plain) == "hello, world\n")
	// Output: 333 13 <nil> true
}

// Opening a file tries the slots in Order; a re-wrap then writes the slot
// after the one that worked. Here the newer slot 1 was torn by a crash.
func ExampleHeader_NextSlotAfter() {
	h := &content.Header{Version: content.Version, Slots: [2]content.Slot{
		{KeyID: 1, Generation: 1, Wrapped: []byte("good")},
		{KeyID: 2, Generation: 2, Wrapped: []byte("torn")},
	}}
	unwrap := func(s content.Slot) bool { return string(s.Wrapped) == "good" }

	used := -1
	for _, i := range h.Order() {
		if unwrap(h.Slots[i]) {
			used = i
			break
		}
	}
	idx, gen := h.NextSlotAfter(used)
	fmt.Printf("order %v, used slot %d, re-wrap writes slot %d with generation %d\n",
		h.Order(), used, idx, gen)
	// Output: order [1 0], used slot 0, re-wrap writes slot 1 with generation 3
}
