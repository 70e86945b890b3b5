package admin_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/iris-im/iris/actors"
	"github.com/iris-im/iris/gateway/admin"
)

// testTimeout bounds every wait in these tests, so a broken stream fails the
// test instead of hanging it.
const testTimeout = 10 * time.Second

// startAdmin starts an admin server on a loopback port with stats and a
// fixed member list and raft state, and stops it when the test ends.
func startAdmin(t *testing.T, stats *actors.Stats) (*admin.Server, string) {
	t.Helper()
	srv, err := admin.Start(admin.Config{
		Addr:   "127.0.0.1:0",
		Stats:  stats,
		Node:   "n1",
		Role:   "core",
		Logger: slog.New(slog.DiscardHandler),
		Members: func() []admin.Member {
			return []admin.Member{{ID: "n1", Address: "127.0.0.1:7001", Kinds: []string{"shard"}}}
		},
		Raft: func() *admin.RaftStatus {
			return &admin.RaftStatus{ID: "n1", State: "Leader", Term: 3, Leader: "n1", CommitIndex: 9, AppliedIndex: 7}
		},
	})
	if err != nil {
		t.Fatalf("start admin server: %v", err)
	}
	t.Cleanup(srv.Stop)
	return srv, "http://" + srv.Addr().String()
}

// newClient returns a client with its own transport, so closing its idle
// connections at the end of a test leaves no goroutine behind.
func newClient(t *testing.T) *http.Client {
	t.Helper()
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport}
}

func get(t *testing.T, client *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body of %s: %v", url, err)
	}
	return resp, string(body)
}

// eventStream reads Server-Sent Events from an open /events response.
type eventStream struct {
	resp   *http.Response
	reader *bufio.Reader
}

// openEvents requests /events with the given query. The request ends when
// ctx does, which bounds every read of the stream.
func openEvents(ctx context.Context, t *testing.T, client *http.Client, base, query string) *eventStream {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events"+query, nil)
	if err != nil {
		t.Fatalf("build request: %v", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET /events%s: %v", query, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /events%s: status %d, body %q", query, resp.StatusCode, body)
	}
	return &eventStream{resp: resp, reader: bufio.NewReader(resp.Body)}
}

// next returns the data of the next event, joining multi-line data with
// newlines as the SSE format defines.
func (s *eventStream) next() (string, error) {
	var data []string
	for {
		line, err := s.reader.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if data != nil {
				return strings.Join(data, "\n"), nil
			}
		case strings.HasPrefix(line, "data:"):
			data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
}

// nextSnapshot reads the next event and decodes it as a Snapshot.
func (s *eventStream) nextSnapshot(t *testing.T) admin.Snapshot {
	t.Helper()
	data, err := s.next()
	if err != nil {
		t.Fatalf("read event: %v", err)
	}
	var snap admin.Snapshot
	if err := json.Unmarshal([]byte(data), &snap); err != nil {
		t.Fatalf("event data is not a snapshot: %v, data %q", err, data)
	}
	return snap
}

func TestDashboardPageHasContractIDs(t *testing.T) {
	_, base := startAdmin(t, &actors.Stats{})
	resp, body := get(t, newClient(t), base+"/")

	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: status %d, want 200", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("GET /: Content-Type %q, want text/html", ct)
	}
	for _, id := range []string{"node", "role", "sessions", "rate-in", "rate-out", "updates"} {
		if !strings.Contains(body, `id="`+id+`"`) {
			t.Errorf("page has no element with id %q", id)
		}
	}
	if !strings.Contains(body, "document.body.dataset.live") {
		t.Error("page never sets body data-live")
	}
	if !strings.Contains(body, "EventSource") {
		t.Error("page does not open an EventSource")
	}
	if strings.Contains(body, "{{") {
		t.Error("page contains an unexpanded template action")
	}
}

func TestDashboardPageLoadsNothingExternal(t *testing.T) {
	_, base := startAdmin(t, &actors.Stats{})
	_, body := get(t, newClient(t), base+"/")

	if urls := regexp.MustCompile(`(?i)https?://[^\s"'<>)]*`).FindAllString(body, -1); len(urls) > 0 {
		t.Errorf("page refers to other hosts: %v", urls)
	}
	if regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?//`).MatchString(body) {
		t.Error("page has a protocol-relative src or href")
	}
	if regexp.MustCompile(`(?i)@import|\burl\(`).MatchString(body) {
		t.Error("page style sheet loads a resource")
	}
}

