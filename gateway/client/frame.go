package client

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Op is a frame opcode, the first byte of every frame in both directions.
// Some values mean one thing from client to server and another from server
// to client (0x03, 0x10, 0x31), so each constant below names its direction.
type Op byte

// Client-to-server opcodes.
const (
	OpLogin          Op = 0x01 // v1 login: user or user:jwt, no length field
	OpSend           Op = 0x02 // v1 plain message
	OpAck            Op = 0x03 // v1 acknowledgement of a 0x10 delivery id
	OpBatchSend      Op = 0x04 // v1 batch of plain messages to one target
	OpGetStatus      Op = 0x05 // presence query
	OpSendSeq        Op = 0x07 // v1 plain message with a sender sequence number
	OpLogin2         Op = 0x08 // v2 login with a length-prefixed user and token
	OpSend2          Op = 0x09 // v2 message with a client-chosen id (cid)
	OpCBORMessage    Op = 0x10 // message whose payload is a CBOR map
	OpAck2           Op = 0x12 // v2 cumulative acknowledgement by inbox seq
	OpPrekeyUpload   Op = 0x20 // E2EE key bundle upload
	OpPrekeyFetch    Op = 0x21 // E2EE key bundle fetch for a user
	OpE2EESend       Op = 0x23 // E2EE message to one recipient
	OpGroupCreate    Op = 0x30 // create a group
	OpGroupLeave     Op = 0x32 // leave a group; the reply is 0x32 "OK"
	OpGroupSend      Op = 0x33 // E2EE message to a group
	OpGroupRosterGet Op = 0x35 // request a group's member list
	OpGroupSenderKey Op = 0x36 // distribute a group sender key
	OpGroupAddMember Op = 0x37 // add a member (group admin only)
	OpTypingStart    Op = 0x70
	OpTypingStop     Op = 0x71
	OpReadReceipt    Op = 0x74 // tell the original sender a message was read
)

// NOTE: the protocol table gives the group request layouts but not the
// opcodes of "leave" and "roster". OpGroupLeave = 0x32 and
// OpGroupRosterGet = 0x35 follow roster and sender key, whose requests and
// replies share one opcode; the server also accepts 0x31 as a leave.

// Server-to-client opcodes.
const (
	OpLoginOK       Op = 0x03 // followed by the 8 ASCII bytes "LOGIN_OK"
	OpStatus        Op = 0x06 // reply to OpGetStatus
	OpAccepted      Op = 0x0B // v2: a SEND2 is durable
	OpRejected      Op = 0x0C // v2: a SEND2 was not stored
	OpReliable      Op = 0x10 // v1 delivery that must be acknowledged by id
	OpDeliver       Op = 0x11 // v2 delivery with an inbox seq
	OpPrekeyReply   Op = 0x22 // CBOR reply to a prekey upload or fetch
	OpE2EEDeliver   Op = 0x24 // E2EE message with its sender
	OpGroupMember   Op = 0x31 // a group was created, or a member was added
	OpGroupOK       Op = 0x32 // a group leave succeeded
	OpGroupDeliver  Op = 0x34 // group message with its sender
	OpGroupRoster   Op = 0x35 // group member list as a CBOR array
	OpSenderKey     Op = 0x36 // sender key with its sender
	OpTyping        Op = 0x72 // typing state of a sender
	OpReceiptNotice Op = 0x75 // a recipient read a message
	OpError         Op = 0xFE // the server rejected a frame
	OpRateLimited   Op = 0xFF // a send was dropped because the bucket is empty
)

const (
	loginOKText = "LOGIN_OK"

	// MessageIDLen is the fixed length of the message ids that the server
	// puts in OpReliable frames, so that an ACK has a known length.
	MessageIDLen = 16

	// defaultMaxFrameSize bounds one decoded frame. It is well above the
	// server's largest default limit (a 1 MiB batch or receive buffer).
	defaultMaxFrameSize = 8 << 20
)

var serverOpNames = map[Op]string{
	OpLoginOK:       "LOGIN_OK",
	OpStatus:        "STATUS",
	OpAccepted:      "ACCEPTED",
	OpRejected:      "REJECTED",
	OpReliable:      "RELIABLE",
	OpDeliver:       "DELIVER",
	OpPrekeyReply:   "PREKEY_REPLY",
	OpE2EEDeliver:   "E2EE_DELIVER",
	OpGroupMember:   "GROUP_MEMBER",
	OpGroupOK:       "GROUP_OK",
	OpGroupDeliver:  "GROUP_DELIVER",
	OpGroupRoster:   "GROUP_ROSTER",
	OpSenderKey:     "SENDER_KEY",
	OpTyping:        "TYPING",
	OpReceiptNotice: "READ_RECEIPT",
	OpError:         "ERROR",
	OpRateLimited:   "RATE_LIMITED",
}

