package main

// End-to-end tests of the admin pages in headless Chromium: the dashboard
// (GET /) under a short load of real clients, and two chat pages (GET /chat)
// talking to each other through the server. The element ids and data
// attributes they read are the pages' contract with these tests.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/iris-im/iris/gateway/client"
)

// loadSendInterval paces each sender of the dashboard load: 50 messages per
// second, half the default per-user send rate limit of 100 per second.
const loadSendInterval = 20 * time.Millisecond

func TestDashboardInBrowser(t *testing.T) {
	b := startBrowser(t)
	s := startServer(t)
	waitForAdmin(t, s)
	stats := fetchStats(t, s)

	tab, _ := b.newTab()
	started := time.Now()
	navigate(t, tab, "http://"+s.adminAddr+"/")
	waitFor(t, tab, "the first update from /events", `document.body.dataset.live === "1"`, 10*time.Second)
	t.Logf("dashboard live %v after navigation", time.Since(started).Round(time.Millisecond))

	if node := elementText(t, tab, "#node"); node != stats.Node {
		t.Errorf("#node = %q, /stats reports node %q", node, stats.Node)
	}
	if role := elementText(t, tab, "#role"); role != stats.Role {
		t.Errorf("#role = %q, /stats reports role %q", role, stats.Role)
	}
	waitFor(t, tab, "#sessions to show 0 before the load", textIs("#sessions", "0"), 5*time.Second)
	updatesBefore := elementNumber(t, tab, "#updates")

	// Two v2 pairs over TCP and two v1 pairs over WebSocket, so that
	// #sessions must add up both transports.
	load := startLoad(t, s, []dashboardPairSpec{
		{transport: client.TransportTCP, protocol: 2},
		{transport: client.TransportTCP, protocol: 2},
		{transport: client.TransportWebSocket, protocol: 1},
		{transport: client.TransportWebSocket, protocol: 1},
	})
	sessions := 2 * len(load.pairs)
	loadStarted := time.Now()

	waitFor(t, tab, fmt.Sprintf("#sessions to show the load's %d sessions", sessions),
		textIs("#sessions", strconv.Itoa(sessions)), 10*time.Second)
	// The load's own check: /stats counts its 4 TCP and 4 WebSocket sessions.
	if during := fetchStats(t, s); during.Sessions.TCP != 4 || during.Sessions.WS != 4 {
		t.Errorf("/stats sessions during the load = %+v, want the load's 4 tcp and 4 ws", during.Sessions)
	}
	waitFor(t, tab, "#rate-in above 0", numberAbove("#rate-in", 0), 10*time.Second)
	waitFor(t, tab, "#rate-out above 0", numberAbove("#rate-out", 0), 10*time.Second)
	waitFor(t, tab, "#updates to grow by 2 during the load",
		numberAbove("#updates", updatesBefore+1), 10*time.Second)

	// The load sends at most this many messages per second, so a rate far
	// above it would be a total count or a wrong unit.
	maxRate := float64(len(load.pairs)) * float64(time.Second/loadSendInterval)
	if rateIn := elementNumber(t, tab, "#rate-in"); rateIn > 2*maxRate {
		t.Errorf("#rate-in = %v during a load of at most %v messages/s", rateIn, maxRate)
	}
	if rateOut := elementNumber(t, tab, "#rate-out"); rateOut > 2*maxRate {
		t.Errorf("#rate-out = %v during a load of at most %v deliveries/s", rateOut, maxRate)
	}
	saveScreenshot(t, tab, "under-load")
	load.stop(t)
	t.Logf("load ran %v: %d sent, %d delivered", time.Since(loadStarted).Round(time.Millisecond),
		load.sent.Load(), load.delivered.Load())

	waitFor(t, tab, "#sessions back to 0 after the load closed its connections",
		textIs("#sessions", "0"), 10*time.Second)
	waitFor(t, tab, "#rate-in and #rate-out back to 0 after the load",
		numberIs("#rate-in", 0)+" && "+numberIs("#rate-out", 0), 10*time.Second)
}

