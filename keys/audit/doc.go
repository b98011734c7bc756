// Package audit keeps a volume's tamper-evident audit trail of key use: an
// append-only file of JSON lines, one Record per key event (init, mount,
// unmount, unlock failure, master key changes, rotation, integrity failure,
// recovery-key use, backup export), never one per read or write.
//
// # Chain and MACs
//
// Every record carries in "prev" the SHA-256 of the previous line's exact
// bytes (without its newline); the first record's prev is the log's genesis
// hash, SHA-256 of "coffer-audit-v1\x00genesis\x00" followed by the 16
// bytes of the volume ID. Records are numbered by "seq" from 1. An edit,
// deletion, insertion or reordering anywhere but at the very end breaks the
// chain, and anyone can check that without a key (Verify with no Keys).
//
// The chain alone does not stop someone who rewrites the file from that point
// on. So a writer that holds the unlocked ring (Log.SetKeys) appends to each
// record "mac_key", the ID of the ring's primary key, and "mac", an
// HMAC-SHA256 of the line without those two fields, under a key derived from
// that ring key (keys.Ring.DeriveKey with purpose MACPurpose). Because the
// MAC covers prev, every keyed record is a checkpoint of the whole chain
// before it. Only events that happen without the ring may lack a MAC: a
// failed unlock and the commands that need no key (Unkeyed). Close writes a
// closing "checkpoint" record when the log is keyed, which also covers any
// unkeyed records that other processes added since.
//
// # The head anchor
//
// Nothing inside a file can prove that its tail was not cut off. Each writer
// therefore keeps the head of the chain (seq and hash of the last line) in
// the volume's .coffer/audit-head.json (Anchor), updated in two steps around
// each append so that a crash between them is told apart from truncation.
// Verify with an Anchor reports a log that ends before the anchored head.
// The anchor lives in the backing directory, normally on another file
// system and with other permissions than the log; an attacker who can
// rewrite both, and has no ring key, can still cut the tail and forge
// unkeyed records. docs/audit.md lists what is and is not detected.
//
// # Concurrency
//
// Several processes may append to one log at once (a mount and a CLI
// command). Each append takes an exclusive flock on the log, reads the last
// line to link to it, writes the whole new line with one write on an
// O_APPEND descriptor, fsyncs it and updates the anchor before it unlocks,
// so lines never interleave and the chain stays one chain.
package audit
