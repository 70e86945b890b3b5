package wire

import (
	"encoding/binary"
	"errors"
	"unicode"
	"unicode/utf8"
)

// Frame is one decoded client frame. Op selects which fields are set, and the
// others are zero. Byte slices alias the Decoder's buffer (see Decoder.Next).
type Frame struct {
	// Op is the opcode, one of the client Op constants.
	Op byte

	// User is the user name of LOGIN and LOGIN2, the user whose key bundle a
	// prekey fetch requests, and the new member of a group add.
	User []byte
	// Token is the JWT of LOGIN and LOGIN2, empty when the client sent none.
	Token []byte
	// Target is the recipient of SEND, BATCH_SEND, SEND_SEQ, SEND2,
	// CBOR_MSG and E2EE, the user whose status GET_STATUS requests, and the
	// user a typing frame is for.
	Target []byte
	// Msg is the message of SEND, SEND_SEQ and SEND2, and the CBOR map of
	// CBOR_MSG, undecoded.
	Msg []byte
	// Batch is the blob of BATCH_SEND, which BatchEntries iterates over.
	Batch []byte
	// BatchLen is the number of messages in Batch.
	BatchLen int
	// ID is the message id of ACK.
	ID [IDLen]byte
	// Seq is the sender's sequence number in SEND_SEQ and the acknowledged
	// inbox position in ACK2.
	Seq uint64
	// CID is the client-chosen id of SEND2.
	CID uint64
	// Bundle is the CBOR key bundle of a prekey upload, undecoded.
	Bundle []byte
	// Header is the E2EE header of E2EE and group messages, undecoded.
	Header []byte
	// Cipher is the ciphertext of E2EE and group messages.
	Cipher []byte
	// Group is the group id of leave, message, roster, sender-key and add
	// member frames.
	Group []byte
	// Name is the group name of a group create.
	Name []byte
	// Key is the sender-key data of a sender-key frame.
	Key []byte
	// MsgID is the id of the message a read receipt is for.
	MsgID []byte
	// Sender is the original sender of the message a read receipt is for.
	Sender []byte
	// State is TypingStarted for OpTypingStart and TypingStopped for
	// OpTypingStop.
	State byte
}

// BatchEntries returns an iterator over the messages of a BATCH_SEND frame,
// in blob order. The decoder has already checked the blob, so the iterator
// yields exactly BatchLen messages.
func (f *Frame) BatchEntries() BatchIter {
	return BatchIter{rest: f.Batch}
}

// BatchIter walks the entries of a batch blob without allocating.
type BatchIter struct {
	rest []byte
}

// Next returns the next message, or ok == false after the last one or at a
// malformed entry.
func (it *BatchIter) Next() (msg []byte, ok bool) {
	if len(it.rest) < 2 {
		return nil, false
	}
	n := int(binary.BigEndian.Uint16(it.rest))
	if len(it.rest)-2 < n {
		it.rest = nil
		return nil, false
	}
	msg = it.rest[2 : 2+n]
	it.rest = it.rest[2+n:]
	return msg, true
}

// checkBatch validates a batch blob: entries of `len:u16 msg` that fill it
// exactly, at most maxEntries of them, each at most maxMessage bytes long.
// It returns the number of entries.
func checkBatch(blob []byte, maxEntries, maxMessage int) (int, *Error) {
	count := 0
	for len(blob) > 0 {
		if len(blob) < 2 {
			return 0, ErrInvalidBatch
		}
		n := int(binary.BigEndian.Uint16(blob))
		if len(blob)-2 < n {
			return 0, ErrInvalidBatch
		}
		if n > maxMessage {
			return 0, ErrMessageTooLarge
		}
		count++
		if count > maxEntries {
			return 0, ErrBatchTooManyEntries
		}
		blob = blob[2+n:]
	}
	return count, nil
}

// Reasons ValidUserName rejects a name for.
var (
	errNameEmpty   = errors.New("user name is empty")
	errNameTooLong = errors.New("user name is longer than 256 bytes")
	errNameUTF8    = errors.New("user name is not valid UTF-8")
	errNameColon   = errors.New("user name contains ':'")
	errNameControl = errors.New("user name contains a control character")
)

// ValidUserName reports whether name is a valid user name: valid UTF-8,
// 1 to MaxUserNameLen bytes, with no ':' (it separates the token in LOGIN)
// and no control character (C0, DEL or C1).
func ValidUserName(name []byte) error {
	if len(name) == 0 {
		return errNameEmpty
	}
	if len(name) > MaxUserNameLen {
		return errNameTooLong
	}
	for i := 0; i < len(name); {
		c := name[i]
		if c < utf8.RuneSelf {
			if c == ':' {
				return errNameColon
			}
			if c < 0x20 || c == 0x7F {
				return errNameControl
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(name[i:])
		if r == utf8.RuneError && size == 1 {
			return errNameUTF8
		}
		if unicode.IsControl(r) {
			return errNameControl
		}
		i += size
	}
	return nil
}

// validGroupName reports whether name is non-empty valid UTF-8 without
// control characters. Unlike a user name it may contain ':'.
func validGroupName(name []byte) bool {
	if len(name) == 0 || !utf8.Valid(name) {
		return false
	}
	for _, r := range string(name) {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}
