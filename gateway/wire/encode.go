package wire

import (
	"encoding/binary"
	"strconv"
)

// text is a name, id or reason. Encoders accept it as a string or as bytes,
// such as a field of a decoded Frame, without a conversion.
type text interface{ ~string | ~[]byte }

// AppendLoginOK appends LOGIN_OK, the reply to a successful LOGIN or LOGIN2.
func AppendLoginOK(dst []byte) []byte {
	return append(dst, OpLoginOK, 'L', 'O', 'G', 'I', 'N', '_', 'O', 'K')
}

// AppendReliable appends RELIABLE, one v1 delivery: `10 idlen:u16 id mlen:u32
// msg`. For content other than a plain message, msg is the complete live
// frame (0x24, 0x34 or 0x36) including its opcode.
func AppendReliable(dst, id, msg []byte) []byte {
	dst = append(dst, OpReliable)
	dst = appendBytes16(dst, id, "message id")
	return appendBytes32(dst, msg, "message")
}

// AppendStatus appends the STATUS reply to GET_STATUS:
// `06 ulen:u16 user state:u8 seen:u64`. lastSeen is in Unix seconds; the
// frame carries 0 when the user is online.
func AppendStatus[S text](dst []byte, user S, online bool, lastSeen uint64) []byte {
	dst = append(dst, OpStatus)
	dst = appendText16(dst, user, "user name")
	if online {
		dst = append(dst, 1)
		lastSeen = 0
	} else {
		dst = append(dst, 0)
	}
	return binary.BigEndian.AppendUint64(dst, lastSeen)
}

// AppendError appends ERROR: `FE len:u16 reason`, where reason is a short
// snake_case ASCII string such as (*Error).Reason.
func AppendError[S text](dst []byte, reason S) []byte {
	dst = append(dst, OpError)
	return appendText16(dst, reason, "error reason")
}

// AppendRateLimited appends RATE_LIMITED: `FF retry_after_ms:u32`.
func AppendRateLimited(dst []byte, retryAfterMillis uint32) []byte {
	dst = append(dst, OpRateLimited)
	return binary.BigEndian.AppendUint32(dst, retryAfterMillis)
}

// AppendAccepted appends ACCEPTED: `0B cid:u64 seq:u64`, sent once a SEND2
// message is durable; seq is its position in the recipient's inbox.
func AppendAccepted(dst []byte, cid, seq uint64) []byte {
	dst = append(dst, OpAccepted)
	dst = binary.BigEndian.AppendUint64(dst, cid)
	return binary.BigEndian.AppendUint64(dst, seq)
}

// AppendRejected appends REJECTED: `0C cid:u64 rlen:u16 reason`, sent when a
// SEND2 message was not stored.
func AppendRejected[S text](dst []byte, cid uint64, reason S) []byte {
	dst = append(dst, OpRejected)
	dst = binary.BigEndian.AppendUint64(dst, cid)
	return appendText16(dst, reason, "rejection reason")
}

// AppendDeliver appends DELIVER, one v2 inbox entry:
// `11 seq:u64 kind:u8 slen:u16 sender ts_ms:u64 mlen:u32 msg`. kind is the
// opcode the content has live: OpSend, OpCBORMsg, OpE2EEDeliver,
// OpGroupDeliver or OpGroupSenderKey. msg is that frame's body without the
// opcode, which for OpSend is the message itself. acceptedMillis is the
// server's accept time in Unix milliseconds.
func AppendDeliver[S text](dst []byte, seq uint64, kind byte, sender S, acceptedMillis uint64, msg []byte) []byte {
	dst = append(dst, OpDeliver)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	dst = append(dst, kind)
	dst = appendText16(dst, sender, "sender")
	dst = binary.BigEndian.AppendUint64(dst, acceptedMillis)
	return appendBytes32(dst, msg, "message")
}

// AppendPrekeyResponse appends the reply to a prekey upload or fetch:
// `22 blen:u32 cbor-map`, with the map already encoded.
func AppendPrekeyResponse(dst, bundle []byte) []byte {
	dst = append(dst, OpPrekeyResponse)
	return appendBytes32(dst, bundle, "key bundle")
}

