package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// IdleStats is the server memory that idle sessions cost. Heap figures come
// from heap_bytes of the admin /stats endpoint (the Go runtime's HeapAlloc)
// and resident set figures from process_resident_memory_bytes of /metrics.
// Each reading is the minimum of several samples, because HeapAlloc also
// counts garbage that the next collection frees.
type IdleStats struct {
	// Sessions is the server's count of open sessions, TCP and WebSocket,
	// with the clients connected.
	Sessions          int64   `json:"sessions"`
	BaselineHeapBytes uint64  `json:"baseline_heap_bytes"`
	HeapBytes         uint64  `json:"heap_bytes"`
	HeapPerConn       float64 `json:"heap_bytes_per_conn"`
	BaselineRSSBytes  uint64  `json:"baseline_rss_bytes,omitempty"`
	RSSBytes          uint64  `json:"rss_bytes,omitempty"`
	RSSPerConn        float64 `json:"rss_bytes_per_conn,omitempty"`
	// RSSMissing is set when /metrics has no process_resident_memory_bytes.
	RSSMissing bool `json:"rss_missing,omitempty"`
}

// memorySamples and memorySampleGap set how a memory reading is sampled.
const (
	memorySamples   = 5
	memorySampleGap = 400 * time.Millisecond
)

// runLoginStorm connects and logs in Conns clients, Concurrency at a time,
// and closes them once all are in.
func runLoginStorm(ctx context.Context, cfg Config, errs *errorCounts) ConnectStats {
	users := make([]string, cfg.Conns)
	runID := newRunID()
	for i := range users {
		users[i] = fmt.Sprintf("%s-%s-l%d", cfg.UserPrefix, runID, i)
	}
	d := &dialer{cfg: cfg, frameBuffer: 16, errors: errs}
	conns, stats := d.connectAll(ctx, users)
	closeAll(conns)
	return stats
}

// runIdle reads the server's memory, logs in Conns idle clients, holds them
// for Duration, and reads the memory again.
func runIdle(ctx context.Context, cfg Config, errs *errorCounts) (*IdleStats, ConnectStats, error) {
	admin := &adminReader{base: "http://" + cfg.Admin, http: &http.Client{Timeout: 5 * time.Second}}
	before, err := admin.sample(ctx)
	if err != nil {
		return nil, ConnectStats{}, err
	}

	users := make([]string, cfg.Conns)
	runID := newRunID()
	for i := range users {
		users[i] = fmt.Sprintf("%s-%s-i%d", cfg.UserPrefix, runID, i)
	}
	// A small frame buffer keeps the generator's own memory low, because an
	// idle session receives nothing.
	d := &dialer{cfg: cfg, frameBuffer: 4, errors: errs}
	conns, setup := d.connectAll(ctx, users)
	defer closeAll(conns)

	select {
	case <-time.After(cfg.Duration):
	case <-ctx.Done():
		return nil, setup, ctx.Err()
	}
	after, err := admin.sample(ctx)
	if err != nil {
		return nil, setup, err
	}

	st := &IdleStats{
		Sessions:          after.sessions,
		BaselineHeapBytes: before.heap,
		HeapBytes:         after.heap,
		BaselineRSSBytes:  before.rss,
		RSSBytes:          after.rss,
		RSSMissing:        !after.hasRSS,
	}
	if setup.LoggedIn > 0 {
		n := float64(setup.LoggedIn)
		st.HeapPerConn = (float64(after.heap) - float64(before.heap)) / n
		if after.hasRSS {
			st.RSSPerConn = (float64(after.rss) - float64(before.rss)) / n
		}
	}
	return st, setup, nil
}

// adminReader reads a server's memory from its admin endpoints.
type adminReader struct {
	base string
	http *http.Client
}

type memoryReading struct {
	heap     uint64
	rss      uint64
	hasRSS   bool
	sessions int64
}

// sample takes memorySamples readings and keeps the lowest heap and RSS.
func (a *adminReader) sample(ctx context.Context) (memoryReading, error) {
	var low memoryReading
	for i := range memorySamples {
		if i > 0 {
			select {
			case <-time.After(memorySampleGap):
			case <-ctx.Done():
				return low, ctx.Err()
			}
		}
		m, err := a.read(ctx)
		if err != nil {
			return low, err
		}
		if i == 0 || m.heap < low.heap {
			low.heap = m.heap
		}
		if m.hasRSS && (!low.hasRSS || m.rss < low.rss) {
			low.rss, low.hasRSS = m.rss, true
		}
		low.sessions = m.sessions
	}
	return low, nil
}

func (a *adminReader) read(ctx context.Context) (memoryReading, error) {
	var m memoryReading
	var stats struct {
		HeapBytes *uint64          `json:"heap_bytes"`
		Sessions  map[string]int64 `json:"sessions"`
	}
	if err := a.get(ctx, "/stats", func(r *bufio.Reader) error { return json.NewDecoder(r).Decode(&stats) }); err != nil {
		return m, err
	}
	if stats.HeapBytes == nil {
		return m, fmt.Errorf("admin %s/stats has no heap_bytes field", a.base)
	}
	m.heap = *stats.HeapBytes
	for _, n := range stats.Sessions {
		m.sessions += n
	}

	rss, ok, err := a.metric(ctx, "process_resident_memory_bytes")
	m.rss, m.hasRSS = uint64(rss), ok
	return m, err
}

// metric returns the value of one unlabelled metric of /metrics, and false
// when the server does not export it.
func (a *adminReader) metric(ctx context.Context, name string) (float64, bool, error) {
	var value float64
	var found bool
	err := a.get(ctx, "/metrics", func(r *bufio.Reader) error {
		for {
			line, err := r.ReadString('\n')
			if text, ok := strings.CutPrefix(line, name+" "); ok {
				v, perr := strconv.ParseFloat(strings.TrimSpace(text), 64)
				if perr != nil {
					return fmt.Errorf("metric %s %q: %w", name, strings.TrimSpace(text), perr)
				}
				value, found = v, true
				return nil
			}
			if err != nil {
				return nil
			}
		}
	})
	return value, found, err
}

func (a *adminReader) get(ctx context.Context, path string, decode func(*bufio.Reader) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("reading admin %s failed: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("admin %s%s answered %s", a.base, path, resp.Status)
	}
	if err := decode(bufio.NewReader(resp.Body)); err != nil {
		return fmt.Errorf("decoding admin %s failed: %w", path, err)
	}
	return nil
}
