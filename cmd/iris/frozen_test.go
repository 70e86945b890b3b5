package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/iris-im/iris/gateway/client"
)

// frozenChildEnv marks the re-executed test binary that runs inside the
// network namespace.
const frozenChildEnv = "E2E_FROZEN_SOCKET_CHILD"

// TestFrozenSocketGoesOffline checks that a client whose network vanishes
// (its packets dropped, no FIN, no RST) is reported offline within the
// keepalive timeout, and that messages sent meanwhile reach it at its next
// login. Dropping packets needs a private network namespace with iptables,
// so the test re-executes itself inside one (make test installs iptables);
// the namespace's own loopback carries all traffic, and nothing outside it
// is touched.
func TestFrozenSocketGoesOffline(t *testing.T) {
	if os.Getenv(frozenChildEnv) != "" {
		frozenSocketChild(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (make test-deps installs it): %v", tool, err)
		}
	}

	ns := fmt.Sprintf("iris-frozen-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace here: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	if out, err := exec.Command("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("bringing up the namespace's loopback: %v: %s", err, out)
	}

	child := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestFrozenSocketGoesOffline$", "-test.v")
	child.Env = append(os.Environ(), frozenChildEnv+"=1", reuseBinaryEnv+"="+irisBinary)
	out, err := child.CombinedOutput()
	t.Logf("inside namespace %s:\n%s", ns, out)
	if err != nil {
		t.Fatalf("the test inside the namespace failed: %v", err)
	}
}

// frozenSocketChild runs inside the namespace.
func frozenSocketChild(t *testing.T) {
	const keepalive = time.Second
	s := startServer(t, "IRIS_EDGE_KEEPALIVE="+keepalive.String())
	ctx := testCtx(t, 60*time.Second)

	// The client that will vanish connects from 127.0.0.2.
	dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	frozen, err := dialer.DialContext(ctx, "tcp", s.addr(tcp))
	if err != nil {
		t.Fatal(err)
	}
	defer frozen.Close()
	if _, err := frozen.Write([]byte("\x01frozen")); err != nil {
		t.Fatal(err)
	}
	loginOK := make([]byte, 9)
	_ = frozen.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := frozen.Read(loginOK); err != nil || loginOK[0] != 0x03 {
		t.Fatalf("frozen login: %x, %v", loginOK, err)
	}

	watcher := s.login(t, tcp, "watcher")
	if st, err := watcher.GetStatus(ctx, "frozen"); err != nil || st.State != 1 {
		t.Fatalf("status before the freeze = %+v, %v; want online", st, err)
	}

	// Every packet from or to 127.0.0.2 is dropped from now on.
	for _, rule := range [][]string{{"-s", "127.0.0.2"}, {"-d", "127.0.0.2"}} {
		args := append([]string{"-A", "INPUT"}, append(rule, "-j", "DROP")...)
		if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
			t.Fatalf("iptables %v: %v: %s", args, err, out)
		}
	}
	frozeAt := time.Now()

	// Keepalive starts after `keepalive` idle and gives up after three
	// unanswered probes at least a second apart: about 4 s here.
	deadline := frozeAt.Add(4*keepalive + 10*time.Second)
	for {
		st, err := watcher.GetStatus(ctx, "frozen")
		if err != nil {
			t.Fatal(err)
		}
		if st.State == 0 {
			t.Logf("reported offline %v after the freeze", time.Since(frozeAt).Round(100*time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still online %v after the freeze", time.Since(frozeAt))
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Messages sent meanwhile reach the user at the next login.
	if err := watcher.Send("frozen", []byte("while you were gone")); err != nil {
		t.Fatal(err)
	}
	again := s.login(t, tcp, "frozen")
	f, err := again.Expect(ctx, client.OpReliable)
	if err != nil || string(f.Msg) != "while you were gone" {
		t.Fatalf("next login got %v, %v; want the message sent meanwhile", f, err)
	}
}
