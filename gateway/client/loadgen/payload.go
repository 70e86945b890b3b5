package loadgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// PayloadHeaderSize is the size of the header at the start of every message
// body that the generator sends: a 2-byte magic "IB", the sender index
// (u32), the sender's sequence number (u64) and the send time (u64
// nanoseconds since the start of the run). The rest of the body is filler.
const PayloadHeaderSize = 22

var payloadMagic = [2]byte{'I', 'B'}

// errForeignPayload marks a delivery that this run did not send.
var errForeignPayload = errors.New("message body was not sent by this load run")

// payload is the decoded header of a message body.
type payload struct {
	sender int
	seq    uint64
	sentAt time.Duration // since the run's clock origin
}

// appendPayload writes a body of size bytes into dst[:0] and returns it.
func appendPayload(dst []byte, size int, p payload) []byte {
	dst = append(dst[:0], payloadMagic[:]...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(p.sender))
	dst = binary.BigEndian.AppendUint64(dst, p.seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(p.sentAt))
	for len(dst) < size {
		dst = append(dst, 'x')
	}
	return dst
}

// parsePayload decodes the header of body.
func parsePayload(body []byte) (payload, error) {
	if len(body) < PayloadHeaderSize || body[0] != payloadMagic[0] || body[1] != payloadMagic[1] {
		return payload{}, fmt.Errorf("%w (%d bytes)", errForeignPayload, len(body))
	}
	return payload{
		sender: int(binary.BigEndian.Uint32(body[2:])),
		seq:    binary.BigEndian.Uint64(body[6:]),
		sentAt: time.Duration(binary.BigEndian.Uint64(body[14:])),
	}, nil
}

// bitset records which sequence numbers of one sender have had an event.
// Sequence numbers start at 1 and grow by one, so a slice of words is dense.
type bitset struct {
	words []uint64
	count uint64
}

// set marks n and reports whether it was not marked before.
func (b *bitset) set(n uint64) bool {
	w := int(n / 64)
	for w >= len(b.words) {
		b.words = append(b.words, 0)
	}
	mask := uint64(1) << (n % 64)
	if b.words[w]&mask != 0 {
		return false
	}
	b.words[w] |= mask
	b.count++
	return true
}

func (b *bitset) has(n uint64) bool {
	w := int(n / 64)
	return w < len(b.words) && b.words[w]&(uint64(1)<<(n%64)) != 0
}
