package client

import (
	"bufio"
	"bytes"
	"testing"
)

// loopReader returns the same bytes forever, so a benchmark decodes without
// building a large input.
type loopReader struct {
	data []byte
	off  int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.data[r.off:])
		n += c
		r.off = (r.off + c) % len(r.data)
	}
	return n, nil
}

func BenchmarkDecodeDeliver(b *testing.B) {
	frame := unhex(b, `11 00 00 00 00 00 00 00 2a 02 00 05 "alice" 00 00 01 8f 00 00 00 01 00 00 00 40`)
	frame = append(frame, bytes.Repeat([]byte("m"), 64)...)
	r := bufio.NewReaderSize(&loopReader{data: frame}, 64<<10)

	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeFrame(r, defaultMaxFrameSize); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendSend2(b *testing.B) {
	msg := bytes.Repeat([]byte("m"), 64)
	buf := make([]byte, 0, 128)

	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = AppendSend2(buf[:0], 1, "bob", msg); err != nil {
			b.Fatal(err)
		}
	}
}
