package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iris-im/iris/gateway/client"
)

// runMount runs mount or umount with args and returns its combined output on
// failure.
func runMount(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// requireMount skips the test unless this process may create and remove a
// bind mount.
func requireMount(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	if err := runMount("mount", "--bind", dir, dir); err != nil {
		t.Skipf("mount is not permitted here: %v", err)
	}
	if err := runMount("umount", dir); err != nil {
		t.Fatal(err)
	}
}

// mountTmpfs mounts a tmpfs of sizeMiB at dir and unmounts it when the test
// ends. It must be called before the server that uses dir is started, so
// that the server is stopped first.
func mountTmpfs(t *testing.T, dir string, sizeMiB int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := runMount("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", sizeMiB), "tmpfs", dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = runMount("mount", "-o", "remount,bind,rw", dir)
		if err := runMount("umount", dir); err != nil {
			t.Errorf("the tmpfs at %s is still mounted: %v", dir, err)
		}
	})
}

// fillDisk writes zeros to path until the file system has no space left.
func fillDisk(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	var total int64
	for {
		n, err := f.Write(chunk)
		total += int64(n)
		if errors.Is(err, syscall.ENOSPC) {
			return total
		}
		if err != nil {
			t.Fatalf("filling %s: %v", path, err)
		}
	}
}

// sendOne sends one SEND2 and returns the ACCEPTED or REJECTED reply for it.
func sendOne(ctx context.Context, c *client.Conn, cid uint64, target string, body []byte) (client.Frame, error) {
	if err := c.Send2(cid, target, body); err != nil {
		return client.Frame{}, err
	}
	for {
		f, err := c.Next(ctx)
		if err != nil {
			return f, err
		}
		if (f.Op == client.OpAccepted || f.Op == client.OpRejected) && f.CID == cid {
			return f, nil
		}
		if f.Op != client.OpAccepted && f.Op != client.OpRejected {
			return f, fmt.Errorf("unexpected frame while waiting for cid %d: %v", cid, f)
		}
	}
}