func TestDashboardPolicyHashesInlineBlocks(t *testing.T) {
	_, base := startAdmin(t, &actors.Stats{})
	resp, body := get(t, newClient(t), base+"/")
	policy := resp.Header.Get("Content-Security-Policy")

	for _, directive := range []string{"default-src 'none'", "connect-src 'self'"} {
		if !strings.Contains(policy, directive) {
			t.Errorf("Content-Security-Policy %q lacks %q", policy, directive)
		}
	}
	for _, block := range []struct{ tag, directive string }{
		{tag: "script", directive: "script-src"},
		{tag: "style", directive: "style-src"},
	} {
		found := regexp.MustCompile(`(?s)<`+block.tag+`>(.*?)</`+block.tag+`>`).FindAllStringSubmatch(body, -1)
		if len(found) != 1 {
			t.Errorf("page has %d inline %s blocks, want 1", len(found), block.tag)
			continue
		}
		sum := sha256.Sum256([]byte(found[0][1]))
		want := block.directive + " 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
		if !strings.Contains(policy, want) {
			t.Errorf("Content-Security-Policy %q does not allow the inline %s block, want %q", policy, block.tag, want)
		}
	}
}

func TestDashboardUnknownPathNotFound(t *testing.T) {
	_, base := startAdmin(t, &actors.Stats{})
	client := newClient(t)

	for _, path := range []string{"/nope", "/index.html", "/events/x", "/dashboard"} {
		resp, _ := get(t, client, base+path)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", path, resp.StatusCode)
		}
	}
}

func TestEventsFollowStats(t *testing.T) {
	stats := &actors.Stats{}
	stats.Received.Store(10)
	stats.Delivered.Store(4)
	_, base := startAdmin(t, stats)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	events := openEvents(ctx, t, newClient(t), base, "?interval=200")
	if ct := events.resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q, want text/event-stream", ct)
	}
	if cc := events.resp.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("Cache-Control %q, want no-cache", cc)
	}

	first := events.nextSnapshot(t)
	if first.Node != "n1" || first.Role != "core" {
		t.Errorf("first event node %q role %q, want n1 core", first.Node, first.Role)
	}
	if got := first.Counters["received"]; got != 10 {
		t.Errorf("first event received %d, want 10", got)
	}
	if got := first.Counters["delivered"]; got != 4 {
		t.Errorf("first event delivered %d, want 4", got)
	}
	if first.Raft == nil || first.Raft.State != "Leader" {
		t.Errorf("first event raft %+v, want the Leader state", first.Raft)
	}
	if len(first.Members) != 1 || first.Members[0].ID != "n1" {
		t.Errorf("first event members %+v, want [n1]", first.Members)
	}

	stats.Received.Add(5)
	stats.Delivered.Add(3)
	stats.SessionsWS.Add(2)
	stats.DeadLetters.Add(1)
	stats.DeliveryLatency.Observe(3 * time.Millisecond)

	// A change may land after the server took the next snapshot, so read
	// until an event shows all of them. Each event must be at least as new
	// as the last one.
	showsChange := func(snap admin.Snapshot) bool {
		return snap.Counters["received"] == 15 &&
			snap.Counters["delivered"] == 7 &&
			snap.Sessions["ws"] == 2 &&
			snap.DeadLetters == 1 &&
			snap.Latency["delivery"].Count == 1
	}
	previous := first
	for i := 0; !showsChange(previous); i++ {
		if i == 5 {
			t.Fatalf("no event showed the change after %d events, last %+v", i, previous)
		}
		snap := events.nextSnapshot(t)
		if snap.Counters["received"] < previous.Counters["received"] {
			t.Fatalf("received went back from %d to %d", previous.Counters["received"], snap.Counters["received"])
		}
		if snap.UptimeSeconds < previous.UptimeSeconds {
			t.Fatalf("uptime went back from %v to %v", previous.UptimeSeconds, snap.UptimeSeconds)
		}
		previous = snap
	}

	delivery := previous.Latency["delivery"]
	if len(delivery.Counts) != len(delivery.BoundsMS)+1 {
		t.Errorf("delivery histogram has %d counts for %d bounds, want one more count than bounds",
			len(delivery.Counts), len(delivery.BoundsMS))
	}
}

