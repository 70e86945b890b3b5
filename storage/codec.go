package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// opsFormatVersion is the first byte of MarshalOps output. A decoder rejects other versions
// instead of guessing, so a replica running older code stops rather than diverges.
const opsFormatVersion = 1

// Flags of an encoded append.
const (
	appendHasDedup = 1 << 0
	appendHasOrder = 1 << 1
)

// Flags of an encoded key upload.
const (
	uploadHasBundle    = 1 << 0
	uploadHasTimestamp = 1 << 1
)

// ErrBadOps is wrapped by UnmarshalOps errors.
var ErrBadOps = errors.New("storage: invalid encoded ops")

// MarshalOps encodes ops compactly, for a raft log entry:
//
//	version(1) uvarint(count) op...
//
// Each op is its kind byte followed by the fields that kind uses, in this order. Integers are
// uvarints except tags (8 bytes, big-endian, because they are random); strings and bodies are
// uvarint(length) followed by the bytes.
//
//	append:        user entryKind(1) sender timeMS tag body flags(1) [sender scope id] [stream(8) n base] [untilMS]
//	ack:           user seq tag
//	ack-up-to:     user seq
//	set-last-seen: user lastSeenSec
//	sweep-dedup:   timeMS
//	key-upload:    user flags(1) [identityKey signedPrekey signature timestamp] uvarint(count) prekey...
//	key-fetch:     user
//	group-create:  groupID name user timeMS
//	group-add:     groupID user by
//	group-leave:   groupID user
//
// In an append, flags bit 0 says a dedup key follows, bit 1 an order key, and untilMS follows
// when either bit is set. In a key upload, flags bit 0 says a bundle follows and bit 1 sets
// its HasTimestamp; bit 1 without bit 0 is invalid. Keys and prekeys are byte strings.
//
// It returns an error wrapping ErrInvalidRequest for an unknown kind.
func MarshalOps(ops []Op) ([]byte, error) {
	size := 1 + binary.MaxVarintLen64
	for i := range ops {
		op := &ops[i]
		size += 64 + len(op.User) + len(op.Sender) + len(op.Body) + len(op.GroupID) + len(op.Name) + len(op.By)
		if op.Bundle != nil {
			size += len(op.Bundle.IdentityKey) + len(op.Bundle.SignedPrekey) + len(op.Bundle.SignedPrekeySignature)
		}
		for _, prekey := range op.Prekeys {
			size += binary.MaxVarintLen64 + len(prekey)
		}
	}
	buf := make([]byte, 0, size)
	buf = append(buf, opsFormatVersion)
	buf = binary.AppendUvarint(buf, uint64(len(ops)))

	for i := range ops {
		op := &ops[i]
		buf = append(buf, byte(op.Kind))
		switch op.Kind {
		case OpAppend:
			buf = appendString(buf, op.User)
			buf = append(buf, op.EntryKind)
			buf = appendString(buf, op.Sender)
			buf = binary.AppendUvarint(buf, op.TimeMS)
			buf = binary.BigEndian.AppendUint64(buf, op.Tag)
			buf = binary.AppendUvarint(buf, uint64(len(op.Body)))
			buf = append(buf, op.Body...)
			var flags byte
			if op.Dedup != nil {
				flags |= appendHasDedup
			}
			if op.Order != nil {
				flags |= appendHasOrder
			}
			buf = append(buf, flags)
			if op.Dedup != nil {
				buf = appendString(buf, op.Dedup.Sender)
				buf = appendString(buf, op.Dedup.Scope)
				buf = binary.AppendUvarint(buf, op.Dedup.ID)
			}
			if op.Order != nil {
				buf = binary.BigEndian.AppendUint64(buf, op.Order.Stream)
				buf = binary.AppendUvarint(buf, op.Order.N)
				buf = binary.AppendUvarint(buf, op.Order.Base)
			}
			if flags != 0 {
				buf = binary.AppendUvarint(buf, op.DedupUntilMS)
			}
		case OpAck:
			buf = appendString(buf, op.User)
			buf = binary.AppendUvarint(buf, op.Seq)
			buf = binary.BigEndian.AppendUint64(buf, op.Tag)
		case OpAckUpTo:
			buf = appendString(buf, op.User)
			buf = binary.AppendUvarint(buf, op.Seq)
		case OpSetLastSeen:
			buf = appendString(buf, op.User)
			buf = binary.AppendUvarint(buf, op.LastSeenSec)
		case OpSweepDedup:
			buf = binary.AppendUvarint(buf, op.TimeMS)
		case OpKeyUpload:
			buf = appendKeyUpload(buf, op)
		case OpKeyFetch:
			buf = appendString(buf, op.User)
		case OpGroupCreate:
			buf = appendString(buf, op.GroupID)
			buf = appendString(buf, op.Name)
			buf = appendString(buf, op.User)
			buf = binary.AppendUvarint(buf, op.TimeMS)
		case OpGroupAdd:
			buf = appendString(buf, op.GroupID)
			buf = appendString(buf, op.User)
			buf = appendString(buf, op.By)
		case OpGroupLeave:
			buf = appendString(buf, op.GroupID)
			buf = appendString(buf, op.User)
		default:
			return nil, fmt.Errorf("%w: op %d has unknown kind %d", ErrInvalidRequest, i, uint8(op.Kind))
		}
	}
	return buf, nil
}