func TestChatInBrowser(t *testing.T) {
	b := startBrowser(t)
	browserStarted := time.Now()
	s := startServer(t)
	waitForAdmin(t, s)
	checkChatConfig(t, s)

	chatURL := func(user, target string) string {
		return fmt.Sprintf("http://%s/chat?user=%s&target=%s&autologin=1", s.adminAddr, user, target)
	}
	alice, _ := b.newTab()
	bob, closeBob := b.newTab()
	navigate(t, alice, chatURL("alice", "bob"))
	navigate(t, bob, chatURL("bob", "alice"))

	// Autologin with the prefilled inputs.
	for _, page := range []struct {
		tab          context.Context
		user, target string
	}{{alice, "alice", "bob"}, {bob, "bob", "alice"}} {
		waitFor(t, page.tab, page.user+"'s #state to become online", textIs("#state", "online"), 10*time.Second)
		if user := evaluate[string](t, page.tab, `document.querySelector("#user").value`); user != page.user {
			t.Errorf("%s's #user = %q, want %q from the query string", page.user, user, page.user)
		}
		if target := evaluate[string](t, page.tab, `document.querySelector("#target").value`); target != page.target {
			t.Errorf("%s's #target = %q, want %q from the query string", page.user, target, page.target)
		}
	}
	waitFor(t, alice, "alice's #presence to show bob online", textIs("#presence", "online"), 15*time.Second)
	waitFor(t, bob, "bob's #presence to show alice online", textIs("#presence", "online"), 15*time.Second)
	t.Logf("both pages online, each showing the other online, %v after the browser started", time.Since(browserStarted).Round(time.Millisecond))
	evaluate[bool](t, alice, recordOutStates)

	// First message: typed and sent with the button while bob is online.
	const first = "hello bob, this is the first message"
	runAction(t, alice, "typing into #text", chromedp.SendKeys(chromedp.CSS("#text"), first))
	runAction(t, alice, "clicking #send", chromedp.Click(chromedp.CSS("#send")))

	waitFor(t, bob, "the first message in bob's #log", entryCount("in", first)+" === 1", 10*time.Second)
	waitFor(t, alice, "alice's first message to be read", entryState("out", first)+` === "read"`, 10*time.Second)
	checkStateOrder(t, alice, first)
	firstSeq := entrySeq(t, alice, "out", first)
	if seq := entrySeq(t, bob, "in", first); seq != firstSeq {
		t.Errorf("bob's entry of the first message has data-seq %d, alice's has %d", seq, firstSeq)
	}
	saveScreenshot(t, bob, "bob-online")

	// Bob leaves: his page closes, and alice's page shows him offline.
	closeBob()
	closed := time.Now()
	waitFor(t, alice, "alice's #presence to show bob offline",
		`(() => { const p = document.querySelector("#presence").textContent.trim(); return p === "offline" || p.startsWith("last seen"); })()`,
		15*time.Second)
	t.Logf("alice's page showed bob offline %v after his page closed", time.Since(closed).Round(time.Millisecond))

	// Second message: sent with Enter while bob is offline, so it waits in
	// his inbox.
	const second = "second message, sent while bob is offline"
	runAction(t, alice, "typing into #text and pressing Enter", chromedp.SendKeys(chromedp.CSS("#text"), second+"\n"))
	waitFor(t, alice, "alice's second message to be accepted", entryState("out", second)+` === "accepted"`, 10*time.Second)

	// Bob comes back: the second message arrives from his inbox, once, and
	// the first, which his old page acknowledged, does not come again.
	bob, _ = b.newTab()
	navigate(t, bob, chatURL("bob", "alice"))
	waitFor(t, bob, "bob's new page to become online", textIs("#state", "online"), 10*time.Second)
	waitFor(t, bob, "the second message in bob's new #log", entryCount("in", second)+" >= 1", 10*time.Second)
	waitFor(t, alice, "alice's second message to be read", entryState("out", second)+` === "read"`, 10*time.Second)
	checkStateOrder(t, alice, second)

	secondSeq := entrySeq(t, alice, "out", second)
	if secondSeq <= firstSeq {
		t.Errorf("the second message has data-seq %d, not above the first's %d", secondSeq, firstSeq)
	}
	if seq := entrySeq(t, bob, "in", second); seq != secondSeq {
		t.Errorf("bob's entry of the second message has data-seq %d, alice's has %d", seq, secondSeq)
	}
	for _, c := range []struct {
		tab       context.Context
		page, dir string
		text      string
		want      int
	}{
		{alice, "alice's", "out", first, 1},
		{alice, "alice's", "out", second, 1},
		{bob, "bob's new", "in", second, 1},
		{bob, "bob's new", "in", first, 0},
	} {
		if n := evaluate[int](t, c.tab, entryCount(c.dir, c.text)); n != c.want {
			t.Errorf("%s #log has %d %q entries of %q, want %d", c.page, n, c.dir, c.text, c.want)
		}
	}
	saveScreenshot(t, alice, "alice")
	saveScreenshot(t, bob, "bob-back")
}

