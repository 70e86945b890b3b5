package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// A client that keeps failing to log in must not write a log line per
// attempt: per-connection lines are limited per message.
func TestRejectedLoginsLogLimited(t *testing.T) {
	const attempts = 60
	s := startServer(t,
		"IRIS_AUTH_REQUIRED=true",
		"IRIS_AUTH_JWT_SECRET=e2e-test-secret-0123456789abcdef-0123456789",
		"IRIS_LIMITS_LOGIN_FAILURES=0",
	)

	for i := range attempts {
		c := s.dial(t, tcp)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.Login2(ctx, fmt.Sprintf("user%d", i), "not-a-token")
		cancel()
		if err == nil {
			t.Fatalf("login %d with a bad token succeeded", i)
		}
		c.Close()
	}

	data, err := os.ReadFile(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Count(string(data), "login rejected")
	if lines == 0 || lines > 10 {
		t.Errorf("%d rejected logins wrote %d \"login rejected\" lines, want 1 to 10", attempts, lines)
	}
}
