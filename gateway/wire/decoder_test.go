package wire

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// validFrames holds one well-formed frame per client opcode (except LOGIN,
// which has its own tests) with the description the decoder must produce.
var validFrames = []struct {
	name  string
	bytes []byte
	want  string
}{
	{"send", sendFrame("bob", "Hello Bob!"), `op=0x02 target="bob" msg="Hello Bob!"`},
	{"send empty message", sendFrame("bob", ""), `op=0x02 target="bob"`},
	{"ack", ackFrame(testID(1)), "op=0x03 id=0102030405060708090a0b0c0d0e0f10"},
	{"batch", batchFrame("bob", "one", "", "three"), `op=0x04 target="bob" batch="\x00\x03one\x00\x00\x00\x05three" batchlen=3`},
	{"batch empty", batchFrame("bob"), `op=0x04 target="bob"`},
	{"get status", statusFrame("carol"), `op=0x05 target="carol"`},
	{"send seq", sendSeqFrame("bob", 42, "hi"), `op=0x07 target="bob" msg="hi" seq=42`},
	{"login2", login2Frame("alice", "a.b.c"), `op=0x08 user="alice" token="a.b.c"`},
	{"login2 without token", login2Frame("alice", ""), `op=0x08 user="alice"`},
	{"send2", send2Frame(7, "bob", "hey"), `op=0x09 target="bob" msg="hey" cid=7`},
	{"cbor", cborFrame("bob", "\xa1\x61a\x01"), `op=0x10 target="bob" msg="\xa1aa\x01"`},
	{"ack2", ack2Frame(1 << 40), "op=0x12 seq=1099511627776"},
	{"prekey upload", prekeyUploadFrame("\xa0"), `op=0x20 bundle="\xa0"`},
	{"prekey fetch", prekeyFetchFrame("bob"), `op=0x21 user="bob"`},
	{"e2ee", e2eeFrame("bob", "\xa0", "secret"), `op=0x23 target="bob" header="\xa0" cipher="secret"`},
	{"group create", groupCreateFrame("Team: ops ✓"), `op=0x30 name="Team: ops ✓"`},
	{"group leave", groupLeaveFrame("g1"), `op=0x32 group="g1"`},
	{"group message", groupMessageFrame("g1", "h", "c"), `op=0x33 header="h" cipher="c" group="g1"`},
	{"group roster", groupRosterFrame("g1"), `op=0x35 group="g1"`},
	{"sender key", senderKeyFrame("g1", "k3y"), `op=0x36 group="g1" key="k3y"`},
	{"add member", addMemberFrame("g1", "dave"), `op=0x37 user="dave" group="g1"`},
	{"typing start", typingFrame(true, "bob"), `op=0x70 target="bob" state=1`},
	{"typing stop", typingFrame(false, "bob"), `op=0x71 target="bob"`},
	{"read receipt", receiptFrame("m-1", "alice"), `op=0x74 msgid="m-1" sender="alice"`},
}

