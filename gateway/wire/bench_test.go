package wire

import "testing"

// benchmarkDecode feeds one frame per iteration and decodes it, the pattern
// of a connection that reads one small frame at a time.
func benchmarkDecode(b *testing.B, frame []byte) {
	d := NewDecoder(Limits{})
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if err := d.Feed(frame); err != nil {
			b.Fatal(err)
		}
		if f, err := d.Next(); f == nil || err != nil {
			b.Fatalf("Next: (%v, %v)", f, err)
		}
	}
}

func BenchmarkDecodeSend(b *testing.B) {
	benchmarkDecode(b, sendFrame("bob", "Hello Bob! How are you today?"))
}

func BenchmarkDecodeSend2(b *testing.B) {
	benchmarkDecode(b, send2Frame(42, "bob", "Hello Bob! How are you today?"))
}

func BenchmarkDecodeSendSeq(b *testing.B) {
	benchmarkDecode(b, sendSeqFrame("bob", 42, "Hello Bob! How are you today?"))
}

func BenchmarkDecodeAck(b *testing.B) {
	benchmarkDecode(b, ackFrame(testID(1)))
}

func BenchmarkDecodeAck2(b *testing.B) {
	benchmarkDecode(b, ack2Frame(1234))
}

// BenchmarkDecodeStream feeds 64 KiB reads of 2000 back-to-back valid frames
// of every opcode, with frames split across reads.
func BenchmarkDecodeStream(b *testing.B) {
	stream := randomStream(newSeededRand(), 2000, false)
	const readSize = 64 << 10
	d := NewDecoder(Limits{})
	b.ReportAllocs()
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		for off := 0; off < len(stream); off += readSize {
			if err := d.Feed(stream[off:min(off+readSize, len(stream))]); err != nil {
				b.Fatal(err)
			}
			for {
				f, err := d.Next()
				if err != nil {
					b.Fatalf("valid stream rejected: %v", err)
				}
				if f == nil {
					break
				}
			}
		}
	}
}

func BenchmarkEncodeDeliver(b *testing.B) {
	msg := []byte("Hello Bob! How are you today?")
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendDeliver(buf[:0], 99, OpSend, "alice", 1700000000000, msg)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkEncodeReliable(b *testing.B) {
	msg := []byte("Hello Bob! How are you today?")
	id := testID(5)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendReliable(buf[:0], id[:], msg)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkEncodeAccepted(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendAccepted(buf[:0], 42, 1001)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkEncodeGroupDeliver(b *testing.B) {
	header := make([]byte, 64)
	cipher := make([]byte, 512)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendGroupDeliver(buf[:0], "group-0001", "alice", header, cipher)
	}
	b.SetBytes(int64(len(buf)))
}
