package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Limits of the ?interval= query parameter of /events, in milliseconds.
const (
	minEventInterval     = 200
	maxEventInterval     = 10000
	defaultEventInterval = 1000 * time.Millisecond
)

// maxEventStreams bounds the /events streams open at once. The admin port
// has no authentication, and each stream holds a connection and a
// goroutine.
const maxEventStreams = 64

// eventSnapshotAge is how long event streams share one snapshot: half the
// shortest interval, so a stream at that interval still gets a new one
// each time.
const eventSnapshotAge = minEventInterval * time.Millisecond / 2

// eventWriteTimeout bounds one write to an event stream, so a client that
// stops reading ends its stream instead of keeping the handler blocked.
const eventWriteTimeout = 10 * time.Second

// dashboardPage is the dashboard, whose script connects to /events on this
// server alone.
var dashboardPage = newPage("dashboard.html", []string{"dashboard.css", "dashboard.js"}, "'self'")

// routeDashboard registers the live dashboard at GET / and its event stream
// at GET /events.
func (s *Server) routeDashboard(mux *http.ServeMux) {
	// "/{$}" matches the root alone, so other unknown paths still get 404.
	mux.Handle("GET /{$}", dashboardPage)
	mux.HandleFunc("GET /events", s.events)
}

// events streams the node's snapshot as Server-Sent Events: one event at
// once, then one every interval, until the client goes away or the server
// closes the connection. Each event is a single "data:" line containing the
// /stats JSON, which json.Marshal writes without newlines.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	interval, err := parseEventInterval(r.URL.Query().Get("interval"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}

	if s.streams.Add(1) > maxEventStreams {
		s.streams.Add(-1)
		http.Error(w, fmt.Sprintf("too many event streams: this server serves %d at once; close another dashboard or try again later", maxEventStreams), http.StatusServiceUnavailable)
		return
	}
	defer s.streams.Add(-1)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // keeps a reverse proxy from buffering the stream
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}

	rc := http.NewResponseController(w)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		data, err := s.eventSnapshot()
		if err != nil {
			s.cfg.Logger.Error("admin: event stream ended because the snapshot does not encode as JSON",
				"remote", r.RemoteAddr, "err", err)
			return
		}
		if err := writeEvent(w, rc, data); err != nil {
			return // the client went away or stopped reading
		}

		// http.Server.Close, which Stop calls, closes the connection. That
		// cancels the request context, so the loop ends without waiting
		// for the next tick.
		select {
		case <-r.Context().Done():
			return
		case <-ticker.C:
		}
	}
}

// eventSnapshot returns the snapshot as JSON, taken anew at most every
// eventSnapshotAge: every open stream sends the same one, so the cost of a
// snapshot does not grow with the number of dashboards.
func (s *Server) eventSnapshot() ([]byte, error) {
	s.eventMu.Lock()
	defer s.eventMu.Unlock()
	if s.eventData != nil && time.Since(s.eventAt) < eventSnapshotAge {
		return s.eventData, nil
	}
	data, err := json.Marshal(s.snapshot())
	if err != nil {
		return nil, err
	}
	s.eventData, s.eventAt = data, time.Now()
	return data, nil
}

// writeEvent writes data as one event and flushes it to the client.
func writeEvent(w http.ResponseWriter, rc *http.ResponseController, data []byte) error {
	// Not every ResponseWriter supports deadlines. Without one the write
	// simply has no bound, so the error is ignored.
	_ = rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))

	var event bytes.Buffer
	event.Grow(len(data) + len("data: \n\n"))
	event.WriteString("data: ")
	event.Write(data)
	event.WriteString("\n\n")
	if _, err := w.Write(event.Bytes()); err != nil {
		return err
	}
	return rc.Flush()
}

// parseEventInterval reads the ?interval= parameter of /events: milliseconds
// from minEventInterval to maxEventInterval, defaultEventInterval when empty.
func parseEventInterval(value string) (time.Duration, error) {
	if value == "" {
		return defaultEventInterval, nil
	}
	ms, err := strconv.Atoi(value)
	if err != nil || ms < minEventInterval || ms > maxEventInterval {
		return 0, fmt.Errorf("invalid interval %q: expected whole milliseconds from %d to %d, for example ?interval=1000",
			value, minEventInterval, maxEventInterval)
	}
	return time.Duration(ms) * time.Millisecond, nil
}