func TestDecodeValidFrames(t *testing.T) {
	for _, tc := range validFrames {
		t.Run(tc.name, func(t *testing.T) {
			got := decodeWhole(Limits{}, tc.bytes)
			if !slices.Equal(got, []string{tc.want}) {
				t.Errorf("decoded %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDecodeTruncatedFrames(t *testing.T) {
	for _, tc := range validFrames {
		t.Run(tc.name, func(t *testing.T) {
			for k := 0; k < len(tc.bytes); k++ {
				d := NewDecoder(Limits{})
				if err := d.Feed(tc.bytes[:k]); err != nil {
					t.Fatalf("prefix %d: Feed: %v", k, err)
				}
				f, err := d.Next()
				if f != nil || err != nil {
					t.Fatalf("prefix %d of %d: got (%v, %v), want need-more", k, len(tc.bytes), f, err)
				}
				if err := d.Feed(tc.bytes[k:]); err != nil {
					t.Fatalf("prefix %d: Feed rest: %v", k, err)
				}
				if got := drain(d); !slices.Equal(got, []string{tc.want}) {
					t.Fatalf("prefix %d: decoded %q after the rest, want %q", k, got, tc.want)
				}
			}
		})
	}
}

func TestDecodeBackToBack(t *testing.T) {
	var stream []byte
	var want []string
	for _, tc := range validFrames {
		stream = append(stream, tc.bytes...)
		want = append(want, tc.want)
	}
	if got := decodeWhole(Limits{}, stream); !slices.Equal(got, want) {
		t.Errorf("whole stream:\n got %q\nwant %q", got, want)
	}
	if got := decodePieces(Limits{}, stream, onesOf(len(stream))); !slices.Equal(got, want) {
		t.Errorf("1-byte pieces:\n got %q\nwant %q", got, want)
	}
}

// tinyLimits makes every length-limited field cheap to overflow.
var tinyLimits = Limits{
	MaxUserName: 8, MaxTarget: 8, MaxToken: 8, MaxMessage: 8, MaxCBOR: 8,
	MaxKeyBundle: 8, MaxE2EEHeader: 8, MaxBatchBytes: 32, MaxBatchEntries: 3,
	MaxGroupID: 8, MaxGroupName: 8, MaxSenderKey: 8, MaxMessageID: 8,
}

func TestDecodeOversizedFieldSkipsFrame(t *testing.T) {
	long := strings.Repeat("x", 9)
	longBlob := strings.Repeat("\x00\x01y", 11) // 33 bytes of valid entries
	cases := []struct {
		name   string
		bytes  []byte
		reason string
	}{
		{"send target", sendFrame(long, "m"), "invalid_target"},
		{"send message", sendFrame("bob", long), "message_too_large"},
		{"batch target", batchFrame(long, "m"), "invalid_target"},
		{"batch blob", cat(op(OpBatchSend), str16("bob"), str32(longBlob)), "batch_too_large"},
		{"status target", statusFrame(long), "invalid_target"},
		{"send seq target", sendSeqFrame(long, 1, "m"), "invalid_target"},
		{"send seq message", sendSeqFrame("bob", 1, long), "message_too_large"},
		{"login2 user", login2Frame(long, "t"), "invalid_user_name"},
		{"login2 token", login2Frame("alice", long), "token_too_long"},
		{"send2 target", send2Frame(1, long, "m"), "invalid_target"},
		{"send2 message", send2Frame(1, "bob", long), "message_too_large"},
		{"cbor target", cborFrame(long, "m"), "invalid_target"},
		{"cbor payload", cborFrame("bob", long), "cbor_too_large"},
		{"prekey upload", prekeyUploadFrame(long), "key_bundle_too_large"},
		{"prekey fetch", prekeyFetchFrame(long), "invalid_user_name"},
		{"e2ee recipient", e2eeFrame(long, "h", "c"), "invalid_target"},
		{"e2ee header", e2eeFrame("bob", long, "c"), "header_too_large"},
		{"e2ee cipher", e2eeFrame("bob", "h", long), "message_too_large"},
		{"group create", groupCreateFrame(long), "invalid_group_name"},
		{"group leave", groupLeaveFrame(long), "invalid_group_id"},
		{"group message id", groupMessageFrame(long, "h", "c"), "invalid_group_id"},
		{"group message header", groupMessageFrame("g", long, "c"), "header_too_large"},
		{"group message cipher", groupMessageFrame("g", "h", long), "message_too_large"},
		{"group roster", groupRosterFrame(long), "invalid_group_id"},
		{"sender key group", senderKeyFrame(long, "k"), "invalid_group_id"},
		{"sender key data", senderKeyFrame("g", long), "sender_key_too_large"},
		{"add member group", addMemberFrame(long, "u"), "invalid_group_id"},
		{"add member user", addMemberFrame("g", long), "invalid_user_name"},
		{"typing target", typingFrame(true, long), "invalid_target"},
		{"receipt message id", receiptFrame(long, "alice"), "invalid_message_id"},
		{"receipt sender", receiptFrame("m", long), "invalid_sender"},
	}
	next := sendFrame("bob", "after")
	want := []string{"error: ", `op=0x02 target="bob" msg="after"`}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want[0] = "error: " + tc.reason
			stream := cat(tc.bytes, next)
			if got := decodeWhole(tinyLimits, stream); !slices.Equal(got, want) {
				t.Errorf("whole: got %q, want %q", got, want)
			}
			if got := decodePieces(tinyLimits, stream, onesOf(len(stream))); !slices.Equal(got, want) {
				t.Errorf("1-byte pieces: got %q, want %q", got, want)
			}
		})
	}
}

// TestDecodeOversizedFrameNotBuffered feeds a 64 MiB message behind a valid
// header and checks that the decoder never holds more than a length prefix
// of it.
func TestDecodeOversizedFrameNotBuffered(t *testing.T) {
	const size = 64 << 20
	d := NewDecoder(Limits{})
	header := cat(op(OpSend2), be64(9), str16("bob"), be32(size))
	if err := d.Feed(header); err != nil {
		t.Fatalf("Feed header: %v", err)
	}
	if _, err := d.Next(); err != ErrMessageTooLarge {
		t.Fatalf("Next after header: got %v, want %v", err, ErrMessageTooLarge)
	}

	chunk := make([]byte, 32<<10)
	for sent := 0; sent < size; sent += len(chunk) {
		if err := d.Feed(chunk[:min(len(chunk), size-sent)]); err != nil {
			t.Fatalf("Feed at %d: %v", sent, err)
		}
		if buffered := len(d.buf) - d.r; buffered != 0 {
			t.Fatalf("decoder holds %d bytes of a skipped frame at %d", buffered, sent)
		}
		if f, err := d.Next(); f != nil || err != nil {
			t.Fatalf("Next while skipping: got (%v, %v)", f, err)
		}
	}
	if cap(d.buf) > 1<<10 {
		t.Errorf("buffer grew to %d bytes while skipping", cap(d.buf))
	}

	if err := d.Feed(ack2Frame(5)); err != nil {
		t.Fatalf("Feed next frame: %v", err)
	}
	if got := drain(d); !slices.Equal(got, []string{"op=0x12 seq=5"}) {
		t.Errorf("after the skipped frame decoded %q", got)
	}
}

// TestDecodeSkipSplitPrefix skips a frame whose later length prefix arrives
// split across reads, after an earlier field was over its limit.
func TestDecodeSkipSplitPrefix(t *testing.T) {
	frame := e2eeFrame(strings.Repeat("r", 300), "hdr", strings.Repeat("c", 1000))
	stream := cat(frame, ack2Frame(3))
	want := []string{"error: invalid_target", "op=0x12 seq=3"}
	// Split so that each piece boundary falls inside the header prefix, then
	// the cipher prefix, and so on.
	for first := 1; first < 320; first += 7 {
		got := decodePieces(Limits{}, stream, []int{first, 3, 1, 1, 2, 5, 1, 1, 1, 900})
		if !slices.Equal(got, want) {
			t.Fatalf("first piece %d: got %q, want %q", first, got, want)
		}
	}
}

func TestDecodeInvalidContent(t *testing.T) {
	cases := []struct {
		name   string
		bytes  []byte
		reason string
	}{
		{"empty target", sendFrame("", "m"), "invalid_target"},
		{"target with colon", sendFrame("a:b", "m"), "invalid_target"},
		{"target with newline", statusFrame("a\nb"), "invalid_target"},
		{"target with DEL", cborFrame("a\x7fb", "m"), "invalid_target"},
		{"target with C1 control", send2Frame(1, "a\u0085b", "m"), "invalid_target"},
		{"target not UTF-8", sendSeqFrame("a\xffb", 1, "m"), "invalid_target"},
		{"e2ee empty recipient", e2eeFrame("", "h", "c"), "invalid_target"},
		{"typing bad target", typingFrame(false, "x:y"), "invalid_target"},
		{"login2 empty user", login2Frame("", "t"), "invalid_user_name"},
		{"prekey fetch bad user", prekeyFetchFrame("bad\x00"), "invalid_user_name"},
		{"add member bad user", addMemberFrame("g", ""), "invalid_user_name"},
		{"receipt bad sender", receiptFrame("m", "a:b"), "invalid_sender"},
		{"receipt empty message id", receiptFrame("", "alice"), "invalid_message_id"},
		{"group create empty name", groupCreateFrame(""), "invalid_group_name"},
		{"group create name with tab", groupCreateFrame("a\tb"), "invalid_group_name"},
		{"group create name not UTF-8", groupCreateFrame("\xc3"), "invalid_group_name"},
		{"group leave empty id", groupLeaveFrame(""), "invalid_group_id"},
		{"group message empty id", groupMessageFrame("", "h", "c"), "invalid_group_id"},
		{"batch entry overruns blob", cat(op(OpBatchSend), str16("bob"), str32("\x00\x05abc")), "invalid_batch"},
		{"batch trailing byte", cat(op(OpBatchSend), str16("bob"), str32("\x00\x01a\x00")), "invalid_batch"},
		{"batch bad target", batchFrame("", "m"), "invalid_target"},
	}
	next := ack2Frame(77)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := []string{"error: " + tc.reason, "op=0x12 seq=77"}
			stream := cat(tc.bytes, next)
			if got := decodeWhole(Limits{}, stream); !slices.Equal(got, want) {
				t.Errorf("whole: got %q, want %q", got, want)
			}
			if got := decodePieces(Limits{}, stream, onesOf(len(stream))); !slices.Equal(got, want) {
				t.Errorf("1-byte pieces: got %q, want %q", got, want)
			}
		})
	}
}

