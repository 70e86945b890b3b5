package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/iris-im/iris/gateway/client/loadgen"
)

// benchServerEnv lifts the server limits that a load run would hit.
var benchServerEnv = []string{
	"IRIS_LIMITS_SEND_RATE=1000000",
	"IRIS_LIMITS_SEND_BURST=1000000",
	"IRIS_LIMITS_CONN_RATE=0",
	"IRIS_LIMITS_CONN_BURST=0",
	"IRIS_LIMITS_MAX_CONNECTIONS_PER_IP=1000000",
}

// runBenchCommand runs the bench command in process and returns its error
// and standard output.
func runBenchCommand(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := &cli{stdout: &stdout, stderr: &stderr, now: time.Now}
	cmd := c.newBenchCommand()
	cmd.SetArgs(args)
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	return stdout.String(), err
}

func TestBenchSteadyJSONReport(t *testing.T) {
	s := startServer(t, benchServerEnv...)
	for _, tc := range []struct {
		transport, protocol string
	}{
		{"tcp", "v1"},
		{"ws", "v2"},
	} {
		t.Run(tc.transport+"-"+tc.protocol, func(t *testing.T) {
			out, err := runBenchCommand(t, "--addr", s.addr(tc.transport), "--transport", tc.transport,
				"--protocol", tc.protocol, "--conns", "8", "--inflight", "4",
				"--duration", "1500ms", "--warmup", "500ms", "--drain", "5s", "--admin", s.adminAddr, "--json")
			if err != nil {
				t.Fatalf("bench failed: %v\n%s", err, out)
			}

			var rep loadgen.Report
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("report is not JSON: %v\n%s", err, out)
			}
			st := rep.Steady
			if st == nil {
				t.Fatalf("report has no steady figures:\n%s", out)
			}
			if st.Sent == 0 || st.Delivered != st.Sent {
				t.Errorf("sent %d, delivered %d; want every sent message delivered", st.Sent, st.Delivered)
			}
			if st.Lost != 0 || st.OutOfOrder != 0 {
				t.Errorf("lost %d, out of order %d; want 0", st.Lost, st.OutOfOrder)
			}
			if tc.protocol == "v2" && st.Accepted != st.Sent {
				t.Errorf("accepted %d of %d sent", st.Accepted, st.Sent)
			}
			if st.DeliveredPS <= 0 || st.Latency.Count == 0 {
				t.Errorf("delivered/s %.0f with %d latency samples; want both above 0", st.DeliveredPS, st.Latency.Count)
			}
			if st.ServerCores <= 0 {
				t.Errorf("server cores %.2f; want a reading from the admin /metrics", st.ServerCores)
			}
			if len(rep.Errors) != 0 {
				t.Errorf("errors %v; want none", rep.Errors)
			}
		})
	}
}

func TestBenchLoginStormText(t *testing.T) {
	s := startServer(t, benchServerEnv...)
	out, err := runBenchCommand(t, "--addr", s.tcpAddr, "--mode", "login-storm", "--conns", "40", "--concurrency", "0")
	if err != nil {
		t.Fatalf("bench failed: %v\n%s", err, out)
	}
	if !strings.Contains(out, "connect+login: 40 of 40 in") {
		t.Errorf("output does not report 40 logins:\n%s", out)
	}
	if !strings.Contains(out, "errors: none") {
		t.Errorf("output reports errors:\n%s", out)
	}
}

func TestBenchIdleReadsServerMemory(t *testing.T) {
	s := startServer(t, benchServerEnv...)
	out, err := runBenchCommand(t, "--addr", s.tcpAddr, "--mode", "idle", "--conns", "30",
		"--duration", "200ms", "--admin", s.adminAddr, "--json")
	if err != nil {
		t.Fatalf("bench failed: %v\n%s", err, out)
	}
	var rep loadgen.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out)
	}
	if rep.Idle == nil {
		t.Fatalf("report has no idle figures:\n%s", out)
	}
	if rep.Idle.Sessions != 30 {
		t.Errorf("server sessions %d; want 30", rep.Idle.Sessions)
	}
	if rep.Idle.HeapBytes == 0 || rep.Idle.RSSMissing || rep.Idle.RSSBytes == 0 {
		t.Errorf("heap %d, rss %d (missing %v); want both read", rep.Idle.HeapBytes, rep.Idle.RSSBytes, rep.Idle.RSSMissing)
	}
}

func TestBenchInvalidFlagsAreUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--protocol", "v3"},
		{"--mode", "burst"},
		{"--size", "10"},
		{"--mode", "idle"}, // idle needs --admin
		{"--duration", "1s", "--warmup", "2s"},
		{"--drain", "0s"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			_, err := runBenchCommand(t, args...)
			var exit *exitError
			if !errors.As(err, &exit) || exit.code != exitUsage {
				t.Fatalf("error %v; want a usage error (status %d)", err, exitUsage)
			}
		})
	}
}

func TestBenchUnreachableServerFails(t *testing.T) {
	_, err := runBenchCommand(t, "--addr", freeAddr(t), "--conns", "2", "--duration", "1s", "--warmup", "0s",
		"--connect-timeout", "2s")
	var exit *exitError
	if !errors.As(err, &exit) || exit.code != exitFailure {
		t.Fatalf("error %v; want a failure (status %d)", err, exitFailure)
	}
}

func TestBenchRelayServesSteadyRun(t *testing.T) {
	addr := freeAddr(t)
	var stdout lockedBuffer
	c := &cli{stdout: &stdout, stderr: &stdout, now: time.Now}
	cmd := c.newBenchCommand()
	cmd.SetArgs([]string{"relay", "--addr", addr})
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ended := make(chan error, 1)
	go func() { ended <- cmd.ExecuteContext(ctx) }()
	if !eventually(10*time.Second, func() bool { return strings.Contains(stdout.String(), "relay listening on "+addr) }) {
		t.Fatalf("relay did not report listening on %s; output %q", addr, stdout.String())
	}

	out, err := runBenchCommand(t, "--addr", addr, "--conns", "8", "--inflight", "4",
		"--duration", "1s", "--warmup", "200ms", "--drain", "2s", "--json")
	if err != nil {
		t.Fatalf("bench against the relay failed: %v\n%s", err, out)
	}
	var rep loadgen.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out)
	}
	if rep.Steady == nil || rep.Steady.Delivered == 0 || rep.Steady.Lost != 0 {
		t.Fatalf("steady figures %+v; want deliveries and none lost", rep.Steady)
	}

	cancel()
	select {
	case err := <-ended:
		if err != nil {
			t.Fatalf("relay ended with %v, want a clean stop", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("relay did not stop after its context ended")
	}
}
