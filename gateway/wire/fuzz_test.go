package wire

import (
	"slices"
	"testing"
)

// FuzzDecoder feeds arbitrary bytes, whole and in pieces whose sizes come
// from cuts. It checks that the decoder never panics, that every frame it
// returns fits the limits, and that splitting does not change the result
// (unless the stream holds a LOGIN, whose body depends on the read it
// arrives in).
func FuzzDecoder(f *testing.F) {
	for _, tc := range validFrames {
		f.Add(tc.bytes, []byte{1, 2, 3})
	}
	f.Add(randomStream(newSeededRand(), 20, true), []byte{5, 0, 200, 17})
	f.Add(cat(e2eeFrame(string(make([]byte, 300)), "h", "c"), ack2Frame(1)), []byte{3, 1, 1})

	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		sizes := make([]int, len(cuts))
		for i, c := range cuts {
			sizes[i] = int(c)
		}
		for _, l := range []Limits{{}, tinyLimits} {
			whole, wholeLogin := decodeChecked(t, l, data, nil)
			split, splitLogin := decodeChecked(t, l, data, sizes)
			if wholeLogin || splitLogin {
				continue
			}
			if !slices.Equal(whole, split) {
				t.Fatalf("limits %+v: split decoding differs from whole: %s", l, firstDifference(split, whole))
			}
		}
	})
}

// decodeChecked works like decodePieces (sizes == nil feeds data whole),
// checks each frame against the limits, and reports whether a LOGIN opcode
// was at the head of the buffer at any Next call.
func decodeChecked(t *testing.T, l Limits, data []byte, sizes []int) (out []string, sawLogin bool) {
	d := NewDecoder(l)
	limits := l.withDefaults()
	if sizes == nil {
		sizes = []int{len(data)}
	}
	for i := 0; len(data) > 0; i++ {
		n := len(data)
		if i < len(sizes) {
			n = min(max(sizes[i], 1), len(data))
		}
		if err := d.Feed(data[:n]); err != nil {
			return append(out, "feed error: "+err.(*Error).Reason), sawLogin
		}
		data = data[n:]
		for {
			if !d.skip.active && d.r < len(d.buf) && d.buf[d.r] == OpLogin {
				sawLogin = true
			}
			f, err := d.Next()
			if err != nil {
				out = append(out, "error: "+err.(*Error).Reason)
				if err.(*Error).Fatal {
					return out, sawLogin
				}
				continue
			}
			if f == nil {
				break
			}
			checkFrameLimits(t, limits, f)
			out = append(out, describe(f))
		}
	}
	return out, sawLogin
}

func checkFrameLimits(t *testing.T, l Limits, f *Frame) {
	t.Helper()
	checks := []struct {
		name  string
		value []byte
		max   int
	}{
		{"User", f.User, min(l.MaxUserName, MaxUserNameLen)},
		{"Token", f.Token, l.MaxToken},
		{"Target", f.Target, min(l.MaxTarget, MaxUserNameLen)},
		{"Batch", f.Batch, l.MaxBatchBytes},
		{"Bundle", f.Bundle, l.MaxKeyBundle},
		{"Header", f.Header, l.MaxE2EEHeader},
		{"Cipher", f.Cipher, l.MaxMessage},
		{"Group", f.Group, l.MaxGroupID},
		{"Name", f.Name, l.MaxGroupName},
		{"Key", f.Key, l.MaxSenderKey},
		{"MsgID", f.MsgID, l.MaxMessageID},
		{"Sender", f.Sender, min(l.MaxUserName, MaxUserNameLen)},
	}
	msgMax := l.MaxMessage
	if f.Op == OpCBORMsg {
		msgMax = l.MaxCBOR
	}
	checks = append(checks, struct {
		name  string
		value []byte
		max   int
	}{"Msg", f.Msg, msgMax})
	for _, c := range checks {
		if len(c.value) > c.max {
			t.Fatalf("op %#02x: %s is %d bytes, limit %d", f.Op, c.name, len(c.value), c.max)
		}
	}
	for _, name := range [][]byte{f.User, f.Target, f.Sender} {
		if name != nil && ValidUserName(name) != nil {
			t.Fatalf("op %#02x: invalid name %q returned", f.Op, name)
		}
	}
	if f.Op == OpBatchSend {
		count := 0
		it := f.BatchEntries()
		for msg, ok := it.Next(); ok; msg, ok = it.Next() {
			if len(msg) > l.MaxMessage {
				t.Fatalf("batch entry of %d bytes, limit %d", len(msg), l.MaxMessage)
			}
			count++
		}
		if count != f.BatchLen || count > l.MaxBatchEntries {
			t.Fatalf("batch yields %d entries, BatchLen %d, limit %d", count, f.BatchLen, l.MaxBatchEntries)
		}
	}
}
