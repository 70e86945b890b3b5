package storage

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
)

// crashChildDirEnv makes TestMain run runCrashChild on the named directory instead of tests.
const crashChildDirEnv = "IRIS_STORAGE_CRASH_CHILD_DIR"

const crashUser = "crash"

// runCrashChild appends to crashUser until it is killed, printing each seq on its own line
// once done reports it durable. It keeps 64 appends in flight so that commits carry batches.
func runCrashChild(dir string) int {
	s, err := Open(Options{Dir: dir, MaxInbox: 1 << 30, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 1
	}
	inFlight := make(chan struct{}, 64)
	for i := 0; ; i++ {
		inFlight <- struct{}{}
		s.Append(AppendRequest{User: crashUser, Body: []byte(strconv.Itoa(i))}, func(r AppendResult, err error) {
			if err != nil {
				fmt.Fprintln(os.Stderr, "crash child: append:", err)
				os.Exit(1)
			}
			// done runs on the commit goroutine in seq order, so the lines are ordered.
			fmt.Fprintln(os.Stdout, r.Seq)
			<-inFlight
		})
	}
}

func TestAcknowledgedAppendsSurviveSIGKILL(t *testing.T) {
	dir := t.TempDir()
	const killAfter = 500

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildDirEnv+"="+dir)
	cmd.Stderr = t.Output()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}

	var acked []uint64
	killed := false
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		seq, err := strconv.ParseUint(lines.Text(), 10, 64)
		if err != nil {
			t.Fatalf("child printed %q, want a seq", lines.Text())
		}
		acked = append(acked, seq)
		if len(acked) == killAfter && !killed {
			if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil {
				t.Fatalf("kill child %d: %v", cmd.Process.Pid, err)
			}
			killed = true
		}
	}
	waitErr := cmd.Wait()
	var exitErr *exec.ExitError
	if !errors.As(waitErr, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want death by SIGKILL after %d acks (got %d acks)", waitErr, killAfter, len(acked))
	}
	t.Logf("child acknowledged %d appends before SIGKILL took effect", len(acked))

	s := openTestStore(t, Options{Dir: dir, MaxInbox: 1 << 30})
	entries, err := s.Inbox(crashUser, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < len(acked) {
		t.Fatalf("store holds %d entries after the crash, but %d were acknowledged", len(entries), len(acked))
	}
	for i, e := range entries {
		if e.Seq != uint64(i+1) {
			t.Fatalf("entry %d has seq %d, want %d (no gaps)", i, e.Seq, i+1)
		}
		if string(e.Body) != strconv.Itoa(i) {
			t.Fatalf("entry with seq %d has body %q, want %q (appends stored out of order)", e.Seq, e.Body, strconv.Itoa(i))
		}
	}
	for i, seq := range acked {
		if seq != uint64(i+1) {
			t.Fatalf("acknowledgement %d reported seq %d, want %d", i, seq, i+1)
		}
	}
	if n := inboxLen(t, s, crashUser); n != len(entries) {
		t.Errorf("InboxLen = %d, but Inbox returned %d entries", n, len(entries))
	}
}