// String returns the server-to-client name of the opcode and its hex value,
// because every decoded Frame travels in that direction.
func (op Op) String() string {
	if name, ok := serverOpNames[op]; ok {
		return fmt.Sprintf("%s(0x%02x)", name, byte(op))
	}
	return fmt.Sprintf("0x%02x", byte(op))
}

// ErrMalformedFrame marks server bytes that do not decode as a
// server-to-client frame. Causes are an unknown opcode, a length over the
// limit, a frame cut off by the end of the stream, and a frame that crosses a
// WebSocket message boundary.
var ErrMalformedFrame = errors.New("malformed server frame")

// Frame is one decoded server-to-client frame. Op selects which fields are
// set; the others stay zero. Byte slices never alias the connection's
// buffers, so a Frame may be kept.
type Frame struct {
	Op Op

	// ID is the message id of OpReliable (16 bytes from this server) and the
	// read message id of OpReceiptNotice.
	ID []byte
	// Msg is the payload of OpReliable and OpDeliver.
	Msg []byte
	// User is the user of OpStatus and OpGroupMember, and the reader of
	// OpReceiptNotice.
	User string
	// Sender is set for OpDeliver, OpE2EEDeliver, OpGroupDeliver,
	// OpSenderKey and OpTyping.
	Sender string
	// State is the presence of OpStatus (1 online, 0 offline) and the
	// typing state of OpTyping.
	State byte
	// Seen is the last-seen time of OpStatus in Unix seconds: 0 while
	// online or if the user was never seen.
	Seen uint64
	// Reason is the text of OpError and OpRejected.
	Reason string
	// RetryAfterMs is the wait in milliseconds that OpRateLimited requests.
	RetryAfterMs uint32
	// CID is the client-chosen message id of OpAccepted and OpRejected.
	CID uint64
	// Seq is the recipient inbox position of OpAccepted and OpDeliver.
	Seq uint64
	// Kind is the live opcode of the content in OpDeliver.
	Kind Op
	// TimestampMs is the server accept time of OpDeliver and the read time of
	// OpReceiptNotice, both in Unix milliseconds.
	TimestampMs uint64
	// Group is the group id of OpGroupMember, OpGroupDeliver, OpGroupRoster
	// and OpSenderKey.
	Group string
	// Header and Cipher are relayed unchanged in OpE2EEDeliver and
	// OpGroupDeliver.
	Header []byte
	Cipher []byte
	// Payload is the CBOR map of OpPrekeyReply, the CBOR array of
	// OpGroupRoster and the key data of OpSenderKey.
	Payload []byte

	// Raw is the whole frame as received, opcode included.
	Raw []byte
}

// String formats the frame for test failures and logs.
func (f Frame) String() string {
	switch f.Op {
	case OpLoginOK, OpGroupOK:
		return f.Op.String()
	case OpStatus:
		return fmt.Sprintf("%v user=%q state=%d seen=%d", f.Op, f.User, f.State, f.Seen)
	case OpAccepted:
		return fmt.Sprintf("%v cid=%d seq=%d", f.Op, f.CID, f.Seq)
	case OpRejected:
		return fmt.Sprintf("%v cid=%d reason=%q", f.Op, f.CID, f.Reason)
	case OpReliable:
		return fmt.Sprintf("%v id=%x msg=%q", f.Op, f.ID, f.Msg)
	case OpDeliver:
		return fmt.Sprintf("%v seq=%d kind=0x%02x sender=%q ts_ms=%d msg=%q",
			f.Op, f.Seq, byte(f.Kind), f.Sender, f.TimestampMs, f.Msg)
	case OpError:
		return fmt.Sprintf("%v reason=%q", f.Op, f.Reason)
	case OpRateLimited:
		return fmt.Sprintf("%v retry_after_ms=%d", f.Op, f.RetryAfterMs)
	}
	return fmt.Sprintf("%v raw=%x", f.Op, f.Raw)
}

// ServerError is an OpError frame returned as an error by the calls that
// wait for a reply.
type ServerError struct {
	Reason string
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("server error: %s", e.Reason)
}

// byteSource is the decoder input, a bufio.Reader over a TCP stream or a
// bytes.Reader over one WebSocket message.
type byteSource interface {
	io.Reader
	io.ByteReader
}

// decoder reads one frame field by field and keeps the bytes it consumed so
// that Frame.Raw shows exactly what arrived.
type decoder struct {
	src     byteSource
	maxSize int
	raw     []byte
	err     error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) read(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > d.maxSize-len(d.raw) {
		d.fail(fmt.Errorf("%w: frame longer than the %d-byte limit", ErrMalformedFrame, d.maxSize))
		return nil
	}
	start := len(d.raw)
	d.raw = append(d.raw, make([]byte, n)...)
	if _, err := io.ReadFull(d.src, d.raw[start:]); err != nil {
		d.fail(err)
		return nil
	}
	return d.raw[start:]
}