// statsView is the part of the /stats JSON that these tests compare with
// the dashboard.
type statsView struct {
	Node     string `json:"node"`
	Role     string `json:"role"`
	Sessions struct {
		TCP int `json:"tcp"`
		WS  int `json:"ws"`
	} `json:"sessions"`
}

// waitForAdmin waits until the admin listener returns 200 for /healthz,
// because startServer waits only for the client listeners.
func waitForAdmin(t *testing.T, s *testServer) {
	t.Helper()
	httpClient := &http.Client{Timeout: time.Second}
	ready := eventually(10*time.Second, func() bool {
		resp, err := httpClient.Get("http://" + s.adminAddr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !ready {
		t.Fatalf("the admin server at %s did not answer /healthz within 10 s", s.adminAddr)
	}
}

func fetchStats(t *testing.T, s *testServer) statsView {
	t.Helper()
	var stats statsView
	getJSON(t, "http://"+s.adminAddr+"/stats", &stats)
	return stats
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	httpClient := &http.Client{Timeout: 5 * time.Second}
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: decoding the JSON body: %v", url, err)
	}
}

// checkChatConfig checks that /chat/config.json points the chat page at the
// server's WebSocket listener.
func checkChatConfig(t *testing.T, s *testServer) {
	t.Helper()
	var config struct {
		WSPort int    `json:"ws_port"`
		WSPath string `json:"ws_path"`
		TLS    bool   `json:"tls"`
	}
	getJSON(t, "http://"+s.adminAddr+"/chat/config.json", &config)

	_, port, err := net.SplitHostPort(s.wsAddr)
	if err != nil {
		t.Fatal(err)
	}
	if strconv.Itoa(config.WSPort) != port || config.WSPath != "/ws" || config.TLS {
		t.Errorf("/chat/config.json = %+v, want ws_port %s, ws_path /ws and tls false", config, port)
	}
}

// textIs returns a JavaScript condition: the trimmed text of the element
// that selector finds is want.
func textIs(selector, want string) string {
	return fmt.Sprintf(`(() => { const e = document.querySelector(%s); return !!e && e.textContent.trim() === %s; })()`,
		jsString(selector), jsString(want))
}

// numberAbove returns a JavaScript condition: the element that selector finds
// contains a plain number above floor.
func numberAbove(selector string, floor float64) string {
	return fmt.Sprintf(`(() => { const e = document.querySelector(%s); if (!e) return false; const t = e.textContent.trim(); return t !== "" && Number(t) > %v; })()`,
		jsString(selector), floor)
}

// numberIs returns a JavaScript condition: the element that selector finds
// contains a plain number equal to want.
func numberIs(selector string, want float64) string {
	return fmt.Sprintf(`(() => { const e = document.querySelector(%s); if (!e) return false; const t = e.textContent.trim(); return t !== "" && Number(t) === %v; })()`,
		jsString(selector), want)
}

// entries returns a JavaScript expression: the li.msg entries of #log in
// direction dir ("in" or "out") whose .text is text.
func entries(dir, text string) string {
	return fmt.Sprintf(`Array.from(document.querySelectorAll('#log li.msg[data-dir=%s]')).filter(li => { const t = li.querySelector(".text"); return !!t && t.textContent === %s; })`,
		jsString(dir), jsString(text))
}

func entryCount(dir, text string) string {
	return entries(dir, text) + ".length"
}

// entryState returns a JavaScript expression: the data-state of the first
// matching entry, or null when there is none.
func entryState(dir, text string) string {
	return fmt.Sprintf(`((list) => list.length ? list[0].dataset.state : null)(%s)`, entries(dir, text))
}

// entrySeq returns the data-seq of the only entry of #log in direction dir
// with text.
func entrySeq(t *testing.T, tab context.Context, dir, text string) uint64 {
	t.Helper()
	raw := evaluate[*string](t, tab, fmt.Sprintf(
		`((list) => list.length === 1 ? (list[0].dataset.seq || "") : null)(%s)`, entries(dir, text)))
	if raw == nil {
		t.Fatalf("#log has no single %q entry of %q", dir, text)
	}
	seq, err := strconv.ParseUint(*raw, 10, 64)
	if err != nil || seq == 0 {
		t.Fatalf("the %q entry of %q has data-seq %q, want an inbox seq", dir, text, *raw)
	}
	return seq
}

// recordOutStates is a JavaScript program that watches #log and records, for
// each outgoing message text, the data-state values its entry goes through.
// A state can last a few milliseconds only, too short to be polled.
const recordOutStates = `(() => {
	const states = window.irisTestStates = {};
	const note = (li) => {
		const text = li.querySelector(".text");
		if (li.dataset.dir !== "out" || !text) return;
		const list = states[text.textContent] || (states[text.textContent] = []);
		if (list[list.length - 1] !== li.dataset.state) list.push(li.dataset.state);
	};
	new MutationObserver((records) => {
		for (const r of records) {
			if (r.type === "attributes") {
				if (r.target.matches("li.msg")) note(r.target);
				continue;
			}
			for (const n of r.addedNodes) {
				if (n.nodeType !== Node.ELEMENT_NODE) continue;
				if (n.matches("li.msg")) note(n);
				n.querySelectorAll("li.msg").forEach(note);
			}
		}
	}).observe(document.querySelector("#log"), {childList: true, subtree: true, attributes: true, attributeFilter: ["data-state"]});
	return true;
})()`

// checkStateOrder checks that the outgoing entry of text went through
// "accepted" before "read", and never "rejected".
func checkStateOrder(t *testing.T, tab context.Context, text string) {
	t.Helper()
	states := evaluate[[]string](t, tab, fmt.Sprintf(`(window.irisTestStates || {})[%s] || []`, jsString(text)))
	t.Logf("states of the entry of %q: %v", text, states)
	accepted, read := -1, -1
	for i, state := range states {
		switch state {
		case "accepted":
			accepted = i
		case "read":
			read = i
		case "rejected":
			t.Errorf("the entry of %q was rejected (states: %v)", text, states)
		}
	}
	if accepted < 0 || read < accepted || read != len(states)-1 {
		t.Errorf("the entry of %q went through the states %v, want accepted and then read", text, states)
	}
}

// dashboardPairSpec is how one pair of the dashboard load connects.
type dashboardPairSpec struct {
	transport string // client.TransportTCP or client.TransportWebSocket
	protocol  int    // 1 (SEND, ACK) or 2 (SEND2, ACK2)
}

// dashboardPair is one sender and one receiver of the dashboard load.
type dashboardPair struct {
	dashboardPairSpec
	sender, receiver *client.Conn
	delivered        atomic.Int64
}

// dashboardLoad is a steady load of logged-in client pairs: each sender sends to
// its receiver every loadSendInterval until stop, and each receiver
// acknowledges what it receives.
type dashboardLoad struct {
	pairs           []*dashboardPair
	sent, delivered atomic.Int64

	stopping chan struct{}
	haltOnce sync.Once
	senders  sync.WaitGroup
	readers  sync.WaitGroup
}

// startLoad logs in every pair and starts sending.
func startLoad(t *testing.T, s *testServer, specs []dashboardPairSpec) *dashboardLoad {
	t.Helper()
	load := &dashboardLoad{stopping: make(chan struct{})}
	for i, spec := range specs {
		p := &dashboardPair{dashboardPairSpec: spec}
		senderName := fmt.Sprintf("load-sender-%d", i)
		receiverName := fmt.Sprintf("load-receiver-%d", i)
		if p.protocol == 2 {
			p.sender = s.login2(t, p.transport, senderName)
			p.receiver = s.login2(t, p.transport, receiverName)
		} else {
			p.sender = s.login(t, p.transport, senderName)
			p.receiver = s.login(t, p.transport, receiverName)
		}
		load.pairs = append(load.pairs, p)
	}

	// A test that fails before stop still ends its load here. Cleanups run
	// last in first out, so this one runs before the connections close.
	t.Cleanup(load.halt)
	for _, p := range load.pairs {
		load.senders.Add(1)
		go load.send(t, p, p.receiver.User())
		load.readers.Add(1)
		go load.receive(t, p)
		if p.protocol == 2 {
			load.readers.Add(1)
			go load.readReplies(t, p)
		}
	}
	return load
}

func (l *dashboardLoad) send(t *testing.T, p *dashboardPair, target string) {
	defer l.senders.Done()
	ticker := time.NewTicker(loadSendInterval)
	defer ticker.Stop()
	for cid := uint64(1); ; cid++ {
		select {
		case <-l.stopping:
			return
		case <-ticker.C:
		}
		body := []byte(fmt.Sprintf("load message %d", cid))
		var err error
		if p.protocol == 2 {
			err = p.sender.Send2(cid, target, body)
		} else {
			err = p.sender.Send(target, body)
		}
		if err != nil {
			t.Errorf("load sender %s over %s: %v", p.sender.User(), p.transport, err)
			return
		}
		l.sent.Add(1)
	}
}

// receive acknowledges every delivery to the receiver until its connection
// closes.
func (l *dashboardLoad) receive(t *testing.T, p *dashboardPair) {
	defer l.readers.Done()
	for {
		f, err := p.receiver.Next(context.Background())
		if err != nil {
			l.connectionEnded(t, p.receiver, err)
			return
		}
		switch f.Op {
		case client.OpDeliver:
			err = p.receiver.Ack2(f.Seq)
		case client.OpReliable:
			err = p.receiver.Ack(f.ID)
		default:
			t.Errorf("load receiver %s got %v, want deliveries only", p.receiver.User(), f)
			continue
		}
		if err != nil {
			l.connectionEnded(t, p.receiver, err)
			return
		}
		p.delivered.Add(1)
		l.delivered.Add(1)
	}
}

// readReplies reads the ACCEPTED replies of a v2 sender until its connection
// closes, and fails the test on any other reply.
func (l *dashboardLoad) readReplies(t *testing.T, p *dashboardPair) {
	defer l.readers.Done()
	for {
		f, err := p.sender.Next(context.Background())
		if err != nil {
			l.connectionEnded(t, p.sender, err)
			return
		}
		if f.Op != client.OpAccepted {
			t.Errorf("load sender %s got %v, want ACCEPTED", p.sender.User(), f)
		}
	}
}

// connectionEnded fails the test unless the connection ended because the
// load stopped.
func (l *dashboardLoad) connectionEnded(t *testing.T, c *client.Conn, err error) {
	select {
	case <-l.stopping:
		if !errors.Is(err, client.ErrClosed) {
			t.Errorf("load connection of %s ended with %v", c.User(), err)
		}
	default:
		t.Errorf("load connection of %s ended during the load: %v", c.User(), err)
	}
}

// halt ends the senders, closes every connection and waits for the readers.
// Calls after the first do nothing.
func (l *dashboardLoad) halt() {
	l.haltOnce.Do(func() {
		close(l.stopping)
		l.senders.Wait()
		for _, p := range l.pairs {
			p.sender.Close()
			p.receiver.Close()
		}
		l.readers.Wait()
	})
}

// stop halts the load and checks that each pair delivered messages.
func (l *dashboardLoad) stop(t *testing.T) {
	t.Helper()
	l.halt()
	for _, p := range l.pairs {
		if p.delivered.Load() == 0 {
			t.Errorf("load pair %s -> %s (v%d over %s) delivered nothing",
				p.sender.User(), p.receiver.User(), p.protocol, p.transport)
		}
	}
}
