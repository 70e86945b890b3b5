package client

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// unhex turns space-separated hex, with "quoted" ASCII runs allowed, into
// bytes, so canned frames read like the protocol's hex examples.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	out := []byte{}
	for {
		s = strings.TrimLeft(s, " \n\t")
		if s == "" {
			return out
		}
		if s[0] == '"' {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				t.Fatalf("unterminated quote in %q", s)
			}
			out = append(out, s[1:1+end]...)
			s = s[end+2:]
			continue
		}
		token, rest, _ := strings.Cut(s, " ")
		b, err := hex.DecodeString(token)
		if err != nil {
			t.Fatalf("invalid hex %q: %v", token, err)
		}
		out = append(out, b...)
		s = rest
	}
}

const testID = "00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f"

// serverFrameCase is one server-to-client frame as bytes and the Frame it
// must decode to. Raw is compared against the bytes separately.
type serverFrameCase struct {
	name string
	hex  string
	want Frame
}

func serverFrameCases(t testing.TB) []serverFrameCase {
	id := unhex(t, testID)
	return []serverFrameCase{
		{"login ok", `03 "LOGIN_OK"`, Frame{Op: OpLoginOK}},
		{"reliable", `10 00 10 ` + testID + ` 00 00 00 0a "Hello Bob!"`,
			Frame{Op: OpReliable, ID: id, Msg: []byte("Hello Bob!")}},
		{"reliable empty message", `10 00 10 ` + testID + ` 00 00 00 00`,
			Frame{Op: OpReliable, ID: id, Msg: []byte{}}},
		{"status online", `06 00 03 62 6f 62 01 00 00 00 00 00 00 00 00`,
			Frame{Op: OpStatus, User: "bob", State: 1}},
		{"status offline", `06 00 05 63 61 72 6f 6c 00 00 00 00 00 6b 13 13 3d`,
			Frame{Op: OpStatus, User: "carol", State: 0, Seen: 0x6b13133d}},
		{"error", `fe 00 19 "group_service_unavailable"`,
			Frame{Op: OpError, Reason: "group_service_unavailable"}},
		{"rate limited", `ff 00 00 03 e8`, Frame{Op: OpRateLimited, RetryAfterMs: 1000}},
		{"accepted", `0b 00 00 00 00 00 00 00 07 00 00 00 00 00 00 01 00`,
			Frame{Op: OpAccepted, CID: 7, Seq: 256}},
		{"rejected", `0c 00 00 00 00 00 00 00 08 00 0a "inbox_full"`,
			Frame{Op: OpRejected, CID: 8, Reason: "inbox_full"}},
		{"deliver", `11 00 00 00 00 00 00 00 2a 02 00 05 "alice" 00 00 01 8f 00 00 00 01 00 00 00 02 "hi"`,
			Frame{Op: OpDeliver, Seq: 42, Kind: OpSend, Sender: "alice", TimestampMs: 0x18f00000001, Msg: []byte("hi")}},
		{"prekey reply", `22 00 00 00 0b a1 66 "status" 62 "ok"`,
			Frame{Op: OpPrekeyReply, Payload: unhex(t, `a1 66 "status" 62 "ok"`)}},
		{"e2ee deliver", `24 00 05 "alice" 00 02 aa bb 00 00 00 03 c1 c2 c3`,
			Frame{Op: OpE2EEDeliver, Sender: "alice", Header: []byte{0xaa, 0xbb}, Cipher: []byte{0xc1, 0xc2, 0xc3}}},
		{"group member", `31 00 02 "g1" 00 05 "alice"`,
			Frame{Op: OpGroupMember, Group: "g1", User: "alice"}},
		{"group ok", `32 "OK"`, Frame{Op: OpGroupOK}},
		{"group deliver", `34 00 02 "g1" 00 03 "bob" 00 01 aa 00 00 00 02 c1 c2`,
			Frame{Op: OpGroupDeliver, Group: "g1", Sender: "bob", Header: []byte{0xaa}, Cipher: []byte{0xc1, 0xc2}}},
		{"group roster", `35 00 02 "g1" 00 00 00 0b 82 65 "alice" 63 "bob"`,
			Frame{Op: OpGroupRoster, Group: "g1", Payload: unhex(t, `82 65 "alice" 63 "bob"`)}},
		{"sender key", `36 00 02 "g1" 00 03 "bob" 00 00 00 04 "key!"`,
			Frame{Op: OpSenderKey, Group: "g1", Sender: "bob", Payload: []byte("key!")}},
		{"typing", `72 00 03 "bob" 01`, Frame{Op: OpTyping, Sender: "bob", State: 1}},
		{"read receipt", `75 00 10 ` + testID + ` 00 03 "bob" 00 00 01 8f 00 00 00 02`,
			Frame{Op: OpReceiptNotice, ID: id, User: "bob", TimestampMs: 0x18f00000002}},
	}
}

