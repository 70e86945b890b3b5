package main

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

func TestStatusOfRunningNode(t *testing.T) {
	s := startServer(t)
	s.login(t, tcp, "alice")

	// The admin server's URL, as a browser shows it, names it too.
	out, err := exec.Command(irisBinary, "status", "--admin-addr", "http://"+s.adminAddr+"/").CombinedOutput()
	if err != nil {
		t.Fatalf("iris status: %v\n%s", err, out)
	}
	for _, want := range []string{"ready", "sessions: 1 tcp, 0 ws", "logins_ok=1"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("iris status output lacks %q:\n%s", want, out)
		}
	}
}

func TestStatusOfStoppedNodeFails(t *testing.T) {
	s := startServer(t)
	s.stop()

	cmd := exec.Command(irisBinary, "status", "--admin-addr", s.adminAddr, "--timeout", "1s")
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if err == nil || !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Fatalf("iris status of a stopped node = %v, want exit status 1\n%s", err, out)
	}
	if !strings.Contains(string(out), "unreachable") {
		t.Errorf("output does not say the node is unreachable:\n%s", out)
	}
}

func TestStatusRejectsBadAddress(t *testing.T) {
	for _, addr := range []string{"https://127.0.0.1:9090", "127.0.0.1", "127.0.0.1:9090/stats"} {
		out, err := exec.Command(irisBinary, "status", "--admin-addr", addr).CombinedOutput()
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) || exitErr.ExitCode() != 2 {
			t.Errorf("iris status --admin-addr %s = %v, want exit status 2\n%s", addr, err, out)
		}
		if !strings.Contains(string(out), "invalid --admin-addr") {
			t.Errorf("iris status --admin-addr %s: output does not name the flag:\n%s", addr, out)
		}
	}
}