func (d *decoder) u8() byte {
	b := d.read(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (d *decoder) u16() int {
	b := d.read(2)
	if b == nil {
		return 0
	}
	return int(binary.BigEndian.Uint16(b))
}

func (d *decoder) u32() uint32 {
	b := d.read(4)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func (d *decoder) u64() uint64 {
	b := d.read(8)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// bytes copies n bytes out, so the Frame does not share d.raw.
func (d *decoder) bytes(n int) []byte {
	b := d.read(n)
	if b == nil {
		return nil
	}
	return bytes.Clone(b)
}

func (d *decoder) bytes32() []byte {
	n := d.u32()
	if d.err == nil && uint64(n) > uint64(d.maxSize) {
		d.fail(fmt.Errorf("%w: field length %d over the %d-byte limit", ErrMalformedFrame, n, d.maxSize))
		return nil
	}
	return d.bytes(int(n))
}

func (d *decoder) string16() string { return string(d.read(d.u16())) }

// decodeFrame reads one server-to-client frame from src. It returns io.EOF
// only when src ends exactly at a frame boundary. A frame cut short returns
// an error wrapping both ErrMalformedFrame and io.ErrUnexpectedEOF.
func decodeFrame(src byteSource, maxSize int) (Frame, error) {
	first, err := src.ReadByte()
	if err != nil {
		return Frame{}, err
	}
	d := &decoder{src: src, maxSize: maxSize, raw: []byte{first}}
	f := Frame{Op: Op(first)}

	switch f.Op {
	case OpLoginOK:
		if text := d.read(len(loginOKText)); d.err == nil && string(text) != loginOKText {
			d.fail(fmt.Errorf("%w: opcode 0x03 followed by %q, expected %q", ErrMalformedFrame, text, loginOKText))
		}
	case OpStatus:
		f.User = d.string16()
		f.State = d.u8()
		f.Seen = d.u64()
	case OpAccepted:
		f.CID = d.u64()
		f.Seq = d.u64()
	case OpRejected:
		f.CID = d.u64()
		f.Reason = d.string16()
	case OpReliable:
		f.ID = d.bytes(d.u16())
		f.Msg = d.bytes32()
	case OpDeliver:
		f.Seq = d.u64()
		f.Kind = Op(d.u8())
		f.Sender = d.string16()
		f.TimestampMs = d.u64()
		f.Msg = d.bytes32()
	case OpPrekeyReply:
		f.Payload = d.bytes32()
	case OpE2EEDeliver:
		f.Sender = d.string16()
		f.Header = d.bytes(d.u16())
		f.Cipher = d.bytes32()
	case OpGroupMember:
		f.Group = d.string16()
		f.User = d.string16()
	case OpGroupOK:
		if text := d.read(2); d.err == nil && string(text) != "OK" {
			d.fail(fmt.Errorf("%w: opcode 0x32 followed by %q, expected \"OK\"", ErrMalformedFrame, text))
		}
	case OpGroupDeliver:
		f.Group = d.string16()
		f.Sender = d.string16()
		f.Header = d.bytes(d.u16())
		f.Cipher = d.bytes32()
	case OpGroupRoster:
		f.Group = d.string16()
		f.Payload = d.bytes32()
	case OpSenderKey:
		f.Group = d.string16()
		f.Sender = d.string16()
		f.Payload = d.bytes32()
	case OpTyping:
		f.Sender = d.string16()
		f.State = d.u8()
	case OpReceiptNotice:
		f.ID = d.bytes(d.u16())
		f.User = d.string16()
		f.TimestampMs = d.u64()
	case OpError:
		f.Reason = d.string16()
	case OpRateLimited:
		f.RetryAfterMs = d.u32()
	default:
		return Frame{}, fmt.Errorf("%w: unknown opcode 0x%02x", ErrMalformedFrame, first)
	}

	if d.err != nil {
		if errors.Is(d.err, io.EOF) || errors.Is(d.err, io.ErrUnexpectedEOF) {
			return Frame{}, fmt.Errorf("%w: %v cut off after %d bytes (% x): %w",
				ErrMalformedFrame, f.Op, len(d.raw), d.raw, io.ErrUnexpectedEOF)
		}
		return Frame{}, d.err
	}
	f.Raw = bytes.Clone(d.raw)
	return f, nil
}

// ParseFrame decodes b as exactly one server-to-client frame. It serves the
// payload of a v1 OpReliable delivery, which carries a whole live frame
// (OpE2EEDeliver, OpGroupDeliver or OpSenderKey) when the content is not a
// plain message.
func ParseFrame(b []byte) (Frame, error) {
	r := bytes.NewReader(b)
	f, err := decodeFrame(r, len(b))
	if errors.Is(err, io.EOF) {
		return Frame{}, fmt.Errorf("%w: empty input", ErrMalformedFrame)
	}
	if err != nil {
		return Frame{}, err
	}
	if r.Len() != 0 {
		return Frame{}, fmt.Errorf("%w: %d bytes left after %v", ErrMalformedFrame, r.Len(), f.Op)
	}
	return f, nil
}
