package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/iris-im/iris/config"
	"github.com/iris-im/iris/gateway/auth"
	"github.com/iris-im/iris/gateway/client"
)

func key(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

// uploadBundle uploads a bundle for c's user with prekeys one-time prekeys
// whose bytes are all first+i.
func uploadBundle(t *testing.T, c *client.Conn, first byte, prekeys int) {
	t.Helper()
	pool := make([][]byte, prekeys)
	for i := range pool {
		pool[i] = key(first+byte(i), 32)
	}
	bundle, err := cbor.Marshal(map[string]any{
		"identity_key":            key(1, 32),
		"signed_prekey":           key(2, 32),
		"signed_prekey_signature": key(3, 64),
		"one_time_prekeys":        pool,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := c.UploadPrekeys(ctx, bundle)
	if err != nil {
		t.Fatal(err)
	}
	var reply struct {
		Status string `cbor:"status"`
		Pool   int    `cbor:"one_time_prekeys"`
	}
	if err := cbor.Unmarshal(raw, &reply); err != nil || reply.Status != "ok" || reply.Pool != prekeys {
		t.Fatalf("upload reply %x = %+v, %v; want ok with a pool of %d", raw, reply, err, prekeys)
	}
}

type fetchReply struct {
	Status   string `cbor:"status"`
	Identity []byte `cbor:"identity_key"`
	OneTime  []byte `cbor:"one_time_prekey"`
	Left     int    `cbor:"one_time_prekeys_left"`
}

func fetchBundle(t *testing.T, c *client.Conn, user string) fetchReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, err := c.FetchPrekeys(ctx, user)
	if err != nil {
		t.Errorf("fetch: %v", err)
		return fetchReply{}
	}
	var r fetchReply
	if err := cbor.Unmarshal(raw, &r); err != nil {
		t.Errorf("fetch reply %x: %v", raw, err)
	}
	return r
}

func TestE2EEExchangeOnlineAndOffline(t *testing.T) {
	n := startNode(t, nil)
	alice := login(t, n, "tcp", "alice")
	uploadBundle(t, alice, 10, 1)
	bob := login2(t, n, "bob")
	uploadBundle(t, bob, 20, 1)

	if got := fetchBundle(t, alice, "bob"); got.Status != "ok" || !bytes.Equal(got.OneTime, key(20, 32)) {
		t.Fatalf("alice fetched %+v, want bob's prekey", got)
	}
	header, cipher := []byte{0xa1, 0x61, 0x76, 0x01}, []byte("sealed bytes \x00\xff")

	// bob (v2) online gets a DELIVER of kind 0x24 with the bytes unchanged.
	if err := alice.SendE2EE("bob", header, cipher); err != nil {
		t.Fatal(err)
	}
	f := expect(t, bob, client.OpDeliver)
	inner, err := client.ParseFrame(append([]byte{byte(f.Kind)}, f.Msg...))
	if err != nil || f.Kind != client.OpE2EEDeliver || inner.Sender != "alice" || !bytes.Equal(inner.Header, header) || !bytes.Equal(inner.Cipher, cipher) {
		t.Fatalf("bob got kind %v %+v (%v), want alice's E2EE frame unchanged", f.Kind, inner, err)
	}

	// carol (v1) is offline when it is sent and gets it at login.
	if err := bob.SendE2EE("carol", header, cipher); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let the append reach the inbox before carol exists
	carol := login(t, n, "ws", "carol")
	outer := expect(t, carol, client.OpReliable)
	inner, err = client.ParseFrame(outer.Msg)
	if err != nil || inner.Op != client.OpE2EEDeliver || inner.Sender != "bob" || !bytes.Equal(inner.Header, header) || !bytes.Equal(inner.Cipher, cipher) {
		t.Fatalf("carol got %+v (%v), want bob's E2EE frame unchanged", inner, err)
	}
}

func TestConcurrentFetchesNeverRepeatPrekey(t *testing.T) {
	n := startNode(t, nil)
	owner := login(t, n, "tcp", "owner")
	uploadBundle(t, owner, 100, 60)

	var mu sync.Mutex
	seen := map[string]int{}
	empty := 0
	var wg sync.WaitGroup
	for i := range 100 {
		c := login(t, n, "tcp", fmt.Sprintf("fetcher%d", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := fetchBundle(t, c, "owner")
			mu.Lock()
			defer mu.Unlock()
			if r.OneTime == nil {
				empty++
				return
			}
			seen[string(r.OneTime)]++
		}()
	}
	wg.Wait()

	if len(seen) != 60 || empty != 40 {
		t.Fatalf("%d distinct prekeys and %d empty replies, want 60 and 40", len(seen), empty)
	}
	for k, times := range seen {
		if times != 1 {
			t.Errorf("prekey %x handed out %d times", k[:4], times)
		}
	}
	if got := fetchBundle(t, owner, "nobody"); got.Status != "not_found" {
		t.Errorf("fetch of a user without a bundle = %+v, want not_found", got)
	}
}

func TestGroupOfFive(t *testing.T) {
	n := startNode(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	names := []string{"ann", "ben", "cat", "dan", "eve"}
	members := map[string]*client.Conn{}
	for _, name := range names[:4] {
		members[name] = login(t, n, "tcp", name)
	}
	ann := members["ann"]

	gid, err := ann.CreateGroup(ctx, "five")
	if err != nil {
		t.Fatal(err)
	}
	joined := []string{"ann"}
	for _, name := range names[1:] {
		if err := ann.AddGroupMember(gid, name); err != nil {
			t.Fatal(err)
		}
		joined = append(joined, name)
		for _, member := range joined { // every live member hears of the new one
			c, online := members[member]
			if !online {
				continue
			}
			if f := expect(t, c, client.OpGroupMember); f.Group != gid || f.User != name {
				t.Fatalf("%s got %v, want %s added", c.User(), f, name)
			}
		}
	}

	// eve is offline. ben sends; the three others online get it once,
	// named as ben's, and eve gets it at login.
	if err := members["ben"].SendGroup(gid, []byte("h"), []byte("to all")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ann", "cat", "dan"} {
		expectGroupMessage(t, members[name], gid, "ben", "to all")
	}
	eve := login(t, n, "tcp", "eve")
	expectGroupMessage(t, eve, gid, "ben", "to all")
	members["eve"] = eve

	// A non-member is rejected.
	outsider := login(t, n, "tcp", "zed")
	if err := outsider.SendGroup(gid, []byte("h"), []byte("let me in")); err != nil {
		t.Fatal(err)
	}
	if f := expect(t, outsider, client.OpError); f.Reason != "not_a_member" {
		t.Fatalf("outsider got %v, want not_a_member", f)
	}

	raw, err := eve.GroupRoster(ctx, gid)
	if err != nil {
		t.Fatal(err)
	}
	var roster []string
	if err := cbor.Unmarshal(raw, &roster); err != nil {
		t.Fatal(err)
	}
	slices.Sort(roster)
	if !slices.Equal(roster, names) {
		t.Fatalf("roster = %v, want %v", roster, names)
	}

	// dan leaves and stops receiving; the others still get messages.
	if err := members["dan"].LeaveGroup(ctx, gid); err != nil {
		t.Fatal(err)
	}
	if err := members["cat"].SendGroup(gid, []byte("h"), []byte("after dan")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ann", "ben", "eve"} {
		expectGroupMessage(t, members[name], gid, "cat", "after dan")
	}
	quiet, cancelQuiet := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancelQuiet()
	if f, err := members["dan"].Next(quiet); err == nil {
		t.Fatalf("dan got %v after leaving", f)
	}
	if err := members["dan"].SendGroup(gid, []byte("h"), []byte("still here?")); err != nil {
		t.Fatal(err)
	}
	if f := expect(t, members["dan"], client.OpError); f.Reason != "not_a_member" {
		t.Fatalf("dan's send after leaving got %v, want not_a_member", f)
	}
}

// expectGroupMessage waits for a v1 delivery of a group message and acks it.
func expectGroupMessage(t *testing.T, c *client.Conn, gid, sender, cipher string) {
	t.Helper()
	outer := expect(t, c, client.OpReliable)
	inner, err := client.ParseFrame(outer.Msg)
	if err != nil || inner.Op != client.OpGroupDeliver || inner.Group != gid || inner.Sender != sender || string(inner.Cipher) != cipher {
		t.Fatalf("%s got %+v (%v), want %q from %s in %s", c.User(), inner, err, cipher, sender, gid)
	}
	if err := c.Ack(outer.ID); err != nil {
		t.Fatal(err)
	}
}

func TestTypingAndReceiptReachOtherConnection(t *testing.T) {
	n := startNode(t, nil)
	alice := login(t, n, "tcp", "alice")
	bob := login(t, n, "ws", "bob")

	if err := alice.TypingStart("bob"); err != nil {
		t.Fatal(err)
	}
	if f := expect(t, bob, client.OpTyping); f.Sender != "alice" || f.State != 1 {
		t.Fatalf("bob got %v, want alice typing", f)
	}
	if err := alice.Send("bob", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	msg := expect(t, bob, client.OpReliable)
	if err := bob.ReadReceipt(msg.ID, "alice"); err != nil {
		t.Fatal(err)
	}
	r := expect(t, alice, client.OpReceiptNotice)
	if !bytes.Equal(r.ID, msg.ID) || r.User != "bob" {
		t.Fatalf("alice got %v, want bob's receipt of %x", r, msg.ID)
	}
}

func TestFastSenderIsRateLimited(t *testing.T) {
	n := startNode(t, nil) // default limits: 100/s, burst 500
	flood := login(t, n, "tcp", "flood")
	sink := login(t, n, "tcp", "sink")
	other := login(t, n, "tcp", "other")
	friend := login(t, n, "tcp", "friend")

	for i := range 1000 {
		if err := flood.Send("sink", fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// While the server handles the flood, another pair is not slowed down.
	start := time.Now()
	if err := other.Send("friend", []byte("unaffected")); err != nil {
		t.Fatal(err)
	}
	expect(t, friend, client.OpReliable)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("another user's message took %v during the flood", d)
	}

	limited := 0
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for {
		f, err := flood.Next(ctx)
		if err != nil {
			break
		}
		if f.Op == client.OpRateLimited {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("1000 sends at once got no RATE_LIMITED frame")
	}

	// Every send that was not refused arrives, in order.
	want := 1000 - limited
	last := -1
	for got := 0; got < want; got++ {
		f := expect(t, sink, client.OpReliable)
		var i int
		fmt.Sscan(string(f.Msg), &i)
		if i <= last {
			t.Fatalf("delivery %q after %d: out of order", f.Msg, last)
		}
		last = i
		_ = sink.Ack(f.ID)
	}
	if n.Stats.RateLimited.Load() != uint64(limited) {
		t.Errorf("rate_limited counter = %d, want %d", n.Stats.RateLimited.Load(), limited)
	}
}

func TestOverloadShedsInOrder(t *testing.T) {
	n := startNode(t, nil)
	defer n.overload.Force(-1)
	alice := login(t, n, "tcp", "alice")
	bob := login(t, n, "tcp", "bob")

	// checkLevel sends one of each optional frame and a message, and
	// reports which optional ones got through.
	checkLevel := func(level int) (typing, status, receipt bool) {
		t.Helper()
		n.overload.Force(level)
		if err := alice.TypingStart("bob"); err != nil {
			t.Fatal(err)
		}
		if err := alice.Send("bob", fmt.Appendf(nil, "level %d", level)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var msg client.Frame
		for msg.Op != client.OpReliable {
			f, err := bob.Next(ctx)
			if err != nil {
				t.Fatalf("level %d: the message was not delivered: %v", level, err)
			}
			if f.Op == client.OpTyping {
				typing = true
			}
			if f.Op == client.OpReliable {
				msg = f
			}
		}
		if err := bob.Ack(msg.ID); err != nil {
			t.Fatal(err)
		}
		_, err := alice.GetStatus(ctx, "bob")
		status = err == nil
		if err := bob.ReadReceipt(msg.ID, "alice"); err != nil {
			t.Fatal(err)
		}
		quick, cancelQuick := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancelQuick()
		_, err = alice.Expect(quick, client.OpReceiptNotice)
		receipt = err == nil
		return typing, status, receipt
	}

	for level, want := range [][3]bool{{true, true, true}, {false, true, true}, {false, false, true}, {false, false, false}} {
		typing, status, receipt := checkLevel(level)
		if got := [3]bool{typing, status, receipt}; got != want {
			t.Errorf("level %d: typing, status, receipt passed = %v, want %v", level, got, want)
		}
	}
	if n.Stats.TypingShed.Load() != 3 || n.Stats.StatusShed.Load() != 2 || n.Stats.ReceiptShed.Load() != 1 {
		t.Errorf("shed counters typing %d, status %d, receipts %d; want 3, 2, 1",
			n.Stats.TypingShed.Load(), n.Stats.StatusShed.Load(), n.Stats.ReceiptShed.Load())
	}
}

func TestRepeatedFailedLoginsBlockAccount(t *testing.T) {
	secret := "0123456789abcdef0123456789abcdef"
	n := startNode(t, func(c *config.Config) {
		c.Auth.Required = true
		c.Auth.JWTSecret = config.Secret(secret)
		c.Limits.LoginFailures = 3
		c.Limits.LoginFailureWindow = time.Minute
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	attempt := func(token string) error {
		c, err := client.Dial(ctx, "tcp", n.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LoginToken(ctx, "mallory", token)
	}
	for i := range 3 {
		if err := attempt("not-a-token"); err == nil {
			t.Fatalf("attempt %d with a bad token logged in", i)
		}
	}
	good, err := auth.Sign([]byte(secret), "", "mallory", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	err = attempt(good)
	var serverErr *client.ServerError
	if !errors.As(err, &serverErr) || serverErr.Reason != "too_many_login_failures" {
		t.Fatalf("login with a valid token after 3 failures = %v, want too_many_login_failures", err)
	}
	if n.Stats.LoginsBlocked.Load() != 1 {
		t.Errorf("logins_blocked = %d, want 1", n.Stats.LoginsBlocked.Load())
	}
}

func TestConnectionRateLimitedPerIP(t *testing.T) {
	n := startNode(t, func(c *config.Config) {
		c.Limits.ConnRate = 1
		c.Limits.ConnBurst = 3
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 3 {
		c, err := client.Dial(ctx, "tcp", n.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Login(ctx, fmt.Sprintf("u%d", i)); err != nil {
			t.Fatalf("connection %d within the burst: %v", i, err)
		}
		defer c.Close()
	}
	c, err := client.Dial(ctx, "tcp", n.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	frames, err := c.ExpectClosed(ctx)
	if err != nil || len(frames) != 1 || frames[0].Reason != "too_many_connections" {
		t.Fatalf("fourth connection got %v, %v; want too_many_connections and a close", frames, err)
	}
	if n.Stats.ConnRejected.Load() != 1 {
		t.Errorf("conn_rejected = %d, want 1", n.Stats.ConnRejected.Load())
	}
}

func TestRepeatedAddIsAnswered(t *testing.T) {
	n := startNode(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ann := login(t, n, "tcp", "ann")
	ben := login(t, n, "tcp", "ben")
	gid, err := ann.CreateGroup(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := ann.AddGroupMember(gid, "ben"); err != nil {
			t.Fatal(err)
		}
		if f := expect(t, ann, client.OpGroupMember); f.User != "ben" {
			t.Fatalf("ann got %v, want ben's membership", f)
		}
	}
	expect(t, ben, client.OpGroupMember) // notified once, when added
	quiet, cancelQuiet := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancelQuiet()
	if f, err := ben.Next(quiet); err == nil {
		t.Fatalf("ben was told again: %v", f)
	}
}

func TestCBORMessageWithDuplicateKeysRejected(t *testing.T) {
	n := startNode(t, nil)
	alice := login(t, n, "tcp", "alice")
	if err := alice.SendCBOR("bob", []byte{0xa2, 0x61, 0x74, 0x01, 0x61, 0x74, 0x02}); err != nil {
		t.Fatal(err)
	}
	if f := expect(t, alice, client.OpError); f.Reason != "invalid_cbor" {
		t.Fatalf("duplicate keys got %v, want invalid_cbor", f)
	}
	if err := alice.SendCBOR("bob", []byte{0xa1, 0x61, 0x74, 0x01}); err != nil {
		t.Fatal(err)
	}
	bob := login(t, n, "tcp", "bob")
	if f := expect(t, bob, client.OpReliable); !bytes.Equal(f.Msg, []byte{0xa1, 0x61, 0x74, 0x01}) {
		t.Fatalf("bob got %x, want the valid map unchanged", f.Msg)
	}
}

func TestPrekeyFetchesAreRateLimited(t *testing.T) {
	n := startNode(t, func(c *config.Config) {
		c.Limits.SendRate = 1
		c.Limits.SendBurst = 2
	})
	kim := login(t, n, "tcp", "kim")
	uploadBundle(t, kim, 50, 5)
	lee := login(t, n, "tcp", "lee")
	for range 2 {
		if r := fetchBundle(t, lee, "kim"); r.OneTime == nil {
			t.Fatal("fetch within the burst got no prekey")
		}
	}
	if err := lee.WriteRaw([]byte{0x21, 0, 3, 'k', 'i', 'm'}); err != nil {
		t.Fatal(err)
	}
	expect(t, lee, client.OpRateLimited)
}

func TestKeyUploadErrorReasons(t *testing.T) {
	n := startNode(t, nil)
	kim := login(t, n, "tcp", "kim")
	bad, err := cbor.Marshal(map[string]any{"identity_key": key(1, 31), "signed_prekey": key(2, 32), "signed_prekey_signature": key(3, 64)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := kim.UploadPrekeys(ctx, bad)
	if err != nil {
		t.Fatal(err)
	}
	var reply struct {
		Status string `cbor:"status"`
		Reason string `cbor:"reason"`
	}
	if err := cbor.Unmarshal(raw, &reply); err != nil || reply.Status != "error" || reply.Reason != "invalid_key_size" {
		t.Fatalf("reply %+v (%v), want error invalid_key_size", reply, err)
	}
}

func TestGroupChangesCostTokens(t *testing.T) {
	n := startNode(t, func(c *config.Config) {
		c.Limits.SendRate = 1
		c.Limits.SendBurst = 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ann := login(t, n, "tcp", "ann")
	if _, err := ann.CreateGroup(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	if err := ann.WriteRaw([]byte{0x30, 0, 3, 't', 'w', 'o'}); err != nil {
		t.Fatal(err)
	}
	expect(t, ann, client.OpRateLimited)
}

// Anyone can name any group, so the grain of a group that does not exist
// must stop after its reply. Grains kept for made-up names would fill the
// node's memory.
func TestMadeUpGroupsLeaveNoGrains(t *testing.T) {
	const count = 300
	n := startNode(t, func(c *config.Config) {
		c.Limits.SendRate = 1_000_000
		c.Limits.SendBurst = 1_000_000
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mallory := login(t, n, "tcp", "mallory")

	var frames []byte
	for i := range count {
		frames, _ = client.AppendGroupRosterGet(frames, fmt.Sprintf("made-up-%d", i))
		gid := fmt.Sprintf("made-up-leave-%d", i)
		frames = append(frames, 0x32, 0, byte(len(gid)))
		frames = append(frames, gid...)
	}
	if err := mallory.WriteRaw(frames); err != nil {
		t.Fatal(err)
	}
	for i := range 2 * count {
		f, err := mallory.Expect(ctx, client.OpError)
		if err != nil {
			t.Fatalf("after %d answers of %d: %v", i, 2*count, err)
		}
		if f.Reason != "group_not_found" {
			t.Fatalf("answer %d = %q, want group_not_found", i, f.Reason)
		}
	}
	eventually(t, 10*time.Second, "the made-up groups' grains to stop", func() bool {
		return n.Stats.Actors.Group.Live() == 0
	})

	// A real group keeps working, and so does its grain.
	if _, err := mallory.CreateGroup(ctx, "real"); err != nil {
		t.Fatal(err)
	}
	if got := n.Stats.Actors.Group.Live(); got != 1 {
		t.Errorf("live group grains after one create = %d, want 1", got)
	}
}

// Deliveries that reach a session while it is busy leave in shared writes:
// one system call per frame cost more than the rest of a delivery.
func TestBurstOfDeliveriesSharesWrites(t *testing.T) {
	const count = 500
	n := startNode(t, func(c *config.Config) {
		c.Limits.SendRate = 1_000_000
		c.Limits.SendBurst = 1_000_000
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bob := login2(t, n, "bob")
	alice := login2(t, n, "alice")

	before := n.Stats.Writes.Load()
	var frames []byte
	for cid := range uint64(count) {
		var err error
		if frames, err = client.AppendSend2(frames, cid+1, "bob", []byte("burst")); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice.WriteRaw(frames); err != nil {
		t.Fatal(err)
	}
	for i := range count {
		if _, err := alice.Expect(ctx, client.OpAccepted); err != nil {
			t.Fatalf("ACCEPTED %d of %d: %v", i+1, count, err)
		}
		if _, err := bob.Expect(ctx, client.OpDeliver); err != nil {
			t.Fatalf("DELIVER %d of %d: %v", i+1, count, err)
		}
	}
	// One write per frame would be 2*count: an ACCEPTED for alice and a
	// DELIVER for bob per message.
	if writes := n.Stats.Writes.Load() - before; writes > count {
		t.Errorf("%d messages took %d writes, want at most %d", count, writes, count)
	}
}
