package actors

import (
	"testing"
	"time"

	"github.com/iris-im/iris/actors/irispb"
)

// A resent append must not change the envelope sent before: a local router
// or shard may still be reading it, since local actors share the pointer.
func TestOutboxResendLeavesSentEnvelope(t *testing.T) {
	o := newOutbox(&Stats{})
	var sent []*irispb.Envelope
	send := func(env *irispb.Envelope) { sent = append(sent, env) }

	o.add(&irispb.AppendRequest{User: "bob", Body: []byte("one")}, sendMeta{}, send)
	o.add(&irispb.AppendRequest{User: "bob", Body: []byte("two")}, sendMeta{}, send)
	// The first append gets its reply, so the second one's order base moves on.
	first := sent[0].GetAppend()
	if _, ok := o.answer(&irispb.AppendReply{Ref: first.Ref, Seq: 1}, send); !ok {
		t.Fatal("answer of the first append not matched")
	}
	before := sent[1].GetAppend().OrderBase

	o.retryAll(time.Now(), send)

	if len(sent) != 3 {
		t.Fatalf("sent %d envelopes, want 3", len(sent))
	}
	if got := sent[1].GetAppend().OrderBase; got != before {
		t.Errorf("resend changed the envelope sent before: order base %d, was %d", got, before)
	}
	if sent[2] == sent[1] || sent[2].GetAppend() == sent[1].GetAppend() {
		t.Error("resend sent the same envelope again instead of a copy")
	}
	if got, want := sent[2].GetAppend().OrderBase, sent[2].GetAppend().OrderN; got != want {
		t.Errorf("resent order base = %d, want %d (the only unanswered append)", got, want)
	}
	if string(sent[2].GetAppend().Body) != "two" {
		t.Errorf("resent body %q, want two", sent[2].GetAppend().Body)
	}
}