// checkFrame compares a decoded frame with the expected one and its Raw
// bytes with the input.
func checkFrame(t *testing.T, name string, got Frame, want Frame, raw []byte) {
	t.Helper()
	if !bytes.Equal(got.Raw, raw) {
		t.Errorf("%s: Raw = % x, want % x", name, got.Raw, raw)
	}
	got.Raw = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: decoded\n%#v\nwant\n%#v", name, got, want)
	}
}

func TestParseFrameEveryServerOp(t *testing.T) {
	for _, tc := range serverFrameCases(t) {
		raw := unhex(t, tc.hex)
		got, err := ParseFrame(raw)
		if err != nil {
			t.Errorf("%s: ParseFrame(% x): %v", tc.name, raw, err)
			continue
		}
		checkFrame(t, tc.name, got, tc.want, raw)
	}
}

func TestDecodeOneByteAtATime(t *testing.T) {
	cases := serverFrameCases(t)
	var stream []byte
	for _, tc := range cases {
		stream = append(stream, unhex(t, tc.hex)...)
	}
	r := bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader(stream)), 16)

	for _, tc := range cases {
		got, err := decodeFrame(r, defaultMaxFrameSize)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		checkFrame(t, tc.name, got, tc.want, unhex(t, tc.hex))
	}
	if _, err := decodeFrame(r, defaultMaxFrameSize); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last frame: err = %v, want io.EOF", err)
	}
}

func TestDecodeTruncatedFrame(t *testing.T) {
	for _, tc := range serverFrameCases(t) {
		raw := unhex(t, tc.hex)
		for cut := 1; cut < len(raw); cut++ {
			_, err := decodeFrame(bytes.NewReader(raw[:cut]), defaultMaxFrameSize)
			if !errors.Is(err, ErrMalformedFrame) || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("%s cut at %d: err = %v, want ErrMalformedFrame and io.ErrUnexpectedEOF", tc.name, cut, err)
			}
		}
	}
}

func TestDecodeRejectsBadInput(t *testing.T) {
	cases := []struct {
		name string
		hex  string
	}{
		{"unknown opcode", `99 00 00`},
		{"client-only opcode", `02 00 03 "bob" 00 01 "x"`},
		{"login ok with other text", `03 "LOGIN_NO"`},
		{"group ok with other text", `32 "NO"`},
		{"length over limit", `10 00 10 ` + testID + ` 7f ff ff ff`},
	}
	for _, tc := range cases {
		_, err := decodeFrame(bytes.NewReader(unhex(t, tc.hex)), 1024)
		if !errors.Is(err, ErrMalformedFrame) {
			t.Errorf("%s: err = %v, want ErrMalformedFrame", tc.name, err)
		}
	}
}

func TestParseFrameTrailingBytes(t *testing.T) {
	_, err := ParseFrame(unhex(t, `32 "OK" 00`))
	if !errors.Is(err, ErrMalformedFrame) {
		t.Fatalf("err = %v, want ErrMalformedFrame", err)
	}
	if _, err := ParseFrame(nil); !errors.Is(err, ErrMalformedFrame) {
		t.Fatalf("empty input: err = %v, want ErrMalformedFrame", err)
	}
}

func TestParseFrameInsideReliable(t *testing.T) {
	inner := unhex(t, `24 00 05 "alice" 00 01 aa 00 00 00 01 bb`)
	outer := append(unhex(t, `10 00 10 `+testID+` 00 00 00`), byte(len(inner)))
	outer = append(outer, inner...)

	f, err := ParseFrame(outer)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseFrame(f.Msg)
	if err != nil {
		t.Fatal(err)
	}
	if got.Op != OpE2EEDeliver || got.Sender != "alice" {
		t.Fatalf("inner frame = %v, want E2EE_DELIVER from alice", got)
	}
	if !bytes.Equal(got.Cipher, []byte{0xbb}) {
		t.Fatalf("inner cipher = % x, want bb", got.Cipher)
	}
}

func TestFrameFieldsDoNotAliasInput(t *testing.T) {
	raw := unhex(t, `10 00 10 `+testID+` 00 00 00 02 "hi"`)
	f, err := ParseFrame(raw)
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		raw[i] = 0
	}
	if string(f.Msg) != "hi" || f.ID[1] != 1 || f.Raw[0] != 0x10 {
		t.Fatalf("frame changed with its input: %v", f)
	}
}

