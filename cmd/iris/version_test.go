package main

import (
	"context"
	"runtime"
	"strings"
	"testing"
)

func TestVersionOutput(t *testing.T) {
	saved := version
	version = "v1.2.3-test"
	defer func() { version = saved }()

	for _, args := range [][]string{{"version"}, {"--version"}} {
		tc := newTestCLI(t, nil, nil)
		if code := tc.execute(context.Background(), args); code != 0 {
			t.Fatalf("%v: exit status %d; stderr:\n%s", args, code, tc.stderr)
		}
		want := "iris v1.2.3-test " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
		if got := tc.stdout.String(); got != want {
			t.Errorf("%v printed %q, want %q", args, got, want)
		}
	}
}

func TestVersionDefaultIsDev(t *testing.T) {
	// Test binaries carry no module version, so the fallback stays "dev".
	saved := version
	version = "dev"
	defer func() { version = saved }()
	if got := versionString(); got != "dev" {
		t.Errorf("versionString() = %q, want dev", got)
	}
}

func TestRootUsageErrors(t *testing.T) {
	tc := newTestCLI(t, nil, nil)
	if code := tc.execute(context.Background(), []string{"launch"}); code != exitUsage {
		t.Errorf("unknown command: exit status %d, want %d", code, exitUsage)
	}
	checkOneErrorLine(t, tc.stderr.String(), `unknown command "launch"`)

	tc = newTestCLI(t, nil, nil)
	if code := tc.execute(context.Background(), nil); code != 0 {
		t.Errorf("no command: exit status %d, want 0", code)
	}
	if out := tc.stdout.String(); !strings.Contains(out, "start") || !strings.Contains(out, "token") {
		t.Errorf("help output does not list the commands:\n%s", out)
	}
}