// TestReadOnlyDataDirRecovers makes the store's directory read-only under a
// running server and then writable again.
//
// Linux refuses to make a mount read-only while a process has a file open
// for writing on it (EBUSY), and Pebble keeps its WAL open. So the data dir
// is a small tmpfs that the test first fills up: the failed commit makes the
// store close Pebble, and then the read-only remount succeeds.
func TestReadOnlyDataDirRecovers(t *testing.T) {
	requireMount(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	mountTmpfs(t, dataDir, 64)
	s := startServerIn(t, dataDir, highSendRate...)
	ctx := testCtx(t, 90*time.Second)
	sender := s.login2(t, tcp, "ro-sender")
	v1 := s.login(t, tcp, "ro-v1-sender")
	body := []byte(strings.Repeat("r", 200))

	acceptedSeqs := make(map[uint64]uint64) // cid -> seq
	cid := uint64(0)
	send := func() client.Frame {
		t.Helper()
		cid++
		f, err := sendOne(ctx, sender, cid, "ro-recipient", body)
		if err != nil {
			t.Fatalf("SEND2 cid %d: %v", cid, err)
		}
		if f.Op == client.OpAccepted {
			acceptedSeqs[cid] = f.Seq
		}
		return f
	}

	for range 100 {
		if f := send(); f.Op != client.OpAccepted {
			t.Fatalf("SEND2 before any fault: %v", f)
		}
	}

	// Fill the disk, then send until a commit fails.
	filler := filepath.Join(dataDir, "filler")
	filled := fillDisk(t, filler)
	var rejected client.Frame
	for i := 0; i < 200_000 && rejected.Op != client.OpRejected; i++ {
		rejected = send()
	}
	if rejected.Op != client.OpRejected {
		t.Fatalf("no SEND2 was rejected after filling the disk with %d MiB", filled>>20)
	}
	if rejected.Reason != "store_unavailable" {
		t.Fatalf("SEND2 on a full disk: %v, want reason store_unavailable", rejected)
	}
	acceptedBeforeReadOnly := len(acceptedSeqs)

	// Make the data dir read-only as soon as Pebble has closed its files.
	var remountErr error
	readOnly := eventually(15*time.Second, func() bool {
		remountErr = runMount("mount", "-o", "remount,bind,ro", dataDir)
		return remountErr == nil
	})
	if !readOnly {
		t.Fatalf("remounting the data dir read-only: %v", remountErr)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "probe"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("writing to the read-only data dir: err = %v, want EROFS", err)
	}

	for range 3 {
		f := send()
		if f.Op != client.OpRejected || f.Reason != "store_unavailable" {
			t.Fatalf("SEND2 on a read-only data dir: %v, want REJECTED store_unavailable", f)
		}
	}
	// NOTE: the server sends LOGIN_OK before it finds that the inbox cannot
	// be read, so the login itself reports success.
	late := s.dial(t, tcp)
	if err := late.Login(ctx, "ro-late"); err != nil {
		t.Logf("login during the outage: %v", err)
	}
	lateFrames, err := late.ExpectClosed(testCtx(t, 5*time.Second))
	if err != nil {
		t.Fatalf("login during the outage: connection still open: %v", err)
	}
	if len(lateFrames) == 0 || lateFrames[len(lateFrames)-1].Reason != "store_unavailable" {
		t.Fatalf("login during the outage: frames before the close %v, want ERROR store_unavailable last", lateFrames)
	}
	if err := v1.Send("ro-recipient", []byte("v1 on a read-only disk")); err != nil {
		t.Fatal(err)
	}
	f, err := v1.Next(ctx)
	if err != nil {
		t.Fatalf("v1 SEND on a read-only data dir: %v", err)
	}
	if f.Op != client.OpError || f.Reason != "store_unavailable" {
		t.Fatalf("v1 SEND on a read-only data dir: %v, want ERROR store_unavailable", f)
	}

	// Writable again, with space: sends must succeed without a restart.
	if err := runMount("mount", "-o", "remount,bind,rw", dataDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	recoveredAt := time.Now()
	recovered := eventually(15*time.Second, func() bool {
		return send().Op == client.OpAccepted
	})
	if !recovered {
		t.Fatal("SEND2 still rejected 15 s after the data dir became writable")
	}
	recovery := time.Since(recoveredAt)
	for range 50 {
		if f := send(); f.Op != client.OpAccepted {
			t.Fatalf("SEND2 after recovery: %v", f)
		}
	}
	if err := v1.Send("ro-recipient", []byte("v1 after recovery")); err != nil {
		t.Fatal(err)
	}
	if _, err := v1.GetStatus(ctx, "ro-recipient"); err != nil {
		t.Fatalf("v1 SEND after recovery: %v", err) // an ERROR for the SEND ends GetStatus
	}

	// Every accepted message is in the recipient's inbox with its seq.
	recipient := s.login2(t, tcp, "ro-recipient")
	pendingSeqs := make(map[uint64]bool, len(acceptedSeqs))
	for _, seq := range acceptedSeqs {
		pendingSeqs[seq] = true
	}
	gotV1AfterRecovery := false
	for len(pendingSeqs) > 0 || !gotV1AfterRecovery {
		f, err := recipient.Next(ctx)
		if err != nil {
			t.Fatalf("%d accepted messages not delivered: %v", len(pendingSeqs), err)
		}
		if f.Op != client.OpDeliver {
			t.Fatalf("unexpected frame in the inbox: %v", f)
		}
		switch {
		case string(f.Msg) == "v1 after recovery":
			gotV1AfterRecovery = true
		case string(f.Msg) == "v1 on a read-only disk":
			t.Fatalf("the v1 SEND rejected with store_unavailable was stored as seq %d", f.Seq)
		case f.Sender == "ro-sender" && string(f.Msg) == string(body):
			delete(pendingSeqs, f.Seq)
		}
		if f.Seq%100 == 0 {
			if err := recipient.Ack2(f.Seq); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("read-only data dir: %d accepted before the fault, %d MiB filler, SEND2 accepted again %v after remount rw, %d accepted in all and all delivered",
		acceptedBeforeReadOnly, filled>>20, recovery.Round(time.Millisecond), len(acceptedSeqs))
}
