// Package replica replicates a storage.Store across the cores with hashicorp/raft (v1.7.2),
// so that every core holds a full copy, as Mnesia disc_copies tables do.
//
// # Write path
//
// The leader's [Replica.Apply] encodes a list of ops with storage.MarshalOps into one raft
// entry. Raft appends it to the leader's log, replicates it, and once a majority has it in
// its log the entry commits and every replica's FSM passes it to
// storage.Store.ApplyReplicated. Apply returns after the leader's own store has applied it,
// with the per-op results. A [Batcher] is the group commit in front of Apply: the ops that
// arrive while one entry is in flight travel together in the next.
//
// Reads come from the local store. A follower is behind the leader by the entries not yet
// applied; [Replica.WaitApplied] with the index returned by Apply gives read-your-writes on
// any replica.
//
// # Durability and restarts
//
// The raft log ([LogStore], its own Pebble instance in Dir/raft-log) fsyncs every write. The
// store applies entries without an fsync and records the entry index in the same batch, so
// after a crash raft replays the entries above the snapshot and the store skips those at or
// below its applied index. Raft is started with NoSnapshotRestoreOnStart for the same reason:
// the store keeps its state across restarts, and reloading the snapshot would only redo work.
// If the store is behind the newest local snapshot (its directory was lost, or a crash hit the
// middle of a snapshot install), Start restores that snapshot first.
//
// Snapshots are Pebble checkpoints of the store, streamed as a tar file into raft's file
// snapshot store (Dir/snapshots) and to followers that lag behind the compacted log.
//
// # Membership and security
//
// The first start of a group bootstraps it from Config.Bootstrap; every later start finds
// the raft state on disk and rejoins without it. Voters are added and removed on the leader.
// With Config.TLS set, raft traffic uses mutual TLS, and a connection whose certificate does
// not verify against the cluster CA is closed before raft reads from it.
package replica