func TestDecodeBatchLimits(t *testing.T) {
	l := Limits{MaxBatchEntries: 3, MaxMessage: 4}
	cases := []struct {
		name string
		msgs []string
		want string
	}{
		{"at entry limit", []string{"a", "b", "c"}, `op=0x04 target="bob" batch="\x00\x01a\x00\x01b\x00\x01c" batchlen=3`},
		{"over entry limit", []string{"a", "b", "c", "d"}, "error: batch_too_many_entries"},
		{"entry at message limit", []string{"abcd"}, `op=0x04 target="bob" batch="\x00\x04abcd" batchlen=1`},
		{"entry over message limit", []string{"abcde"}, "error: message_too_large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := decodeWhole(l, batchFrame("bob", tc.msgs...))
			if !slices.Equal(got, []string{tc.want}) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBatchEntriesIterates(t *testing.T) {
	d := NewDecoder(Limits{})
	if err := d.Feed(batchFrame("bob", "one", "", "three")); err != nil {
		t.Fatal(err)
	}
	f, err := d.Next()
	if err != nil || f == nil {
		t.Fatalf("Next: (%v, %v)", f, err)
	}
	var got []string
	it := f.BatchEntries()
	for {
		msg, ok := it.Next()
		if !ok {
			break
		}
		got = append(got, string(msg))
	}
	if want := []string{"one", "", "three"}; !slices.Equal(got, want) {
		t.Errorf("entries %q, want %q", got, want)
	}
	if len(got) != f.BatchLen {
		t.Errorf("BatchLen %d, iterator yielded %d", f.BatchLen, len(got))
	}
	allocs := testing.AllocsPerRun(100, func() {
		it := f.BatchEntries()
		for _, ok := it.Next(); ok; _, ok = it.Next() {
		}
	})
	if allocs != 0 {
		t.Errorf("iterating allocates %.1f times", allocs)
	}
}

func TestDecodeAckIsExactlySixteenBytes(t *testing.T) {
	id := testID(0x40)
	// An ACK followed in the same read by a SEND: the SEND must not be
	// swallowed into the ACK.
	stream := cat(ackFrame(id), sendFrame("bob", "next"))
	want := []string{"op=0x03 id=404142434445464748494a4b4c4d4e4f", `op=0x02 target="bob" msg="next"`}
	if got := decodeWhole(Limits{}, stream); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestDecodeUnknownOpcodeIsFatal(t *testing.T) {
	for _, code := range []byte{0x00, 0x06, 0x0B, 0x0C, 0x11, 0x22, 0x24, 0x34, 0x72, 0x75, 0x80, 0xFE, 0xFF} {
		d := NewDecoder(Limits{})
		if err := d.Feed(cat(ack2Frame(1), []byte{code, 0, 0, 0}, ack2Frame(2))); err != nil {
			t.Fatal(err)
		}
		got := drain(d)
		want := []string{"op=0x12 seq=1", "error: unknown_opcode"}
		if !slices.Equal(got, want) {
			t.Errorf("opcode %#02x: got %q, want %q", code, got, want)
		}
		if _, err := d.Next(); err != ErrUnknownOpcode {
			t.Errorf("opcode %#02x: Next after fatal returned %v", code, err)
		}
		if err := d.Feed(ack2Frame(3)); err != ErrUnknownOpcode {
			t.Errorf("opcode %#02x: Feed after fatal returned %v", code, err)
		}
		var wireErr *Error
		if !errors.As(error(ErrUnknownOpcode), &wireErr) || !wireErr.Fatal {
			t.Errorf("ErrUnknownOpcode is not a fatal *Error")
		}
	}
}

func TestDecodeLogin(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want []string
	}{
		{"user only", []byte("\x01alice"), []string{`op=0x01 user="alice"`}},
		{"user and token", []byte("\x01alice:eyJ.a-b_c.sig"), []string{`op=0x01 user="alice" token="eyJ.a-b_c.sig"`}},
		{"token with colon", []byte("\x01alice:a:b"), []string{`op=0x01 user="alice" token="a:b"`}},
		{"empty token", []byte("\x01alice:"), []string{`op=0x01 user="alice"`}},
		{"unicode user", []byte("\x01zoë"), []string{`op=0x01 user="zoë"`}},
		{"followed by send", cat([]byte("\x01alice"), sendFrame("bob", "hi")),
			[]string{`op=0x01 user="alice"`, `op=0x02 target="bob" msg="hi"`}},
		{"followed by ack2", cat([]byte("\x01alice:tok"), ack2Frame(4)),
			[]string{`op=0x01 user="alice" token="tok"`, "op=0x12 seq=4"}},
		{"max user", []byte("\x01" + strings.Repeat("u", 256)), []string{`op=0x01 user="` + strings.Repeat("u", 256) + `"`}},
		{"user too long", []byte("\x01" + strings.Repeat("u", 257)), []string{"error: invalid_user_name"}},
		{"user of 10000 bytes", []byte("\x01" + strings.Repeat("u", 10000)), []string{"error: invalid_user_name"}},
		{"empty body", cat(op(OpLogin), sendFrame("bob", "hi")), []string{"error: invalid_user_name"}},
		{"empty user", []byte("\x01:token"), []string{"error: invalid_user_name"}},
		{"user with C1 control", []byte("\x01a\u0085b"), []string{"error: invalid_user_name"}},
		{"user not UTF-8", []byte("\x01a\xffb"), []string{"error: invalid_user_name"}},
		{"token too long", []byte("\x01alice:" + strings.Repeat("t", 4097)), []string{"error: token_too_long"}},
		{"token at limit", []byte("\x01al:" + strings.Repeat("t", 4096)), []string{`op=0x01 user="al" token="` + strings.Repeat("t", 4096) + `"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := decodeWhole(Limits{}, tc.in); !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDecodeLoginErrorsAreFatal(t *testing.T) {
	d := NewDecoder(Limits{})
	if err := d.Feed([]byte("\x01:nobody")); err != nil {
		t.Fatal(err)
	}
	_, err := d.Next()
	var wireErr *Error
	if !errors.As(err, &wireErr) || !wireErr.Fatal {
		t.Fatalf("Next returned %v, want a fatal *Error", err)
	}
	if _, again := d.Next(); again != err {
		t.Errorf("second Next returned %v, want %v", again, err)
	}
}

func TestDecodeLoginWaitsForBody(t *testing.T) {
	d := NewDecoder(Limits{})
	if err := d.Feed([]byte{OpLogin}); err != nil {
		t.Fatal(err)
	}
	if f, err := d.Next(); f != nil || err != nil {
		t.Fatalf("opcode alone: got (%v, %v), want need-more", f, err)
	}
	if err := d.Feed([]byte("bob")); err != nil {
		t.Fatal(err)
	}
	if got := drain(d); !slices.Equal(got, []string{`op=0x01 user="bob"`}) {
		t.Errorf("got %q", got)
	}
}

func TestDecodeLoginBodyIsRestOfRead(t *testing.T) {
	// Two reads, each drained: the LOGIN body ends with the first read.
	got := decodePieces(Limits{}, []byte("\x01alice\x12"+string(be64(1))), []int{6})
	want := []string{`op=0x01 user="alice"`, "op=0x12 seq=1"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestFeedBufferOverflow(t *testing.T) {
	l := Limits{RecvBuffer: 64, MaxBatchBytes: 4096}

	t.Run("many small frames in one read", func(t *testing.T) {
		var stream []byte
		for i := 0; i < 10; i++ {
			stream = append(stream, ack2Frame(uint64(i))...)
		}
		d := NewDecoder(l)
		if err := d.Feed(stream); err != ErrBufferOverflow {
			t.Fatalf("Feed of %d bytes returned %v, want %v", len(stream), err, ErrBufferOverflow)
		}
		if _, err := d.Next(); err != ErrBufferOverflow {
			t.Errorf("Next after overflow returned %v", err)
		}
	})

	t.Run("frame larger than buffer", func(t *testing.T) {
		msgs := make([]string, 100)
		for i := range msgs {
			msgs[i] = "0123456789"
		}
		frame := batchFrame("bob", msgs...)
		for _, sizes := range [][]int{nil, onesOf(len(frame)), {7, 100, 1000}} {
			got := decodePieces(l, frame, sizes)
			if len(got) != 1 || !strings.Contains(got[0], "batchlen=100") {
				t.Errorf("pieces %v: got %q, want one batch of 100", sizes[:min(3, len(sizes))], got)
			}
		}
	})

	t.Run("frame larger than buffer with more behind it", func(t *testing.T) {
		frame := batchFrame("bob", strings.Repeat("m", 200))
		stream := cat(frame, ack2Frame(1), ack2Frame(2))
		want := []string{`op=0x04 target="bob" batch="\x00\xc8` + strings.Repeat("m", 200) + `" batchlen=1`, "op=0x12 seq=1", "op=0x12 seq=2"}
		if got := decodeWhole(l, stream); !slices.Equal(got, want) {
			t.Errorf("got %q", got)
		}
	})

	t.Run("endless login", func(t *testing.T) {
		d := NewDecoder(l)
		if err := d.Feed([]byte("\x01" + strings.Repeat("a", 100))); err != ErrBufferOverflow {
			t.Errorf("Feed returned %v, want %v", err, ErrBufferOverflow)
		}
	})
}

func TestValidUserName(t *testing.T) {
	cases := []struct {
		name string
		ok   bool
	}{
		{"alice", true},
		{"Zoë Ünal", true},
		{"用户", true},
		{"a@b.c", true},
		{strings.Repeat("a", 256), true},
		{"", false},
		{strings.Repeat("a", 257), false},
		{"a:b", false},
		{"a\x00b", false},
		{"a\x1fb", false},
		{"a\x7fb", false},
		{"a\u0085b", false},
		{"a\xc3", false},
		{"\xed\xa0\x80", false}, // UTF-16 surrogate, invalid in UTF-8
	}
	for _, tc := range cases {
		err := ValidUserName([]byte(tc.name))
		if (err == nil) != tc.ok {
			t.Errorf("ValidUserName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestDecodeZeroAllocs(t *testing.T) {
	frames := map[string][]byte{
		"send":     sendFrame("bob", "Hello Bob!"),
		"send2":    send2Frame(1, "bob", "Hello Bob!"),
		"send seq": sendSeqFrame("bob", 1, "Hello Bob!"),
		"ack":      ackFrame(testID(1)),
		"ack2":     ack2Frame(9),
	}
	for name, frame := range frames {
		d := NewDecoder(Limits{})
		allocs := testing.AllocsPerRun(1000, func() {
			if err := d.Feed(frame); err != nil {
				t.Fatal(err)
			}
			if f, err := d.Next(); f == nil || err != nil {
				t.Fatalf("Next: (%v, %v)", f, err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %.1f allocations per frame, want 0", name, allocs)
		}
	}
}

func TestSkippedCIDNamesRejectedSend2(t *testing.T) {
	lim := DefaultLimits()
	lim.MaxMessage = 4
	d := NewDecoder(lim)
	frame := []byte{OpSend2, 0, 0, 0, 0, 0, 0, 0, 42, 0, 3, 'b', 'o', 'b', 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'}
	if err := d.Feed(frame); err != nil {
		t.Fatalf("Feed: %v", err)
	}
	if _, err := d.Next(); err != ErrMessageTooLarge {
		t.Fatalf("Next error = %v, want %v", err, ErrMessageTooLarge)
	}
	cid, ok := d.SkippedCID()
	if !ok || cid != 42 {
		t.Fatalf("SkippedCID = %d, %v; want 42, true", cid, ok)
	}
}

func TestSkippedCIDFalseForSend(t *testing.T) {
	lim := DefaultLimits()
	lim.MaxMessage = 4
	d := NewDecoder(lim)
	if err := d.Feed([]byte{OpSend, 0, 3, 'b', 'o', 'b', 0, 5, 'h', 'e', 'l', 'l', 'o'}); err != nil {
		t.Fatalf("Feed: %v", err)
	}
	if _, err := d.Next(); err != ErrMessageTooLarge {
		t.Fatalf("Next error = %v, want %v", err, ErrMessageTooLarge)
	}
	if _, ok := d.SkippedCID(); ok {
		t.Fatal("SkippedCID reported a cid for a SEND frame")
	}
}

func TestPendingLoginOnlyForLoneOpcode(t *testing.T) {
	d := NewDecoder(DefaultLimits())
	if err := d.Feed([]byte{OpLogin}); err != nil {
		t.Fatalf("Feed: %v", err)
	}
	if f, err := d.Next(); f != nil || err != nil {
		t.Fatalf("Next = %v, %v; want nil, nil", f, err)
	}
	if !d.PendingLogin() {
		t.Fatal("PendingLogin = false with only the LOGIN opcode buffered")
	}
	if err := d.Feed([]byte("alice")); err != nil {
		t.Fatalf("Feed: %v", err)
	}
	if d.PendingLogin() {
		t.Fatal("PendingLogin = true after the name arrived")
	}
	f, err := d.Next()
	if err != nil || f == nil || string(f.User) != "alice" {
		t.Fatalf("Next = %+v, %v; want LOGIN alice", f, err)
	}
}

func TestGroupLeaveAltDecodesAsLeave(t *testing.T) {
	d := NewDecoder(DefaultLimits())
	if err := d.Feed([]byte{OpGroupLeaveAlt, 0, 2, 'g', '1'}); err != nil {
		t.Fatalf("Feed: %v", err)
	}
	f, err := d.Next()
	if err != nil || f == nil {
		t.Fatalf("Next = %v, %v; want a frame", f, err)
	}
	if f.Op != OpGroupLeave || string(f.Group) != "g1" {
		t.Fatalf("frame = op %#x group %q, want leave of g1", f.Op, f.Group)
	}
}

// A decoder reset after a fatal error, or in the middle of skipping an
// oversized frame, decodes a new stream as a fresh one does.
func TestResetForgetsPreviousStream(t *testing.T) {
	limits := DefaultLimits()
	limits.MaxMessage = 8
	next := sendFrame("bob", "hi")

	cases := map[string][]byte{
		"after a fatal error":       {0xEE},
		"while skipping a frame":    sendFrame("bob", "far too long for the limit")[:12],
		"with a partial frame held": sendFrame("bob", "hi")[:5],
	}
	for name, before := range cases {
		t.Run(name, func(t *testing.T) {
			d := NewDecoder(limits)
			_ = d.Feed(before)
			_, _ = d.Next()

			d.Reset()
			if d.Buffered() {
				t.Fatal("Buffered = true after Reset")
			}
			if err := d.Feed(next); err != nil {
				t.Fatalf("Feed after Reset: %v", err)
			}
			f, err := d.Next()
			if err != nil {
				t.Fatalf("Next after Reset: %v", err)
			}
			if f == nil || f.Op != OpSend || string(f.Target) != "bob" || string(f.Msg) != "hi" {
				t.Fatalf("Next after Reset = %+v, expected SEND to bob with hi", f)
			}
		})
	}
}
