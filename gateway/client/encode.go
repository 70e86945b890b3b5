package client

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrFieldTooLong is returned when a field does not fit its length prefix
// (u16 or u32). The client checks nothing else: server limits such as the
// 256-byte user name are left to the server, so tests can probe them.
var ErrFieldTooLong = errors.New("field too long for its length prefix")

// The Append functions add one client-to-server frame to dst and return the
// extended slice. They let a caller put several frames into one write (see
// Conn.WriteRaw) or build byte-exact input for tests.

// encoder appends fields and keeps the first error, so each Append function
// reads as the frame layout.
type encoder struct {
	b   []byte
	err error
}

func (e *encoder) u8(v byte)    { e.b = append(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }

func (e *encoder) bytes16(field string, p []byte) {
	if len(p) > math.MaxUint16 {
		e.fail(field, len(p), math.MaxUint16)
		return
	}
	e.b = binary.BigEndian.AppendUint16(e.b, uint16(len(p)))
	e.b = append(e.b, p...)
}

func (e *encoder) bytes32(field string, p []byte) {
	if uint64(len(p)) > math.MaxUint32 {
		e.fail(field, len(p), math.MaxUint32)
		return
	}
	e.b = binary.BigEndian.AppendUint32(e.b, uint32(len(p)))
	e.b = append(e.b, p...)
}

func (e *encoder) string16(field, s string) { e.bytes16(field, []byte(s)) }

func (e *encoder) fail(field string, n, limit int) {
	if e.err == nil {
		e.err = fmt.Errorf("%w: %s is %d bytes, at most %d fit", ErrFieldTooLong, field, n, limit)
	}
}

// result returns dst unchanged on error, so a failed append never leaves
// half a frame behind.
func (e *encoder) result(dst []byte) ([]byte, error) {
	if e.err != nil {
		return dst, e.err
	}
	return e.b, nil
}

func start(dst []byte, op Op) *encoder {
	return &encoder{b: append(dst, byte(op))}
}

// AppendLogin appends a v1 LOGIN. It has no length field: the server takes
// the rest of the read as the user name, so nothing may follow it in the
// same write.
func AppendLogin(dst []byte, user string) []byte {
	return append(append(dst, byte(OpLogin)), user...)
}

// AppendLoginToken appends a v1 LOGIN whose body is "user:jwt".
func AppendLoginToken(dst []byte, user, jwt string) []byte {
	return append(AppendLogin(dst, user), ":"+jwt...)
}

// AppendLogin2 appends a v2 LOGIN2: ulen:u16 user tlen:u16 token.
func AppendLogin2(dst []byte, user, token string) ([]byte, error) {
	e := start(dst, OpLogin2)
	e.string16("user", user)
	e.string16("token", token)
	return e.result(dst)
}

// AppendSend appends a v1 SEND: tlen:u16 target mlen:u16 msg.
func AppendSend(dst []byte, target string, msg []byte) ([]byte, error) {
	e := start(dst, OpSend)
	e.string16("target", target)
	e.bytes16("message", msg)
	return e.result(dst)
}

// AppendSendSeq appends a SEND_SEQ: tlen:u16 target seq:u64 mlen:u16 msg.
func AppendSendSeq(dst []byte, target string, seq uint64, msg []byte) ([]byte, error) {
	e := start(dst, OpSendSeq)
	e.string16("target", target)
	e.u64(seq)
	e.bytes16("message", msg)
	return e.result(dst)
}

// AppendBatchSend appends a BATCH_SEND: tlen:u16 target blen:u32 blob, where
// the blob is each message as len:u16 msg.
func AppendBatchSend(dst []byte, target string, msgs [][]byte) ([]byte, error) {
	blob := &encoder{}
	for i, msg := range msgs {
		blob.bytes16(fmt.Sprintf("batch message %d", i), msg)
	}
	if blob.err != nil {
		return dst, blob.err
	}
	e := start(dst, OpBatchSend)
	e.string16("target", target)
	e.bytes32("batch", blob.b)
	return e.result(dst)
}

// AppendAck appends a v1 ACK: the opcode and the id with no length field.
func AppendAck(dst []byte, id []byte) []byte {
	return append(append(dst, byte(OpAck)), id...)
}

// AppendGetStatus appends a GET_STATUS: tlen:u16 target.
func AppendGetStatus(dst []byte, target string) ([]byte, error) {
	e := start(dst, OpGetStatus)
	e.string16("target", target)
	return e.result(dst)
}

// AppendCBORMessage appends a CBOR_MSG: tlen:u16 target clen:u32 cbor-map.
func AppendCBORMessage(dst []byte, target string, cbor []byte) ([]byte, error) {
	e := start(dst, OpCBORMessage)
	e.string16("target", target)
	e.bytes32("CBOR payload", cbor)
	return e.result(dst)
}

// AppendSend2 appends a v2 SEND2: cid:u64 tlen:u16 target mlen:u32 msg.
func AppendSend2(dst []byte, cid uint64, target string, msg []byte) ([]byte, error) {
	e := start(dst, OpSend2)
	e.u64(cid)
	e.string16("target", target)
	e.bytes32("message", msg)
	return e.result(dst)
}

// AppendAck2 appends a v2 ACK2 (seq:u64), which acknowledges every inbox
// entry up to and including seq.
func AppendAck2(dst []byte, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, byte(OpAck2)), seq)
}

