package wire

import "encoding/binary"

// dest names the Frame field a wire field is stored in. It also selects the
// field's size limit and the error for a field over that limit.
type dest uint8

const (
	destUser dest = iota + 1
	destToken
	destTarget
	destMsg
	destCBOR
	destBatch
	destID
	destSeq
	destCID
	destBundle
	destHeader
	destCipher
	destGroup
	destName
	destKey
	destMsgID
	destSender
	destCount
)

// field is one part of a frame body: either a length prefix of prefix bytes
// followed by that many bytes, or a fixed-size field of size bytes.
type field struct {
	prefix uint8
	size   uint8
	dest   dest
}

// layout is the body of one client opcode. Every client frame except LOGIN is
// a short list of fields, so a single table-driven walker can decode, measure
// and skip all of them the same way.
type layout struct {
	n      int
	fields [3]field
}

func len16(d dest) field { return field{prefix: 2, dest: d} }
func len32(d dest) field { return field{prefix: 4, dest: d} }
func u64(d dest) field   { return field{size: 8, dest: d} }

func fieldsOf(fs ...field) layout {
	var l layout
	l.n = copy(l.fields[:], fs)
	return l
}

// layouts maps each client opcode to its body. An entry with n == 0 marks an
// opcode no client may send. LOGIN is absent because it has no length field.
var layouts = [256]layout{
	OpSend:           fieldsOf(len16(destTarget), len16(destMsg)),
	OpAck:            fieldsOf(field{size: IDLen, dest: destID}),
	OpBatchSend:      fieldsOf(len16(destTarget), len32(destBatch)),
	OpGetStatus:      fieldsOf(len16(destTarget)),
	OpSendSeq:        fieldsOf(len16(destTarget), u64(destSeq), len16(destMsg)),
	OpLogin2:         fieldsOf(len16(destUser), len16(destToken)),
	OpSend2:          fieldsOf(u64(destCID), len16(destTarget), len32(destMsg)),
	OpCBORMsg:        fieldsOf(len16(destTarget), len32(destCBOR)),
	OpAck2:           fieldsOf(u64(destSeq)),
	OpPrekeyUpload:   fieldsOf(len32(destBundle)),
	OpPrekeyFetch:    fieldsOf(len16(destUser)),
	OpE2EE:           fieldsOf(len16(destTarget), len16(destHeader), len32(destCipher)),
	OpGroupCreate:    fieldsOf(len16(destName)),
	OpGroupLeave:     fieldsOf(len16(destGroup)),
	OpGroupLeaveAlt:  fieldsOf(len16(destGroup)),
	OpGroupMessage:   fieldsOf(len16(destGroup), len16(destHeader), len32(destCipher)),
	OpGroupRoster:    fieldsOf(len16(destGroup)),
	OpGroupSenderKey: fieldsOf(len16(destGroup), len32(destKey)),
	OpGroupAddMember: fieldsOf(len16(destGroup), len16(destUser)),
	OpTypingStart:    fieldsOf(len16(destTarget)),
	OpTypingStop:     fieldsOf(len16(destTarget)),
	OpReadReceipt:    fieldsOf(len16(destMsgID), len16(destSender)),
}

// oversizeErrors is the error for a field whose declared length exceeds its
// limit. Names get the same error as any other invalid name.
var oversizeErrors = [destCount]*Error{
	destUser:   ErrInvalidUserName,
	destToken:  ErrTokenTooLong,
	destTarget: ErrInvalidTarget,
	destMsg:    ErrMessageTooLarge,
	destCBOR:   ErrCBORTooLarge,
	destBatch:  ErrBatchTooLarge,
	destBundle: ErrKeyBundleTooLarge,
	destHeader: ErrHeaderTooLarge,
	destCipher: ErrMessageTooLarge,
	destGroup:  ErrInvalidGroupID,
	destName:   ErrInvalidGroupName,
	destKey:    ErrSenderKeyTooLarge,
	destMsgID:  ErrInvalidMessageID,
	destSender: ErrInvalidSender,
}

// fieldLimits returns the maximum length of each length-prefixed field.
func fieldLimits(l Limits) [destCount]uint64 {
	var m [destCount]uint64
	m[destUser] = uint64(min(l.MaxUserName, MaxUserNameLen))
	m[destToken] = uint64(l.MaxToken)
	m[destTarget] = uint64(min(l.MaxTarget, MaxUserNameLen))
	m[destMsg] = uint64(l.MaxMessage)
	m[destCBOR] = uint64(l.MaxCBOR)
	m[destBatch] = uint64(l.MaxBatchBytes)
	m[destBundle] = uint64(l.MaxKeyBundle)
	m[destHeader] = uint64(l.MaxE2EEHeader)
	m[destCipher] = uint64(l.MaxMessage)
	m[destGroup] = uint64(l.MaxGroupID)
	m[destName] = uint64(l.MaxGroupName)
	m[destKey] = uint64(l.MaxSenderKey)
	m[destMsgID] = uint64(l.MaxMessageID)
	m[destSender] = uint64(min(l.MaxUserName, MaxUserNameLen))
	return m
}

// maxFrameLen returns the size of the largest frame whose fields all fit
// their limits, the opcode included.
func maxFrameLen(limits *[destCount]uint64) uint64 {
	var largest uint64
	for i := range layouts {
		lay := &layouts[i]
		if lay.n == 0 {
			continue
		}
		size := uint64(1)
		for _, f := range lay.fields[:lay.n] {
			if f.prefix == 0 {
				size += uint64(f.size)
				continue
			}
			size += uint64(f.prefix) + min(limits[f.dest], maxPrefixValue(f.prefix))
		}
		largest = max(largest, size)
	}
	return largest
}

func maxPrefixValue(width uint8) uint64 {
	if width == 2 {
		return 0xFFFF
	}
	return 0xFFFFFFFF
}

// readPrefix reads a big-endian length prefix of width 2 or 4 from b.
func readPrefix(b []byte, width uint8) uint64 {
	if width == 2 {
		return uint64(binary.BigEndian.Uint16(b))
	}
	return uint64(binary.BigEndian.Uint32(b))
}

// skipper discards the rest of a rejected frame as its bytes arrive, so an
// oversized frame never has to be held in memory.
type skipper struct {
	active    bool
	remaining uint64  // bytes left in the field being discarded
	fields    []field // fields after that one, still to be discarded
}

// advance discards bytes from the front of b and returns how many. It stops
// early when the next length prefix is not complete in b, and clears active
// once the whole frame has been discarded.
func (s *skipper) advance(b []byte) int {
	n := 0
	for {
		if s.remaining > 0 {
			k := min(uint64(len(b)-n), s.remaining)
			n += int(k)
			s.remaining -= k
			if s.remaining > 0 {
				return n
			}
		}
		if len(s.fields) == 0 {
			s.active = false
			return n
		}
		f := s.fields[0]
		if f.prefix == 0 {
			s.remaining = uint64(f.size)
			s.fields = s.fields[1:]
			continue
		}
		if len(b)-n < int(f.prefix) {
			return n
		}
		s.remaining = readPrefix(b[n:], f.prefix)
		n += int(f.prefix)
		s.fields = s.fields[1:]
	}
}