// AppendE2EEDeliver appends an E2EE message for its recipient:
// `24 slen:u16 sender hlen:u16 header clen:u32 cipher`. Header and
// ciphertext are copied byte for byte from the sender's frame.
func AppendE2EEDeliver[S text](dst []byte, sender S, header, cipher []byte) []byte {
	dst = append(dst, OpE2EEDeliver)
	dst = appendText16(dst, sender, "sender")
	dst = appendBytes16(dst, header, "E2EE header")
	return appendBytes32(dst, cipher, "ciphertext")
}

// AppendGroupMember appends `31 glen:u16 gid ulen:u16 user`: the reply to a
// group create (user is the creator) and the notice every member gets when
// user is added.
func AppendGroupMember[G, U text](dst []byte, group G, user U) []byte {
	dst = append(dst, OpGroupMember)
	dst = appendText16(dst, group, "group id")
	return appendText16(dst, user, "user name")
}

// AppendGroupLeaveOK appends `32 'O' 'K'`, the reply to a group leave.
func AppendGroupLeaveOK(dst []byte) []byte {
	return append(dst, OpGroupLeaveOK, 'O', 'K')
}

// AppendGroupDeliver appends a group message for one member:
// `34 glen:u16 gid slen:u16 sender hlen:u16 header clen:u32 cipher`.
func AppendGroupDeliver[G, S text](dst []byte, group G, sender S, header, cipher []byte) []byte {
	dst = append(dst, OpGroupDeliver)
	dst = appendText16(dst, group, "group id")
	dst = appendText16(dst, sender, "sender")
	dst = appendBytes16(dst, header, "E2EE header")
	return appendBytes32(dst, cipher, "ciphertext")
}

// AppendGroupRoster appends the roster reply:
// `35 glen:u16 gid rlen:u32 cbor-array-of-names`, with the array already
// encoded.
func AppendGroupRoster[G text](dst []byte, group G, roster []byte) []byte {
	dst = append(dst, OpGroupRoster)
	dst = appendText16(dst, group, "group id")
	return appendBytes32(dst, roster, "roster")
}

// AppendGroupSenderKey appends a relayed sender key:
// `36 glen:u16 gid slen:u16 sender klen:u32 key`.
func AppendGroupSenderKey[G, S text](dst []byte, group G, sender S, key []byte) []byte {
	dst = append(dst, OpGroupSenderKey)
	dst = appendText16(dst, group, "group id")
	dst = appendText16(dst, sender, "sender")
	return appendBytes32(dst, key, "sender key")
}

// AppendTyping appends `72 slen:u16 sender state:u8`; state is TypingStarted
// or TypingStopped.
func AppendTyping[S text](dst []byte, sender S, state byte) []byte {
	dst = append(dst, OpTyping)
	dst = appendText16(dst, sender, "sender")
	return append(dst, state)
}

// AppendReceipt appends a read receipt for the original sender:
// `75 mlen:u16 msgid rlen:u16 reader ts:u64`, where readMillis is in Unix
// milliseconds.
func AppendReceipt[M, R text](dst []byte, msgID M, reader R, readMillis uint64) []byte {
	dst = append(dst, OpReceipt)
	dst = appendText16(dst, msgID, "message id")
	dst = appendText16(dst, reader, "reader")
	return binary.BigEndian.AppendUint64(dst, readMillis)
}

func appendText16[S text](dst []byte, s S, field string) []byte {
	if len(s) > 0xFFFF {
		panicTooLong(field, len(s), 0xFFFF)
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

func appendBytes16(dst, b []byte, field string) []byte {
	return appendText16(dst, b, field)
}

func appendBytes32(dst, b []byte, field string) []byte {
	if uint64(len(b)) > 0xFFFFFFFF {
		panicTooLong(field, len(b), 0xFFFFFFFF)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...)
}

func panicTooLong(field string, n, limit int) {
	panic("wire: " + field + " is " + strconv.Itoa(n) + " bytes, more than its length prefix allows (" + strconv.Itoa(limit) + ")")
}
