package wire

import "encoding/binary"

// keepBufferCap is the largest buffer a Decoder keeps once it is empty.
// Holding on to a buffer saves an allocation per frame on a busy connection,
// but keeping the capacity of a rare 1 MiB batch would cost that much memory
// on every idle connection.
const keepBufferCap = 128 << 10

// Decoder splits the bytes of one client connection into frames.
//
// Feed appends each read (or each WebSocket message) and Next returns the
// complete frames one by one, so a frame split across reads at any byte
// decodes exactly as if it had arrived whole.
//
// One bad frame costs no more than itself. A frame whose length is known but
// whose content is invalid or over a limit is skipped with a non-fatal
// *Error. Once the decoder has seen an over-limit length, the rest of that
// frame is discarded as it arrives and never buffered. Only a frame that
// cannot be delimited (an unknown opcode, a bad LOGIN) or a peer that
// overruns Limits.RecvBuffer gives a fatal *Error, after which the connection
// must be closed.
//
// Decoding SEND, SEND2, SEND_SEQ, ACK and ACK2 allocates nothing once the
// buffer has grown to fit the connection's reads. A Decoder is not safe for
// concurrent use, so each connection owns one.
type Decoder struct {
	limits       Limits
	maxLen       [destCount]uint64
	maxFrame     uint64
	buf          []byte
	r            int // offset in buf of the first byte not yet decoded
	frame        Frame
	skip         skipper
	fatal        *Error
	maxLoginBody int // bytes of a LOGIN body the decoder scans at most
}

// NewDecoder returns a Decoder that enforces l. Fields of l that are zero (or
// negative, which Validate rejects) take their values from DefaultLimits.
func NewDecoder(l Limits) *Decoder {
	l = l.withDefaults()
	d := &Decoder{limits: l, maxLen: fieldLimits(l)}
	d.maxFrame = maxFrameLen(&d.maxLen)
	d.maxLoginBody = min(l.MaxUserName, MaxUserNameLen) + 1 + l.MaxToken
	return d
}

// Reset empties d so that it can decode the bytes of a new connection with
// the same limits, which lets idle connections share pooled decoders. It
// keeps the buffer unless that grew past keepBufferCap, and it invalidates
// the Frame returned last.
func (d *Decoder) Reset() {
	d.buf = d.buf[:0]
	if cap(d.buf) > keepBufferCap {
		d.buf = nil
	}
	d.r = 0
	d.frame = Frame{}
	d.skip = skipper{}
	d.fatal = nil
}

// Feed appends p, the bytes of one read from the connection. The decoder
// copies p, so the caller may reuse it. Bytes of a frame being skipped are
// discarded here without being copied.
//
// Feed returns ErrBufferOverflow when the bytes held, less the frame at the
// head of the buffer as far as its length fields tell, would exceed
// Limits.RecvBuffer. After a fatal error it returns that error and ignores p.
func (d *Decoder) Feed(p []byte) error {
	if d.fatal != nil {
		return d.fatal
	}
	d.compact()

	for d.skip.active && len(p) > 0 {
		if d.r == len(d.buf) {
			p = p[d.skip.advance(p):]
			if d.skip.active {
				// p ends inside a length prefix; hold those few bytes.
				break
			}
			continue
		}
		// The buffer holds the start of a length prefix: complete it byte by
		// byte so that no byte after the prefix is ever buffered.
		d.buf = append(d.buf, p[0])
		p = p[1:]
		d.r += d.skip.advance(d.buf[d.r:])
	}
	if len(p) == 0 {
		return nil
	}

	buffered := uint64(len(d.buf) - d.r)
	recv := uint64(d.limits.RecvBuffer)
	if buffered+uint64(len(p)) > recv+d.maxFrame {
		return d.fail(ErrBufferOverflow)
	}
	d.buf = append(d.buf, p...)
	buffered += uint64(len(p))
	if buffered > recv && buffered-min(buffered, d.headFrameLen()) > recv {
		return d.fail(ErrBufferOverflow)
	}
	return nil
}

