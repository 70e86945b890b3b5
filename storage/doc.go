// Package storage keeps users' durable inboxes, message dedup records and last-seen times in
// Pebble.
//
// # Write path
//
// Every state change is an [Op]. [Store.ApplyOps] applies a list of ops, in order, into one
// Pebble batch and commits it with an fsync. The outcome depends only on the ops and on the
// state before the batch: time comes from the ops (stamped by the proposer), never from the
// local clock, and per-entry tags are chosen by the proposer too. So a raft FSM can replay the
// same encoded ops ([MarshalOps]) on every replica and reach the same state. One setting takes
// part in the outcome: [Options.MaxInbox], which must therefore be equal on all replicas.
//
// Today a single goroutine per store drives ApplyOps as a group commit: [Store.Append],
// [Store.Ack], [Store.AckUpTo] and [Store.SetLastSeen] queue ops, the goroutine takes every
// queued op (up to [Options.MaxBatch]) and commits them together. While one fsync is in flight
// the next ops queue up, so under load one fsync carries many appends.
//
// A simpler design, one Pebble commit per append from the caller's goroutine, was rejected: it
// costs one fsync per message, and seq assignment would need a per-user lock anyway.
//
// # Key layout
//
// Every key starts with a one-byte table tag. User names are non-empty and never contain 0x00
// or ':', so "user 0x00" ends a user's prefix without ambiguity. Integers are big-endian so that
// byte order equals numeric order.
//
//	'i' user 0x00 seq(8)           inbox entry: tag(8) kind(1) timeMS(8) uvarint(len sender) sender body
//	'm' user                       inbox metadata: lastSeq(8) unacked(8) ackedThrough(8)
//	'l' user                       last-seen time: unix seconds(8)
//	'd' dedupID                    dedup record: untilMS(8) seq(8) tag(8)
//	'x' untilMS(8) dedupID         dedup expiry index, empty value, read by the sweep
//
// dedupID is uvarint(len sender) sender uvarint(len scope) scope id(8), so any byte may appear
// in a sender or scope. lastSeq is the highest seq ever assigned in the inbox, so seqs are never
// reused even after every entry is acknowledged. Entries with seq <= ackedThrough are all
// acknowledged, which lets readers skip the tombstones that cumulative acks leave behind.
//
// # Failures
//
// Pebble (v2.1) treats a failed WAL write or fsync as fatal and, by default, exits the
// process. This package installs a Pebble logger whose Fatalf panics instead. The commit path
// recovers that panic, closes the failed Pebble instance and reopens the directory once a
// probe write succeeds. Every op of the failed batch gets the error, the in-memory metadata
// cache is dropped and reloaded from disk, and the store keeps serving after the disk
// recovers. Readers get ErrUnavailable while Pebble is closed.
//
// NOTE: some write failures still end the process. Pebble panics while holding its own locks
// when it cannot rotate to a new WAL file, and calls Fatalf on its background goroutines when
// a MANIFEST write fails. Neither can be recovered in-process.
package storage