func TestEventsFirstEventAtOnce(t *testing.T) {
	_, base := startAdmin(t, &actors.Stats{})

	// The interval is longer than the wait, so an event that arrives was
	// sent when the stream opened, not after the first tick.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	events := openEvents(ctx, t, newClient(t), base, "?interval=10000")
	events.nextSnapshot(t)
}

func TestEventsInterval(t *testing.T) {
	_, base := startAdmin(t, &actors.Stats{})
	client := newClient(t)

	for _, tc := range []struct {
		query string
		valid bool
	}{
		{query: "", valid: true},
		{query: "?interval=200", valid: true},
		{query: "?interval=10000", valid: true},
		{query: "?interval=199", valid: false},
		{query: "?interval=10001", valid: false},
		{query: "?interval=0", valid: false},
		{query: "?interval=-500", valid: false},
		{query: "?interval=1.5", valid: false},
		{query: "?interval=1s", valid: false},
		{query: "?interval=", valid: true},
		{query: "?interval=abc", valid: false},
	} {
		t.Run(tc.query, func(t *testing.T) {
			if tc.valid {
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				defer cancel()
				events := openEvents(ctx, t, client, base, tc.query)
				events.nextSnapshot(t)
				return
			}

			resp, body := get(t, client, base+"/events"+tc.query)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", resp.StatusCode)
			}
			if !strings.Contains(body, "invalid interval") {
				t.Errorf("body %q does not say the interval is invalid", body)
			}
			if !strings.Contains(body, "200") || !strings.Contains(body, "10000") {
				t.Errorf("body %q does not give the valid range", body)
			}
		})
	}
}

func TestStopWithOpenEventStream(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	srv, base := startAdmin(t, &actors.Stats{})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	events := openEvents(ctx, t, &http.Client{Transport: transport}, base, "?interval=10000")
	defer events.resp.Body.Close()
	events.nextSnapshot(t)

	stopped := make(chan struct{})
	go func() {
		srv.Stop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(testTimeout):
		t.Fatal("Stop did not return while an event stream was open")
	}

	// The client sees the stream end well before the 10 s interval, which
	// shows the server closed it instead of waiting for the next tick.
	if _, err := events.next(); err == nil {
		t.Fatal("stream sent another event after Stop")
	} else if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stream still open after Stop: %v", err)
	}
	// The deferred goleak check then shows that the handler goroutine ended.
}

func TestEventsEndWhenClientLeaves(t *testing.T) {
	_, base := startAdmin(t, &actors.Stats{})
	// The server's own goroutines stay, so only the stream's must end.
	serverRunning := goleak.IgnoreCurrent()

	transport := &http.Transport{}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	events := openEvents(ctx, t, &http.Client{Transport: transport}, base, "?interval=10000")
	events.nextSnapshot(t)

	// Cancelling the request closes the connection. goleak polls until the
	// handler goroutine is gone, which must happen well before the 10 s
	// tick while the server keeps running.
	cancel()
	events.resp.Body.Close()
	transport.CloseIdleConnections()
	goleak.VerifyNone(t, serverRunning)
}

func TestEventsStreamsLimited(t *testing.T) {
	_, base := startAdmin(t, &actors.Stats{})
	client := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	const limit = 64
	for i := range limit {
		stream := openEvents(ctx, t, client, base, "")
		if _, err := stream.next(); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	resp, body := get(t, client, base+"/events")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "too many event streams") {
		t.Errorf("stream %d: status %d, body %q; want 503 naming the limit", limit+1, resp.StatusCode, body)
	}
}

// A HEAD request gets the headers and ends: were its handler to go on
// streaming, more HEAD requests than the stream limit would use up every
// slot.
func TestEventsHeadEndsAtOnce(t *testing.T) {
	_, base := startAdmin(t, &actors.Stats{})
	client := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for i := range 70 {
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, base+"/events", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("HEAD /events %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("HEAD /events %d: status %d, type %q; want 200 text/event-stream", i, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	if _, err := openEvents(ctx, t, client, base, "").next(); err != nil {
		t.Fatalf("GET /events after the HEAD requests: %v", err)
	}
}
