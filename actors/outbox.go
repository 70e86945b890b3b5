package actors

import (
	"math/rand/v2"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/iris-im/iris/actors/irispb"
)

// outbox sends appends to shards on behalf of one actor (a session, a
// group) and keeps each until its reply comes. An append can be lost on the
// way when a router or shard crashes with it in its mailbox, or when a core
// dies, so an unanswered append is sent again, and the store's ordering
// gate (storage.OrderKey) keeps every target's appends in the order they
// were added: each carries the outbox's stream id and its position among
// the outbox's appends to that target. A reply of out_of_order means an
// earlier append to that target was lost; the outbox then resends all of
// that target's unanswered appends in order.
//
// An outbox is owned by one actor and is not safe for concurrent use.
type outbox struct {
	stream  uint64
	nextRef uint64
	sends   map[uint64]*pendingSend
	orders  map[string]*targetOrder
	stats   *Stats
}

// pendingSend is an append awaiting its reply. The envelope is kept so that
// it can be sent again.
type pendingSend struct {
	target string
	n      uint64 // position among the outbox's appends to target
	env    *irispb.Envelope
	sentAt time.Time
	tries  int
	meta   sendMeta
}

// sendMeta holds what the owner needs when the reply comes.
type sendMeta struct {
	v2  bool   // reply to the client with ACCEPTED or REJECTED
	cid uint64 // the client's id of a SEND2
}

// targetOrder numbers the appends of an outbox to one target.
type targetOrder struct {
	next     uint64          // N of the next append
	waiting  []uint64        // Ns awaiting a reply, ascending
	answered map[uint64]bool // Ns in waiting that have their reply
	resentAt time.Time       // last resend after an out_of_order reply
}

// Timing of resends. A reply normally takes one fsync, so these only fire
// when an actor on the path crashed with the request in its mailbox.
const (
	// First wait for a reply. It is long compared with a commit, because a
	// retry under load only adds work: one second was seen to resubmit
	// nearly every append of a burst.
	sendRetryAfter    = 5 * time.Second
	maxSendRetryAfter = 30 * time.Second // each further try waits twice as long, up to this
	resendGuard       = 100 * time.Millisecond
)

func newOutbox(stats *Stats) *outbox {
	// The maps are made at the first append, because most sessions of a
	// busy edge are idle and never send.
	return &outbox{stream: rand.Uint64(), stats: stats}
}

// base returns the lowest N still awaiting a reply, or the next N.
func (o *targetOrder) base() uint64 {
	if len(o.waiting) > 0 {
		return o.waiting[0]
	}
	return o.next
}

// answer records the reply of n and drops replied Ns from the front.
func (o *targetOrder) answer(n uint64) {
	o.answered[n] = true
	for len(o.waiting) > 0 && o.answered[o.waiting[0]] {
		delete(o.answered, o.waiting[0])
		o.waiting = o.waiting[1:]
	}
	if len(o.waiting) == 0 {
		o.waiting = nil // let a long burst's backing array go
	}
}

// add numbers req, records it and sends it with send. It returns the ref
// the reply will carry.
func (o *outbox) add(req *irispb.AppendRequest, meta sendMeta, send func(*irispb.Envelope)) uint64 {
	if o.sends == nil {
		o.sends = make(map[uint64]*pendingSend)
		o.orders = make(map[string]*targetOrder)
	}
	o.nextRef++
	req.Ref = o.nextRef

	order := o.orders[req.User]
	if order == nil {
		order = &targetOrder{next: 1, answered: make(map[uint64]bool)}
		o.orders[req.User] = order
	}
	n := order.next
	order.next++
	order.waiting = append(order.waiting, n)
	req.OrderStream, req.OrderN, req.OrderBase = o.stream, n, order.base()

	env := &irispb.Envelope{Version: 1, Body: &irispb.Envelope_Append{Append: req}}
	o.sends[req.Ref] = &pendingSend{target: req.User, n: n, env: env, sentAt: time.Now(), meta: meta}
	send(env)
	return req.Ref
}

// answer matches a reply to its append. It reports ok when the append has
// its final result; a reply to an unknown ref (a late duplicate) and an
// out_of_order reply, which makes the target's appends go again, are not.
func (o *outbox) answer(reply *irispb.AppendReply, send func(*irispb.Envelope)) (meta sendMeta, ok bool) {
	p, known := o.sends[reply.Ref]
	if !known {
		return sendMeta{}, false
	}
	if reply.Error == reasonOutOfOrder {
		o.resendTarget(p.target, send)
		return sendMeta{}, false
	}
	delete(o.sends, reply.Ref)
	// NB: a target's numbering is kept for the outbox's whole life. If it
	// restarted at 1, the store would take the new appends for repeats of
	// the first ones and drop them.
	o.orders[p.target].answer(p.n)
	return p.meta, true
}

// retryDue sends again, in add order, every append whose reply is overdue.
func (o *outbox) retryDue(now time.Time, send func(*irispb.Envelope)) {
	for _, ref := range o.refs() {
		p := o.sends[ref]
		wait := min(sendRetryAfter<<p.tries, maxSendRetryAfter)
		if now.Sub(p.sentAt) >= wait {
			o.resend(p, now, send)
		}
	}
}

// retryAll sends again, in add order, every append that awaits its reply.
// It runs when a node left the cluster, because the appends in flight to it
// are lost and waiting for their timeouts would stall the senders.
func (o *outbox) retryAll(now time.Time, send func(*irispb.Envelope)) {
	for _, ref := range o.refs() {
		o.resend(o.sends[ref], now, send)
	}
}

// resendTarget sends again, in order, every append to target that awaits
// its reply. Further out_of_order replies of the same burst are ignored for
// resendGuard, while the resent appends are on their way.
func (o *outbox) resendTarget(target string, send func(*irispb.Envelope)) {
	order := o.orders[target]
	now := time.Now()
	if order == nil || now.Sub(order.resentAt) < resendGuard {
		return
	}
	order.resentAt = now
	for _, ref := range o.refs() {
		if p := o.sends[ref]; p.target == target {
			o.resend(p, now, send)
		}
	}
}

// resend sends p again with the current base of its target's order. The
// envelope sent before may still be read by a local router or shard, since
// local actors receive the pointer, so the resent request is a new copy
// rather than the old one changed in place.
func (o *outbox) resend(p *pendingSend, now time.Time, send func(*irispb.Envelope)) {
	p.tries++
	p.sentAt = now
	req := proto.Clone(p.env.GetAppend()).(*irispb.AppendRequest)
	req.OrderBase = o.orders[p.target].base()
	p.env = &irispb.Envelope{Version: p.env.Version, Body: &irispb.Envelope_Append{Append: req}}
	o.stats.SendRetries.Add(1)
	send(p.env)
}

// refs returns the refs of unanswered appends in add order.
func (o *outbox) refs() []uint64 {
	refs := make([]uint64, 0, len(o.sends))
	for ref := range o.sends {
		refs = append(refs, ref)
	}
	slices.Sort(refs)
	return refs
}

// pending returns the number of unanswered appends.
func (o *outbox) pending() int { return len(o.sends) }