// Next returns the next complete frame, or (nil, nil) when more bytes are
// needed. On a non-fatal *Error the offending frame has been skipped (or is
// being skipped as its bytes arrive) and the caller should call Next again.
// After a fatal *Error, Next keeps returning it.
//
// The returned Frame and every slice in it alias the decoder's buffer: they
// stay valid only until the next call to Feed or Next. Copy what must live
// longer.
func (d *Decoder) Next() (*Frame, error) {
	if d.fatal != nil {
		return nil, d.fatal
	}
	if d.skip.active {
		d.r += d.skip.advance(d.buf[d.r:])
		if d.skip.active {
			return nil, nil
		}
	}
	if d.r == len(d.buf) {
		return nil, nil
	}

	op := d.buf[d.r]
	if op == OpLogin {
		return d.nextLogin()
	}
	lay := &layouts[op]
	if lay.n == 0 {
		return nil, d.fail(ErrUnknownOpcode)
	}

	d.frame = Frame{Op: op}
	if op == OpGroupLeaveAlt {
		d.frame.Op = OpGroupLeave
	}
	switch op {
	case OpTypingStart:
		d.frame.State = TypingStarted
	case OpTypingStop:
		d.frame.State = TypingStopped
	}

	body := d.buf[d.r+1:]
	off := 0
	var invalid *Error
	for i, f := range lay.fields[:lay.n] {
		if f.prefix == 0 {
			if len(body)-off < int(f.size) {
				return nil, nil
			}
			d.store(f.dest, body[off:off+int(f.size)])
			off += int(f.size)
			continue
		}

		if len(body)-off < int(f.prefix) {
			return nil, nil
		}
		n := readPrefix(body[off:], f.prefix)
		off += int(f.prefix)
		if n > d.maxLen[f.dest] {
			// The rest of the frame is still delimited by its length fields,
			// so discard it and carry on with the next frame.
			d.r += 1 + off
			d.skip = skipper{active: true, remaining: n, fields: lay.fields[i+1 : lay.n]}
			d.r += d.skip.advance(d.buf[d.r:])
			return nil, oversizeErrors[f.dest]
		}
		if uint64(len(body)-off) < n {
			return nil, nil
		}
		if err := d.store(f.dest, body[off:off+int(n)]); err != nil && invalid == nil {
			invalid = err
		}
		off += int(n)
	}

	d.r += 1 + off
	if invalid != nil {
		return nil, invalid
	}
	return &d.frame, nil
}

// store sets the Frame field for dest to b and checks its content.
func (d *Decoder) store(dst dest, b []byte) *Error {
	f := &d.frame
	switch dst {
	case destUser:
		f.User = b
		if ValidUserName(b) != nil {
			return ErrInvalidUserName
		}
	case destToken:
		f.Token = b
	case destTarget:
		f.Target = b
		if ValidUserName(b) != nil {
			return ErrInvalidTarget
		}
	case destMsg, destCBOR:
		f.Msg = b
	case destBatch:
		f.Batch = b
		count, err := checkBatch(b, d.limits.MaxBatchEntries, d.limits.MaxMessage)
		if err != nil {
			return err
		}
		f.BatchLen = count
	case destID:
		copy(f.ID[:], b)
	case destSeq:
		f.Seq = binary.BigEndian.Uint64(b)
	case destCID:
		f.CID = binary.BigEndian.Uint64(b)
	case destBundle:
		f.Bundle = b
	case destHeader:
		f.Header = b
	case destCipher:
		f.Cipher = b
	case destGroup:
		f.Group = b
		if len(b) == 0 {
			return ErrInvalidGroupID
		}
	case destName:
		f.Name = b
		if !validGroupName(b) {
			return ErrInvalidGroupName
		}
	case destKey:
		f.Key = b
	case destMsgID:
		f.MsgID = b
		if len(b) == 0 {
			return ErrInvalidMessageID
		}
	case destSender:
		f.Sender = b
		if ValidUserName(b) != nil {
			return ErrInvalidSender
		}
	}
	return nil
}

