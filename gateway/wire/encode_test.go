package wire

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// TestProtocolExamples checks the hex exchanges recorded from the first
// release, in both directions.
func TestProtocolExamples(t *testing.T) {
	id := fromHex(t, "00112233445566778899aabbccddeeff")

	t.Run("client frames", func(t *testing.T) {
		cases := []struct {
			name string
			hex  string
			want string
		}{
			{"login alice", "01 61 6c 69 63 65", `op=0x01 user="alice"`},
			{"send Hello Bob! to bob", "02 00 03 62 6f 62 00 0a 48 65 6c 6c 6f 20 42 6f 62 21", `op=0x02 target="bob" msg="Hello Bob!"`},
			{"bob acknowledges", "03 00112233445566778899aabbccddeeff", "op=0x03 id=00112233445566778899aabbccddeeff"},
			{"status of bob", "05 00 03 62 6f 62", `op=0x05 target="bob"`},
		}
		for _, tc := range cases {
			got := decodeWhole(Limits{}, fromHex(t, tc.hex))
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("%s: decoded %q, want %q", tc.name, got, tc.want)
			}
		}
	})

	t.Run("server frames", func(t *testing.T) {
		cases := []struct {
			name string
			got  []byte
			hex  string
		}{
			{"login ok", AppendLoginOK(nil), "03 4c 4f 47 49 4e 5f 4f 4b"},
			{"bob receives", AppendReliable(nil, id, []byte("Hello Bob!")),
				"10 00 10 00112233445566778899aabbccddeeff 00 00 00 0a 48 65 6c 6c 6f 20 42 6f 62 21"},
			{"status of online bob", AppendStatus(nil, "bob", true, 0),
				"06 00 03 62 6f 62 01 00 00 00 00 00 00 00 00"},
			{"status of offline carol", AppendStatus(nil, "carol", false, 0x6b13133d),
				"06 00 05 63 61 72 6f 6c 00 00 00 00 00 6b 13 13 3d"},
			{"group service down", AppendError(nil, "group_service_unavailable"),
				"fe 00 19" + hex.EncodeToString([]byte("group_service_unavailable"))},
		}
		for _, tc := range cases {
			if want := fromHex(t, tc.hex); !bytes.Equal(tc.got, want) {
				t.Errorf("%s:\n got % x\nwant % x", tc.name, tc.got, want)
			}
		}
	})
}

func TestEncoders(t *testing.T) {
	cases := []struct {
		name string
		got  []byte
		want []byte
	}{
		{"status online ignores last seen", AppendStatus(nil, []byte("bob"), true, 99),
			cat(op(0x06), str16("bob"), []byte{1}, be64(0))},
		{"rate limited", AppendRateLimited(nil, 1500), cat(op(0xFF), be32(1500))},
		{"accepted", AppendAccepted(nil, 7, 1<<33), cat(op(0x0B), be64(7), be64(1<<33))},
		{"rejected", AppendRejected(nil, 7, "inbox_full"), cat(op(0x0C), be64(7), str16("inbox_full"))},
		{"deliver", AppendDeliver(nil, 12, OpSend, "alice", 1700000000123, []byte("hi")),
			cat(op(0x11), be64(12), []byte{0x02}, str16("alice"), be64(1700000000123), str32("hi"))},
		{"prekey response", AppendPrekeyResponse(nil, []byte("\xa1\x66status\x62ok")),
			cat(op(0x22), str32("\xa1\x66status\x62ok"))},
		{"e2ee deliver", AppendE2EEDeliver(nil, "alice", []byte("hdr"), []byte("cipher")),
			cat(op(0x24), str16("alice"), str16("hdr"), str32("cipher"))},
		{"group member", AppendGroupMember(nil, "g1", []byte("dave")), cat(op(0x31), str16("g1"), str16("dave"))},
		{"group leave ok", AppendGroupLeaveOK(nil), []byte{0x32, 'O', 'K'}},
		{"group deliver", AppendGroupDeliver(nil, []byte("g1"), "alice", []byte("h"), []byte("c")),
			cat(op(0x34), str16("g1"), str16("alice"), str16("h"), str32("c"))},
		{"group roster", AppendGroupRoster(nil, "g1", []byte("\x82\x61a\x61b")),
			cat(op(0x35), str16("g1"), str32("\x82\x61a\x61b"))},
		{"group sender key", AppendGroupSenderKey(nil, "g1", "alice", []byte("key")),
			cat(op(0x36), str16("g1"), str16("alice"), str32("key"))},
		{"typing started", AppendTyping(nil, "alice", TypingStarted), cat(op(0x72), str16("alice"), []byte{1})},
		{"typing stopped", AppendTyping(nil, "alice", TypingStopped), cat(op(0x72), str16("alice"), []byte{0})},
		{"receipt", AppendReceipt(nil, []byte("m-1"), "bob", 1700000000999),
			cat(op(0x75), str16("m-1"), str16("bob"), be64(1700000000999))},
		{"appends to existing bytes", AppendGroupLeaveOK([]byte{0xAA}), []byte{0xAA, 0x32, 'O', 'K'}},
	}
	for _, tc := range cases {
		if !bytes.Equal(tc.got, tc.want) {
			t.Errorf("%s:\n got % x\nwant % x", tc.name, tc.got, tc.want)
		}
	}
}