func TestAppendClientFrames(t *testing.T) {
	must := func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	id := unhex(t, testID)
	cases := []struct {
		name string
		got  []byte
		want string
	}{
		{"login", AppendLogin(nil, "alice"), `01 61 6c 69 63 65`},
		{"login token", AppendLoginToken(nil, "alice", "a.b.c"), `01 "alice:a.b.c"`},
		{"login2", must(AppendLogin2(nil, "alice", "tok")), `08 00 05 "alice" 00 03 "tok"`},
		{"send", must(AppendSend(nil, "bob", []byte("Hello Bob!"))),
			`02 00 03 62 6f 62 00 0a 48 65 6c 6c 6f 20 42 6f 62 21`},
		{"send seq", must(AppendSendSeq(nil, "bob", 5, []byte("x"))),
			`07 00 03 "bob" 00 00 00 00 00 00 00 05 00 01 "x"`},
		{"batch", must(AppendBatchSend(nil, "bob", [][]byte{[]byte("a"), []byte("bc")})),
			`04 00 03 "bob" 00 00 00 07 00 01 "a" 00 02 "bc"`},
		{"ack", AppendAck(nil, id), `03 ` + testID},
		{"get status", must(AppendGetStatus(nil, "bob")), `05 00 03 62 6f 62`},
		{"cbor", must(AppendCBORMessage(nil, "bob", []byte{0xa0})), `10 00 03 "bob" 00 00 00 01 a0`},
		{"send2", must(AppendSend2(nil, 9, "bob", []byte("hi"))),
			`09 00 00 00 00 00 00 00 09 00 03 "bob" 00 00 00 02 "hi"`},
		{"ack2", AppendAck2(nil, 258), `12 00 00 00 00 00 00 01 02`},
		{"prekey upload", must(AppendPrekeyUpload(nil, []byte{0xa0})), `20 00 00 00 01 a0`},
		{"prekey fetch", must(AppendPrekeyFetch(nil, "bob")), `21 00 03 "bob"`},
		{"e2ee", must(AppendE2EESend(nil, "bob", []byte{0xaa}, []byte{0xbb, 0xcc})),
			`23 00 03 "bob" 00 01 aa 00 00 00 02 bb cc`},
		{"group create", must(AppendGroupCreate(nil, "team")), `30 00 04 "team"`},
		{"group leave", must(AppendGroupLeave(nil, "g1")), `32 00 02 "g1"`},
		{"group send", must(AppendGroupSend(nil, "g1", []byte{0xaa}, []byte{0xbb})),
			`33 00 02 "g1" 00 01 aa 00 00 00 01 bb`},
		{"group roster", must(AppendGroupRosterGet(nil, "g1")), `35 00 02 "g1"`},
		{"sender key", must(AppendGroupSenderKey(nil, "g1", []byte("k"))), `36 00 02 "g1" 00 00 00 01 "k"`},
		{"add member", must(AppendGroupAddMember(nil, "g1", "bob")), `37 00 02 "g1" 00 03 "bob"`},
		{"typing start", must(AppendTyping(nil, "bob", true)), `70 00 03 "bob"`},
		{"typing stop", must(AppendTyping(nil, "bob", false)), `71 00 03 "bob"`},
		{"read receipt", must(AppendReadReceipt(nil, id, "alice")), `74 00 10 ` + testID + ` 00 05 "alice"`},
	}
	for _, tc := range cases {
		if want := unhex(t, tc.want); !bytes.Equal(tc.got, want) {
			t.Errorf("%s: % x, want % x", tc.name, tc.got, want)
		}
	}
}

func TestAppendKeepsEarlierFrames(t *testing.T) {
	b := AppendAck(nil, unhex(t, testID))
	b, err := AppendSend(b, "bob", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(t, `03 `+testID+` 02 00 03 "bob" 00 01 "x"`)
	if !bytes.Equal(b, want) {
		t.Fatalf("% x, want % x", b, want)
	}
}

func TestAppendFieldTooLong(t *testing.T) {
	long := make([]byte, 1<<16)
	prefix := []byte{0x03}

	got, err := AppendSend(prefix, "bob", long)
	if !errors.Is(err, ErrFieldTooLong) {
		t.Fatalf("message of 65536 bytes: err = %v, want ErrFieldTooLong", err)
	}
	if !bytes.Equal(got, prefix) {
		t.Fatalf("failed append changed dst to % x", got[:min(len(got), 8)])
	}
	if _, err := AppendSend2(nil, 1, string(long), nil); !errors.Is(err, ErrFieldTooLong) {
		t.Fatalf("target of 65536 bytes: err = %v, want ErrFieldTooLong", err)
	}
	if _, err := AppendBatchSend(nil, "bob", [][]byte{long}); !errors.Is(err, ErrFieldTooLong) {
		t.Fatalf("batch entry of 65536 bytes: err = %v, want ErrFieldTooLong", err)
	}
	if _, err := AppendSend2(nil, 1, "bob", long); err != nil {
		t.Fatalf("SEND2 has a u32 message length, 65536 bytes must fit: %v", err)
	}
}