// nextLogin decodes a LOGIN. Its body has no length field: it is the rest of
// the bytes buffered now, which is the rest of the first read when the
// caller feeds one read at a time and calls Next until it returns (nil, nil).
// The body ends early at the first control byte, because user names and
// JWTs never contain one, so a LOGIN and a following frame whose opcode is a
// control byte (all of 0x02 to 0x12) can share one read.
//
// NOTE: a frame with a printable opcode (0x20 and up) sent in the same read
// as the LOGIN becomes part of the token, so a client must wait for LOGIN_OK
// before it sends one.
func (d *Decoder) nextLogin() (*Frame, error) {
	body := d.buf[d.r+1:]
	if len(body) == 0 {
		// Only the opcode has arrived: wait for the read that carries the name.
		return nil, nil
	}

	end := 0
	for end < len(body) && end <= d.maxLoginBody && !isControlByte(body[end]) {
		end++
	}
	body = body[:end]
	user, token := body, body[:0]
	for i, c := range body {
		if c == ':' {
			user, token = body[:i], body[i+1:]
			break
		}
	}

	if len(user) > d.limits.MaxUserName || ValidUserName(user) != nil {
		return nil, d.fail(ErrInvalidLogin)
	}
	if len(token) > d.limits.MaxToken {
		return nil, d.fail(ErrLoginTokenTooLong)
	}
	d.frame = Frame{Op: OpLogin, User: user, Token: token}
	d.r += 1 + end
	return &d.frame, nil
}

func isControlByte(c byte) bool {
	return c < 0x20 || c == 0x7F
}

// headFrameLen returns the length of the frame at the head of the buffer as
// far as the buffered length fields tell, or 0 when its opcode has no
// layout. The result is a lower bound while a length prefix is missing.
func (d *Decoder) headFrameLen() uint64 {
	if d.r == len(d.buf) {
		return 0
	}
	lay := &layouts[d.buf[d.r]]
	if lay.n == 0 {
		return 0
	}
	body := d.buf[d.r+1:]
	size := uint64(1)
	off := uint64(0)
	for _, f := range lay.fields[:lay.n] {
		if f.prefix == 0 {
			size += uint64(f.size)
			off += uint64(f.size)
			continue
		}
		if uint64(len(body)) < off+uint64(f.prefix) {
			return size
		}
		n := readPrefix(body[off:], f.prefix)
		size += uint64(f.prefix) + n
		off += uint64(f.prefix) + n
	}
	return size
}

// compact moves the bytes not yet decoded to the front of the buffer, which
// invalidates the Frame returned last.
func (d *Decoder) compact() {
	if d.r == 0 {
		return
	}
	n := copy(d.buf, d.buf[d.r:])
	d.buf = d.buf[:n]
	d.r = 0
	if n == 0 && cap(d.buf) > keepBufferCap {
		d.buf = nil
	}
}

// fail records a fatal error, which every later call returns.
func (d *Decoder) fail(err *Error) *Error {
	d.fatal = err
	return err
}

// SkippedCID returns the client id of the SEND2 frame that the last call to
// Next skipped with a non-fatal error, so that the rejection can name it.
// It reports false when the skipped frame was not a SEND2. The cid is the
// first field of SEND2, so it is known whenever a later field is rejected.
func (d *Decoder) SkippedCID() (uint64, bool) {
	if d.frame.Op != OpSend2 {
		return 0, false
	}
	return d.frame.CID, true
}

// SkippedOp returns the opcode of the frame that the last call to Next
// skipped with a non-fatal error.
func (d *Decoder) SkippedOp() byte { return d.frame.Op }

// Buffered reports whether the decoder holds part of a frame, or is
// discarding the rest of a skipped one, waiting for more bytes.
func (d *Decoder) Buffered() bool {
	return d.skip.active || d.r < len(d.buf)
}

// PendingLogin reports whether the buffered bytes are a lone LOGIN opcode,
// which Next holds until the next read brings the user name. A session uses
// it to reject an empty LOGIN when no name follows within a short grace.
func (d *Decoder) PendingLogin() bool {
	return d.fatal == nil && len(d.buf)-d.r == 1 && d.buf[d.r] == OpLogin
}