// AppendPrekeyUpload appends a key bundle upload: blen:u32 cbor-map.
func AppendPrekeyUpload(dst []byte, bundle []byte) ([]byte, error) {
	e := start(dst, OpPrekeyUpload)
	e.bytes32("key bundle", bundle)
	return e.result(dst)
}

// AppendPrekeyFetch appends a key bundle fetch: ulen:u16 user.
func AppendPrekeyFetch(dst []byte, user string) ([]byte, error) {
	e := start(dst, OpPrekeyFetch)
	e.string16("user", user)
	return e.result(dst)
}

// AppendE2EESend appends an E2EE message:
// rlen:u16 recipient hlen:u16 header clen:u32 cipher.
func AppendE2EESend(dst []byte, recipient string, header, cipher []byte) ([]byte, error) {
	e := start(dst, OpE2EESend)
	e.string16("recipient", recipient)
	e.bytes16("header", header)
	e.bytes32("ciphertext", cipher)
	return e.result(dst)
}

// AppendGroupCreate appends a group create: nlen:u16 name.
func AppendGroupCreate(dst []byte, name string) ([]byte, error) {
	e := start(dst, OpGroupCreate)
	e.string16("group name", name)
	return e.result(dst)
}

// AppendGroupLeave appends a group leave: glen:u16 gid.
func AppendGroupLeave(dst []byte, group string) ([]byte, error) {
	e := start(dst, OpGroupLeave)
	e.string16("group id", group)
	return e.result(dst)
}

// AppendGroupSend appends a group message:
// glen:u16 gid hlen:u16 header clen:u32 cipher.
func AppendGroupSend(dst []byte, group string, header, cipher []byte) ([]byte, error) {
	e := start(dst, OpGroupSend)
	e.string16("group id", group)
	e.bytes16("header", header)
	e.bytes32("ciphertext", cipher)
	return e.result(dst)
}

// AppendGroupRosterGet appends a roster request: glen:u16 gid.
func AppendGroupRosterGet(dst []byte, group string) ([]byte, error) {
	e := start(dst, OpGroupRosterGet)
	e.string16("group id", group)
	return e.result(dst)
}

// AppendGroupSenderKey appends a sender key: glen:u16 gid klen:u32 keydata.
func AppendGroupSenderKey(dst []byte, group string, key []byte) ([]byte, error) {
	e := start(dst, OpGroupSenderKey)
	e.string16("group id", group)
	e.bytes32("sender key", key)
	return e.result(dst)
}

// AppendGroupAddMember appends an add member: glen:u16 gid ulen:u16 user.
func AppendGroupAddMember(dst []byte, group, user string) ([]byte, error) {
	e := start(dst, OpGroupAddMember)
	e.string16("group id", group)
	e.string16("user", user)
	return e.result(dst)
}

// AppendTyping appends a typing start (0x70) or stop (0x71): tlen:u16 target.
func AppendTyping(dst []byte, target string, typing bool) ([]byte, error) {
	op := OpTypingStop
	if typing {
		op = OpTypingStart
	}
	e := start(dst, op)
	e.string16("target", target)
	return e.result(dst)
}

// AppendReadReceipt appends a read receipt:
// mlen:u16 msgid slen:u16 original_sender.
func AppendReadReceipt(dst []byte, messageID []byte, originalSender string) ([]byte, error) {
	e := start(dst, OpReadReceipt)
	e.bytes16("message id", messageID)
	e.string16("original sender", originalSender)
	return e.result(dst)
}
