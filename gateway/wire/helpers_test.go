package wire

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

// Builders for client frames, written independently of the decoder so that
// the tests check it against the protocol rather than against itself.

func be16(n int) []byte    { return binary.BigEndian.AppendUint16(nil, uint16(n)) }
func be32(n int) []byte    { return binary.BigEndian.AppendUint32(nil, uint32(n)) }
func be64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func op(b byte) []byte { return []byte{b} }

// str16 and str32 encode s behind a u16 or u32 length prefix.
func str16(s string) []byte { return cat(be16(len(s)), []byte(s)) }
func str32(s string) []byte { return cat(be32(len(s)), []byte(s)) }

func sendFrame(target, msg string) []byte { return cat(op(OpSend), str16(target), str16(msg)) }

func ackFrame(id [IDLen]byte) []byte { return cat(op(OpAck), id[:]) }

func batchFrame(target string, msgs ...string) []byte {
	var blob []byte
	for _, m := range msgs {
		blob = append(blob, str16(m)...)
	}
	return cat(op(OpBatchSend), str16(target), be32(len(blob)), blob)
}

func statusFrame(target string) []byte { return cat(op(OpGetStatus), str16(target)) }

func sendSeqFrame(target string, seq uint64, msg string) []byte {
	return cat(op(OpSendSeq), str16(target), be64(seq), str16(msg))
}

func login2Frame(user, token string) []byte { return cat(op(OpLogin2), str16(user), str16(token)) }

func send2Frame(cid uint64, target, msg string) []byte {
	return cat(op(OpSend2), be64(cid), str16(target), str32(msg))
}

func cborFrame(target, cbor string) []byte { return cat(op(OpCBORMsg), str16(target), str32(cbor)) }

func ack2Frame(seq uint64) []byte { return cat(op(OpAck2), be64(seq)) }

func prekeyUploadFrame(bundle string) []byte { return cat(op(OpPrekeyUpload), str32(bundle)) }

func prekeyFetchFrame(user string) []byte { return cat(op(OpPrekeyFetch), str16(user)) }

func e2eeFrame(recipient, header, cipher string) []byte {
	return cat(op(OpE2EE), str16(recipient), str16(header), str32(cipher))
}

func groupCreateFrame(name string) []byte { return cat(op(OpGroupCreate), str16(name)) }

func groupLeaveFrame(group string) []byte { return cat(op(OpGroupLeave), str16(group)) }

func groupMessageFrame(group, header, cipher string) []byte {
	return cat(op(OpGroupMessage), str16(group), str16(header), str32(cipher))
}

func groupRosterFrame(group string) []byte { return cat(op(OpGroupRoster), str16(group)) }

func senderKeyFrame(group, key string) []byte {
	return cat(op(OpGroupSenderKey), str16(group), str32(key))
}

func addMemberFrame(group, user string) []byte {
	return cat(op(OpGroupAddMember), str16(group), str16(user))
}

func typingFrame(start bool, target string) []byte {
	if start {
		return cat(op(OpTypingStart), str16(target))
	}
	return cat(op(OpTypingStop), str16(target))
}

func receiptFrame(msgID, sender string) []byte {
	return cat(op(OpReadReceipt), str16(msgID), str16(sender))
}

func testID(seed byte) [IDLen]byte {
	var id [IDLen]byte
	for i := range id {
		id[i] = seed + byte(i)
	}
	return id
}

// fromHex decodes a hex dump that may contain spaces.
func fromHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex in test: %v", err)
	}
	return b
}

// describe renders every field of f, so that two frames compare equal
// exactly when their contents do, whether a slice is nil or empty.
func describe(f *Frame) string {
	var b strings.Builder
	fmt.Fprintf(&b, "op=%#02x", f.Op)

	field := func(name string, v []byte) {
		if len(v) > 0 {
			fmt.Fprintf(&b, " %s=%q", name, v)
		}
	}
	number := func(name string, v uint64) {
		if v != 0 {
			fmt.Fprintf(&b, " %s=%d", name, v)
		}
	}

	field("user", f.User)
	field("token", f.Token)
	field("target", f.Target)
	field("msg", f.Msg)
	field("batch", f.Batch)
	number("batchlen", uint64(f.BatchLen))
	if f.ID != [IDLen]byte{} {
		fmt.Fprintf(&b, " id=%x", f.ID)
	}
	number("seq", f.Seq)
	number("cid", f.CID)
	field("bundle", f.Bundle)
	field("header", f.Header)
	field("cipher", f.Cipher)
	field("group", f.Group)
	field("name", f.Name)
	field("key", f.Key)
	field("msgid", f.MsgID)
	field("sender", f.Sender)
	number("state", uint64(f.State))
	return b.String()
}

// drain calls Next until it needs more bytes or fails fatally, and returns
// one line per result: the frame's description or "error: <reason>".
func drain(d *Decoder) []string {
	var out []string
	for {
		f, err := d.Next()
		if err != nil {
			e := err.(*Error)
			out = append(out, "error: "+e.Reason)
			if e.Fatal {
				return out
			}
			continue
		}
		if f == nil {
			return out
		}
		out = append(out, describe(f))
	}
}

// decodeWhole feeds data in one piece and drains the decoder.
func decodeWhole(l Limits, data []byte) []string {
	d := NewDecoder(l)
	if err := d.Feed(data); err != nil {
		return []string{"feed error: " + err.(*Error).Reason}
	}
	return drain(d)
}

// decodePieces feeds data in pieces of the given sizes (the last piece takes
// what is left) and drains the decoder after each one.
func decodePieces(l Limits, data []byte, sizes []int) []string {
	d := NewDecoder(l)
	var out []string
	for i := 0; len(data) > 0; i++ {
		n := len(data)
		if i < len(sizes) {
			n = min(max(sizes[i], 1), len(data))
		}
		if err := d.Feed(data[:n]); err != nil {
			return append(out, "feed error: "+err.(*Error).Reason)
		}
		data = data[n:]
		out = append(out, drain(d)...)
		if d.fatal != nil {
			return out
		}
	}
	return out
}

func onesOf(n int) []int {
	sizes := make([]int, n)
	for i := range sizes {
		sizes[i] = 1
	}
	return sizes
}