func appendKeyUpload(buf []byte, op *Op) []byte {
	buf = appendString(buf, op.User)
	var flags byte
	if op.Bundle != nil {
		flags |= uploadHasBundle
		if op.Bundle.HasTimestamp {
			flags |= uploadHasTimestamp
		}
	}
	buf = append(buf, flags)
	if b := op.Bundle; b != nil {
		buf = appendBytes(buf, b.IdentityKey)
		buf = appendBytes(buf, b.SignedPrekey)
		buf = appendBytes(buf, b.SignedPrekeySignature)
		buf = binary.AppendUvarint(buf, b.SignedPrekeyTimestamp)
	}
	buf = binary.AppendUvarint(buf, uint64(len(op.Prekeys)))
	for _, prekey := range op.Prekeys {
		buf = appendBytes(buf, prekey)
	}
	return buf
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

// UnmarshalOps decodes the output of MarshalOps. Bodies are copied, so data may be reused
// afterwards. Errors wrap ErrBadOps and give the offset of the first invalid byte.
func UnmarshalOps(data []byte) ([]Op, error) {
	d := opsDecoder{data: data}
	if version := d.byte(); d.err == nil && version != opsFormatVersion {
		return nil, fmt.Errorf("%w: format version %d, expected %d", ErrBadOps, version, opsFormatVersion)
	}
	count := d.uvarint()
	// Every op takes at least one byte, which bounds the allocation for hostile input.
	if d.err == nil && count > uint64(len(d.data)-d.off) {
		return nil, fmt.Errorf("%w: count %d exceeds the %d bytes left", ErrBadOps, count, len(d.data)-d.off)
	}
	if d.err != nil {
		return nil, d.err
	}

	ops := make([]Op, count)
	for i := range ops {
		d.decodeOp(&ops[i])
		if d.err != nil {
			return nil, fmt.Errorf("op %d: %w", i, d.err)
		}
	}
	if d.off != len(d.data) {
		return nil, fmt.Errorf("%w: %d trailing bytes after %d ops", ErrBadOps, len(d.data)-d.off, count)
	}
	return ops, nil
}

// opsDecoder reads fields from data. After the first error every read returns zero values,
// so callers check err once per op.
type opsDecoder struct {
	data []byte
	off  int
	err  error
	// errKind is the sentinel that errors wrap; nil means ErrBadOps. Decoders of stored
	// values set ErrCorrupted.
	errKind error
}

func (d *opsDecoder) decodeOp(op *Op) {
	op.Kind = OpKind(d.byte())
	switch op.Kind {
	case OpAppend:
		op.User = d.string()
		op.EntryKind = d.byte()
		op.Sender = d.string()
		op.TimeMS = d.uvarint()
		op.Tag = d.uint64()
		op.Body = d.bytes()
		flags := d.byte()
		if flags&^(appendHasDedup|appendHasOrder) != 0 {
			d.fail(fmt.Sprintf("append flags %#x, expected bits 0 and 1 only", flags))
			return
		}
		if flags&appendHasDedup != 0 {
			op.Dedup = &DedupKey{Sender: d.string(), Scope: d.string(), ID: d.uvarint()}
		}
		if flags&appendHasOrder != 0 {
			op.Order = &OrderKey{Stream: d.uint64(), N: d.uvarint(), Base: d.uvarint()}
		}
		if flags != 0 {
			op.DedupUntilMS = d.uvarint()
		}
	case OpAck:
		op.User = d.string()
		op.Seq = d.uvarint()
		op.Tag = d.uint64()
	case OpAckUpTo:
		op.User = d.string()
		op.Seq = d.uvarint()
	case OpSetLastSeen:
		op.User = d.string()
		op.LastSeenSec = d.uvarint()
	case OpSweepDedup:
		op.TimeMS = d.uvarint()
	case OpKeyUpload:
		d.decodeKeyUpload(op)
	case OpKeyFetch:
		op.User = d.string()
	case OpGroupCreate:
		op.GroupID = d.string()
		op.Name = d.string()
		op.User = d.string()
		op.TimeMS = d.uvarint()
	case OpGroupAdd:
		op.GroupID = d.string()
		op.User = d.string()
		op.By = d.string()
	case OpGroupLeave:
		op.GroupID = d.string()
		op.User = d.string()
	default:
		if d.err == nil {
			d.fail(fmt.Sprintf("unknown op kind %d", uint8(op.Kind)))
		}
	}
}

func (d *opsDecoder) decodeKeyUpload(op *Op) {
	op.User = d.string()
	flags := d.byte()
	if flags&^(uploadHasBundle|uploadHasTimestamp) != 0 || flags == uploadHasTimestamp {
		d.fail(fmt.Sprintf("key upload flags %#x: only bit 0 (bundle) and bit 1 (timestamp, with bit 0) are defined", flags))
		return
	}
	if flags&uploadHasBundle != 0 {
		op.Bundle = &KeyBundle{
			IdentityKey:           d.bytes(),
			SignedPrekey:          d.bytes(),
			SignedPrekeySignature: d.bytes(),
			SignedPrekeyTimestamp: d.uvarint(),
			HasTimestamp:          flags&uploadHasTimestamp != 0,
		}
	}
	count := d.uvarint()
	// Every prekey takes at least its length byte, which bounds the allocation.
	if d.err == nil && count > uint64(len(d.data)-d.off) {
		d.fail(fmt.Sprintf("prekey count %d exceeds the %d bytes left", count, len(d.data)-d.off))
		return
	}
	if count > 0 {
		op.Prekeys = make([][]byte, count)
		for i := range op.Prekeys {
			op.Prekeys[i] = d.bytes()
		}
	}
}

func (d *opsDecoder) fail(msg string) {
	if d.err == nil {
		kind := d.errKind
		if kind == nil {
			kind = ErrBadOps
		}
		d.err = fmt.Errorf("%w: %s at offset %d", kind, msg, d.off)
	}
}

func (d *opsDecoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.data) {
		d.fail("unexpected end of data")
		return 0
	}
	b := d.data[d.off]
	d.off++
	return b
}

func (d *opsDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.data[d.off:])
	if n <= 0 {
		d.fail("truncated or overlong uvarint")
		return 0
	}
	d.off += n
	return v
}

func (d *opsDecoder) uint64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.data)-d.off < 8 {
		d.fail("unexpected end of data")
		return 0
	}
	v := binary.BigEndian.Uint64(d.data[d.off:])
	d.off += 8
	return v
}

func (d *opsDecoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.data)-d.off) {
		d.fail(fmt.Sprintf("length %d exceeds the %d bytes left", n, len(d.data)-d.off))
		return ""
	}
	s := string(d.data[d.off : d.off+int(n)])
	d.off += int(n)
	return s
}

// bytes reads a length-prefixed byte string into a new slice, or nil if it is empty.
func (d *opsDecoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || n == 0 {
		return nil
	}
	if n > uint64(len(d.data)-d.off) {
		d.fail(fmt.Sprintf("length %d exceeds the %d bytes left", n, len(d.data)-d.off))
		return nil
	}
	b := append([]byte(nil), d.data[d.off:d.off+int(n)]...)
	d.off += int(n)
	return b
}
