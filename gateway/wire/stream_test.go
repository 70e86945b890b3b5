package wire

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// randomStream builds n frames of every non-LOGIN client opcode with random
// contents. With withInvalid, some frames are invalid or over the limits so
// that skipping is exercised too.
func randomStream(rng *rand.Rand, n int, withInvalid bool) []byte {
	kinds := 20
	if withInvalid {
		kinds = 24
	}
	text := func(max int) string {
		const letters = "abcdefghijklmnopqrstuvwxyz0123456789-_."
		b := make([]byte, 1+rng.IntN(max))
		for i := range b {
			b[i] = letters[rng.IntN(len(letters))]
		}
		return string(b)
	}
	blob := func(max int) string {
		b := make([]byte, rng.IntN(max+1))
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return string(b)
	}

	var out []byte
	for range n {
		var frame []byte
		switch rng.IntN(kinds) {
		case 0:
			frame = sendFrame(text(20), blob(300))
		case 1:
			frame = ackFrame(testID(byte(rng.UintN(256))))
		case 2:
			msgs := make([]string, rng.IntN(5))
			for i := range msgs {
				msgs[i] = blob(40)
			}
			frame = batchFrame(text(20), msgs...)
		case 3:
			frame = statusFrame(text(20))
		case 4:
			frame = sendSeqFrame(text(20), rng.Uint64(), blob(100))
		case 5:
			frame = login2Frame(text(20), text(60))
		case 6:
			frame = send2Frame(rng.Uint64(), text(20), blob(300))
		case 7:
			frame = cborFrame(text(20), blob(100))
		case 8:
			frame = ack2Frame(rng.Uint64())
		case 9:
			frame = prekeyUploadFrame(blob(200))
		case 10:
			frame = prekeyFetchFrame(text(20))
		case 11:
			frame = e2eeFrame(text(20), blob(40), blob(200))
		case 12:
			frame = groupCreateFrame(text(30))
		case 13:
			frame = groupLeaveFrame(text(16))
		case 14:
			frame = groupMessageFrame(text(16), blob(40), blob(200))
		case 15:
			frame = groupRosterFrame(text(16))
		case 16:
			frame = senderKeyFrame(text(16), blob(100))
		case 17:
			frame = addMemberFrame(text(16), text(20))
		case 18:
			frame = typingFrame(rng.IntN(2) == 0, text(20))
		case 19:
			frame = receiptFrame(text(30), text(20))
		case 20:
			frame = sendFrame("bad:target", blob(10))
		case 21:
			frame = send2Frame(1, text(10), strings.Repeat("o", 70_000))
		case 22:
			frame = e2eeFrame(strings.Repeat("r", 400), blob(10), blob(10))
		case 23:
			frame = cat(op(OpBatchSend), str16(text(5)), str32("\x00\x09short"))
		}
		out = append(out, frame...)
	}
	return out
}

func TestDecodeSplitAnywhere(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	stream := randomStream(rng, 400, true)
	whole := decodeWhole(Limits{}, stream)

	if len(whole) != 400 {
		t.Fatalf("whole stream decoded to %d results, want 400", len(whole))
	}
	errorCount := 0
	for _, line := range whole {
		if strings.HasPrefix(line, "error: ") {
			errorCount++
		}
	}
	if errorCount == 0 || errorCount == len(whole) {
		t.Fatalf("stream has %d rejected frames of %d; the test needs both kinds", errorCount, len(whole))
	}

	if got := decodePieces(Limits{}, stream, onesOf(len(stream))); !slices.Equal(got, whole) {
		t.Fatalf("1-byte pieces differ from whole: %s", firstDifference(got, whole))
	}
	for run := range 50 {
		sizes := make([]int, 0, len(stream))
		for total := 0; total < len(stream); {
			n := 1 + rng.IntN(1+rng.IntN(4096))
			sizes = append(sizes, n)
			total += n
		}
		if got := decodePieces(Limits{}, stream, sizes); !slices.Equal(got, whole) {
			t.Fatalf("random pieces, run %d, differ from whole: %s", run, firstDifference(got, whole))
		}
	}
}

func firstDifference(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return "at " + strconv.Itoa(i) + ": got " + got[i] + ", want " + want[i]
		}
	}
	return "lengths " + strconv.Itoa(len(got)) + " and " + strconv.Itoa(len(want))
}

func TestLimitsFieldsCoverStruct(t *testing.T) {
	var l Limits
	if got, want := len(l.fields()), reflect.TypeOf(l).NumField(); got != want {
		t.Fatalf("Limits.fields lists %d limits, the struct has %d", got, want)
	}
	for i, f := range l.fields() {
		if name := reflect.TypeOf(l).Field(i).Name; f.name != name {
			t.Errorf("Limits.fields entry %d is %s, field is %s", i, f.name, name)
		}
	}
}

func TestLimitsDefaultsAndValidate(t *testing.T) {
	d := DefaultLimits()
	for _, f := range d.fields() {
		if *f.value <= 0 {
			t.Errorf("default %s is %d", f.name, *f.value)
		}
	}
	if got := (Limits{}).withDefaults(); got != d {
		t.Errorf("zero Limits with defaults = %+v, want %+v", got, d)
	}
	if got := (Limits{MaxMessage: 10}).withDefaults(); got.MaxMessage != 10 || got.MaxCBOR != d.MaxCBOR {
		t.Errorf("partial Limits with defaults = %+v", got)
	}
	if err := (Limits{}).Validate(); err != nil {
		t.Errorf("zero Limits: %v", err)
	}
	err := (Limits{MaxGroupID: -1}).Validate()
	if err == nil || !strings.Contains(err.Error(), "MaxGroupID") {
		t.Errorf("negative MaxGroupID: got %v, want an error naming it", err)
	}
	if d.MaxUserName != 256 || d.MaxMessage != 64<<10 || d.MaxCBOR != 256<<10 || d.MaxKeyBundle != 8<<10 ||
		d.MaxE2EEHeader != 1<<10 || d.MaxBatchBytes != 1<<20 || d.MaxBatchEntries != 1000 || d.RecvBuffer != 1<<20 {
		t.Errorf("defaults differ from the protocol's: %+v", d)
	}
}

func newSeededRand() *rand.Rand { return rand.New(rand.NewPCG(7, 11)) }
