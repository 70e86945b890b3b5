// Package wire encodes and decodes the Iris client protocol.
//
// The protocol is a byte stream of frames: one opcode byte, then a body whose
// layout the opcode fixes. Every integer is unsigned big-endian. The v1 frames
// keep byte compatibility with the clients of the first (Erlang) release. The
// v2 frames (LOGIN2, SEND2, ACK2 and the server's ACCEPTED, REJECTED and
// DELIVER) add sender acknowledgements and resumable sessions.
//
// The package owns framing only. A [Decoder] turns the bytes read from one
// connection into [Frame] values and enforces the size limits in [Limits];
// the Append functions build the frames the server sends. CBOR content is
// delimited here but parsed elsewhere, and every decision about what a frame
// means (login state, routing, replies) belongs to the session.
//
// Each Append function appends one whole server frame to dst and returns the
// extended slice, so a caller that reuses a buffer with enough capacity
// encodes without allocating. A value behind a length prefix must fit it
// (65535 bytes for a u16 prefix, 4294967295 for a u32). The decoder's limits
// keep client data far below that, so a longer value is a bug in the caller,
// and the encoder panics rather than send a corrupt frame.
package wire

// Opcodes of frames that clients send to the server.
const (
	// OpLogin is LOGIN: `user` or `user:token`, with no length field. The
	// decoder decodes 0x01 as LOGIN at any time, and a session that is
	// already logged in should reject it.
	OpLogin byte = 0x01
	// OpSend is SEND: `tlen:u16 target mlen:u16 msg`.
	OpSend byte = 0x02
	// OpAck is ACK: the IDLen-byte id of a RELIABLE delivery.
	OpAck byte = 0x03
	// OpBatchSend is BATCH_SEND: `tlen:u16 target blen:u32 blob`, where the
	// blob is a sequence of `len:u16 msg` entries.
	OpBatchSend byte = 0x04
	// OpGetStatus is GET_STATUS: `tlen:u16 target`.
	OpGetStatus byte = 0x05
	// OpSendSeq is SEND_SEQ: `tlen:u16 target seq:u64 mlen:u16 msg`.
	OpSendSeq byte = 0x07
	// OpLogin2 is LOGIN2: `ulen:u16 user tlen:u16 token`.
	OpLogin2 byte = 0x08
	// OpSend2 is SEND2: `cid:u64 tlen:u16 target mlen:u32 msg`.
	OpSend2 byte = 0x09
	// OpCBORMsg is CBOR_MSG: `tlen:u16 target clen:u32 cbor-map`. The server
	// uses the same opcode value for RELIABLE.
	OpCBORMsg byte = 0x10
	// OpAck2 is ACK2: `seq:u64`, a cumulative acknowledgement.
	OpAck2 byte = 0x12
	// OpPrekeyUpload uploads an E2EE key bundle: `blen:u32 cbor-map`.
	OpPrekeyUpload byte = 0x20
	// OpPrekeyFetch requests another user's key bundle: `ulen:u16 user`.
	OpPrekeyFetch byte = 0x21
	// OpE2EE is an end-to-end encrypted message:
	// `rlen:u16 recipient hlen:u16 header clen:u32 cipher`.
	OpE2EE byte = 0x23
	// OpGroupCreate creates a group: `nlen:u16 name`.
	OpGroupCreate byte = 0x30
	// OpGroupLeave leaves a group: `glen:u16 gid`. The server replies with
	// the same opcode followed by "OK".
	OpGroupLeave byte = 0x32
	// OpGroupLeaveAlt is also decoded as a leave (the frame's Op is set to
	// OpGroupLeave). The protocol names only the reply opcode of a leave, so
	// clients exist that send 0x31, the opcode after create's 0x30.
	OpGroupLeaveAlt byte = 0x31
	// OpGroupMessage sends an encrypted group message:
	// `glen:u16 gid hlen:u16 header clen:u32 cipher`.
	OpGroupMessage byte = 0x33
	// OpGroupRoster requests the member list: `glen:u16 gid`. The server
	// replies with the same opcode.
	OpGroupRoster byte = 0x35
	// OpGroupSenderKey distributes a sender key: `glen:u16 gid klen:u32 key`.
	// The server relays it with the same opcode and the sender added.
	OpGroupSenderKey byte = 0x36
	// OpGroupAddMember adds a member (admins only): `glen:u16 gid ulen:u16 user`.
	OpGroupAddMember byte = 0x37
	// OpTypingStart reports that the sender started typing: `tlen:u16 target`.
	OpTypingStart byte = 0x70
	// OpTypingStop reports that the sender stopped typing: `tlen:u16 target`.
	OpTypingStop byte = 0x71
	// OpReadReceipt reports that a message was read:
	// `mlen:u16 msgid slen:u16 original_sender`.
	OpReadReceipt byte = 0x74
)

// Opcodes of frames that the server sends to clients. Some share a value with
// a client opcode, and only the direction distinguishes them.
const (
	// OpLoginOK is the reply to a successful LOGIN or LOGIN2.
	OpLoginOK byte = 0x03
	// OpStatus is the reply to GET_STATUS.
	OpStatus byte = 0x06
	// OpAccepted confirms that a SEND2 message is durable.
	OpAccepted byte = 0x0B
	// OpRejected reports that a SEND2 message was not stored.
	OpRejected byte = 0x0C
	// OpReliable carries one v1 delivery, which the client must ACK.
	OpReliable byte = 0x10
	// OpDeliver carries one v2 inbox entry, which the client must ACK2.
	OpDeliver byte = 0x11
	// OpPrekeyResponse is the reply to a prekey upload or fetch.
	OpPrekeyResponse byte = 0x22
	// OpE2EEDeliver relays an E2EE message to its recipient.
	OpE2EEDeliver byte = 0x24
	// OpGroupMember announces a member of a group. It is the reply to a
	// create, naming the creator, and the notice every member gets when
	// someone is added.
	OpGroupMember byte = 0x31
	// OpGroupLeaveOK confirms a leave.
	OpGroupLeaveOK byte = 0x32
	// OpGroupDeliver relays a group message to one member.
	OpGroupDeliver byte = 0x34
	// OpTyping relays a typing state change.
	OpTyping byte = 0x72
	// OpReceipt relays a read receipt to the original sender.
	OpReceipt byte = 0x75
	// OpError rejects a frame: `len:u16 reason`.
	OpError byte = 0xFE
	// OpRateLimited reports an empty send bucket: `retry_after_ms:u32`.
	OpRateLimited byte = 0xFF
)

// IDLen is the length of the message ids the server generates. An ACK body is
// exactly this long, so whatever follows it is the next frame.
const IDLen = 16

// MaxUserNameLen is the protocol's upper bound on a user name in bytes;
// Limits.MaxUserName and Limits.MaxTarget can only lower it.
const MaxUserNameLen = 256

// Typing states carried by OpTyping and set in Frame.State.
const (
	TypingStopped byte = 0
	TypingStarted byte = 1
)
