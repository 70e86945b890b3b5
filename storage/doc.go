// Package storage keeps users' durable inboxes, message dedup records, last-seen times,
// end-to-end encryption key bundles and groups in Pebble.
//
// # Write path
//
// Every state change is an [Op]. [Store.ApplyOps] applies a list of ops, in order, into one
// Pebble batch and commits it with an fsync. The outcome depends only on the ops and on the
// state before the batch: time comes from the ops (stamped by the proposer), never from the
// local clock, and per-entry tags are chosen by the proposer too. So a raft FSM can replay the
// same encoded ops ([MarshalOps]) on every replica and reach the same state. Group ids are
// chosen by the proposer too. The limits [Options.MaxInbox], [Options.MaxPrekeys],
// [Options.MaxGroupSize] and [Options.MaxGroupsPerUser] take part in the outcome, so they must
// be equal on all replicas.
//
// Today a single goroutine per store drives ApplyOps as a group commit: [Store.Append],
// [Store.Ack], [Store.AckUpTo], [Store.SetLastSeen] and [Store.Do] queue ops, the goroutine
// takes every queued op (up to [Options.MaxBatch]) and commits them together. While one fsync
// is in flight the next ops queue up, so under load one fsync carries many appends.
//
// Pebble (v2.1) lets readers see a batch before its fsync returns. Readers must not see writes that
// a failed commit may lose, so inbox reads stop at the last committed seq, and reads of key
// bundles and groups wait for the in-flight commit when it writes the key they read.
//
// A simpler design, one Pebble commit per append from the caller's goroutine, was rejected: it
// costs one fsync per message, and seq assignment would need a per-user lock anyway.
//
// A store opened with [Options.Replicated] is one replica of a raft group: its only writer is
// [Store.ApplyReplicated], which applies one committed raft entry per batch and records the
// entry's index in the same batch, so a replayed entry is skipped. [Store.Checkpoint] and
// [Store.RestoreCheckpoint] carry raft snapshots.
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
//	'o' orderID                    order record: untilMS(8) lastN(8)
//	'y' untilMS(8) orderID         order expiry index, empty value
//	'k' user                       key bundle: firstPrekey(8) nextPrekey(8) flags(1) timestamp(8)
//	                               uvarint(len) identityKey uvarint(len) signedPrekey uvarint(len) signature
//	'p' user 0x00 index(8)         one-time prekey, for firstPrekey <= index < nextPrekey
//	'g' groupID                    group: createdMS(8) uvarint(len) name uvarint(count)
//	                               then per member in join order: flags(1) uvarint(len) user
//	'u' user 0x00 groupID          user-to-group index, empty value, one key per membership
//	'r'                            applied raft index(8), written only by ApplyReplicated
//
// dedupID is uvarint(len sender) sender uvarint(len scope) scope id(8), so any byte may appear
// in a sender or scope. lastSeq is the highest seq ever assigned in the inbox, so seqs are never
// reused even after every entry is acknowledged. Entries with seq <= ackedThrough are all
// acknowledged, which lets readers skip the tombstones that cumulative acks leave behind.
//
// orderID is uvarint(len user) user uvarint(len sender) sender stream(8). The one-time prekey
// pool is a queue: uploads add at nextPrekey and fetches remove at firstPrekey, so prekeys are
// handed out oldest first and each index is used once. In a group record, flags bit 0 marks
// an admin. Group ids are 1 to 255 arbitrary bytes; they end the 'u' keys, so no separator is
// needed after them.
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
