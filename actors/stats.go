package actors

import "sync/atomic"

// Stats counts what the actors of one node do. All fields are safe for
// concurrent use; the admin server reads them for /stats and /metrics.
type Stats struct {
	SessionsTCP  atomic.Int64 // live sessions on the TCP listener
	SessionsWS   atomic.Int64 // live sessions on the WebSocket listener
	ShardsActive atomic.Int64 // shard grains activated on this node

	Received      atomic.Uint64 // messages received from clients
	Appended      atomic.Uint64 // messages stored in an inbox
	Deduplicated  atomic.Uint64 // repeated v2 sends given the result from the dedup record
	Delivered     atomic.Uint64 // deliveries written to a client, first attempt
	Redelivered   atomic.Uint64 // deliveries written again after a timeout
	Acked         atomic.Uint64 // v1 acknowledgements (v2 cumulative ones count once)
	Rejected      atomic.Uint64 // sends that got an error
	RateLimited   atomic.Uint64 // sends refused by the rate limiter
	BadFrames     atomic.Uint64 // frames rejected with 0xFE
	Routed        atomic.Uint64 // envelopes forwarded by routers
	RouteFailed   atomic.Uint64 // envelopes a router could not place
	SendRetries   atomic.Uint64 // appends sent again after their reply was overdue
	TypingShed    atomic.Uint64 // typing frames dropped under overload
	StatusShed    atomic.Uint64 // presence queries refused under overload
	ReceiptShed   atomic.Uint64 // read receipts dropped under overload
	Relayed       atomic.Uint64 // typing states and receipts pushed to a live session
	AcksIgnored   atomic.Uint64 // v1 acks of ids the connection has not outstanding
	SlowConsumers atomic.Uint64 // connections closed because they stopped acknowledging
	LoginsOK      atomic.Uint64
	LoginsFailed  atomic.Uint64
	LoginsBlocked atomic.Uint64 // logins refused after repeated failures
	ConnRejected  atomic.Uint64 // connections refused by the per-IP rate limit
	DeadLetters   atomic.Uint64 // messages sent to actors that no longer exist
	Writes        atomic.Uint64 // writes to client connections, each of one or more frames

	// DeliveryLatency times each first delivery from the message's accept
	// time to its write to the recipient's connection.
	DeliveryLatency Histogram
	// StoreWriteLatency times appends from the call to the durable result.
	StoreWriteLatency Histogram
	// Actors counts live actors and waiting messages by kind.
	Actors ActorKinds
}

// Crash makes the actor that receives it panic with Reason. It is the
// fault-injection hook that supervision tests use, in the way OTP tests kill
// a process with exit(Pid, kill). It is a plain Go type, not a protobuf
// message, so it can be sent only from inside the node, never from a
// client or another node.
type Crash struct{ Reason string }