// TestReliableCarriesLiveFrame checks the v1 wrapping of non-plain content:
// the RELIABLE payload is the whole live frame with its opcode, and the
// DELIVER body for the same content is that frame without the opcode.
func TestReliableCarriesLiveFrame(t *testing.T) {
	live := AppendE2EEDeliver(nil, "alice", []byte("h"), []byte("c"))
	id := testID(0)

	reliable := AppendReliable(nil, id[:], live)
	want := cat(op(0x10), be16(IDLen), id[:], be32(len(live)), live)
	if !bytes.Equal(reliable, want) {
		t.Errorf("reliable:\n got % x\nwant % x", reliable, want)
	}

	deliver := AppendDeliver(nil, 1, live[0], "alice", 5, live[1:])
	want = cat(op(0x11), be64(1), []byte{OpE2EEDeliver}, str16("alice"), be64(5), be32(len(live)-1), live[1:])
	if !bytes.Equal(deliver, want) {
		t.Errorf("deliver:\n got % x\nwant % x", deliver, want)
	}
}

func TestEncodersZeroAllocs(t *testing.T) {
	buf := make([]byte, 0, 1024)
	id := testID(3)
	msg := []byte("Hello Bob!")
	sender := []byte("alice")
	encoders := map[string]func(){
		"reliable":      func() { buf = AppendReliable(buf[:0], id[:], msg) },
		"deliver":       func() { buf = AppendDeliver(buf[:0], 1, OpSend, "alice", 2, msg) },
		"deliver bytes": func() { buf = AppendDeliver(buf[:0], 1, OpSend, sender, 2, msg) },
		"accepted":      func() { buf = AppendAccepted(buf[:0], 1, 2) },
		"rejected":      func() { buf = AppendRejected(buf[:0], 1, "rate_limited") },
		"status":        func() { buf = AppendStatus(buf[:0], sender, false, 3) },
		"error":         func() { buf = AppendError(buf[:0], ErrInvalidTarget.Reason) },
		"e2ee":          func() { buf = AppendE2EEDeliver(buf[:0], sender, msg, msg) },
		"group deliver": func() { buf = AppendGroupDeliver(buf[:0], "g", sender, msg, msg) },
		"receipt":       func() { buf = AppendReceipt(buf[:0], msg, sender, 4) },
	}
	for name, encode := range encoders {
		if allocs := testing.AllocsPerRun(100, encode); allocs != 0 {
			t.Errorf("%s: %.1f allocations, want 0", name, allocs)
		}
	}
}

func TestEncoderPanicsOnOverlongField(t *testing.T) {
	defer func() {
		r := recover()
		msg, _ := r.(string)
		if !strings.Contains(msg, "error reason is 65536 bytes") {
			t.Errorf("recovered %v, want a message about the error reason", r)
		}
	}()
	AppendError(nil, strings.Repeat("x", 1<<16))
	t.Error("AppendError accepted a reason longer than its u16 prefix")
}
