package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/iris-im/iris/gateway/client"
	"github.com/iris-im/iris/gateway/tlstest"
	"github.com/iris-im/iris/internal/testaddr"
)

// clusterNode is one `iris start --role=core|edge` child process with its own
// loopback address (127.0.0.x) and config file. It keeps its data dir and
// ports across restarts.
type clusterNode struct {
	t       *testing.T
	name    string
	role    string
	host    string
	cfgPath string
	logPath string
	dataDir string

	adminAddr     string
	tcpAddr       string // edges
	wsAddr        string // edges
	discoveryPort int    // cores
	raftAddr      string // cores

	cmd    *exec.Cmd
	exited chan struct{}
}

// testCluster is a local cluster of cores and edges.
type testCluster struct {
	t     *testing.T
	dir   string
	cores []*clusterNode
	edges []*clusterNode
	ca    *tlstest.CA // nil without cluster TLS
}

type clusterOptions struct {
	tls bool // mutual TLS between nodes, from a CA made for the test
}

// keepLogsEnv names a directory where cluster tests copy their nodes' logs.
const keepLogsEnv = "E2E_KEEP_LOGS"

// firstClusterHost is the last byte of the first node's 127.0.0.x address.
// The nodes of one test use consecutive addresses from it.
const firstClusterHost = 20

// startCluster starts cores and edges and returns once every node is ready.
// The test's cleanup stops every node by pid.
func startCluster(t *testing.T, cores, edges int, opts clusterOptions) *testCluster {
	t.Helper()
	c := &testCluster{t: t, dir: t.TempDir()}
	if opts.tls {
		c.ca = tlstest.NewCA(t, "iris test cluster CA")
	}
	for i := range cores {
		c.cores = append(c.cores, c.newNode(fmt.Sprintf("core%d", i+1), "core", firstClusterHost+i))
	}
	for i := range edges {
		c.edges = append(c.edges, c.newNode(fmt.Sprintf("edge%d", i+1), "edge", firstClusterHost+cores+i))
	}
	for _, n := range c.all() {
		c.writeConfig(n)
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, n := range c.all() {
			wg.Go(n.stop)
		}
		wg.Wait()
		if t.Failed() {
			for _, n := range c.all() {
				n.logTail(40)
			}
		}
		if keep := os.Getenv(keepLogsEnv); keep != "" {
			for _, n := range c.all() {
				if data, err := os.ReadFile(n.logPath); err == nil {
					_ = os.WriteFile(filepath.Join(keep, t.Name()+"-"+n.name+".log"), data, 0o644)
				}
			}
		}
	})

	// Cores start together: raft needs a majority of them to elect a leader.
	for _, n := range c.cores {
		n.spawn()
	}
	for _, n := range c.cores {
		n.waitReady(60 * time.Second)
	}
	for _, n := range c.edges {
		n.spawn()
	}
	for _, n := range c.edges {
		n.waitReady(60 * time.Second)
	}
	return c
}

func (c *testCluster) all() []*clusterNode {
	return append(append([]*clusterNode(nil), c.cores...), c.edges...)
}

func (c *testCluster) newNode(name, role string, hostByte int) *clusterNode {
	host := fmt.Sprintf("127.0.0.%d", hostByte)
	n := &clusterNode{
		t:       c.t,
		name:    name,
		role:    role,
		host:    host,
		cfgPath: filepath.Join(c.dir, name+".yaml"),
		logPath: filepath.Join(c.dir, name+".log"),
		dataDir: filepath.Join(c.dir, name),
	}
	addrs := freeAddrsOn(c.t, host, 3)
	n.adminAddr = addrs[0]
	if role == "core" {
		_, port, _ := net.SplitHostPort(addrs[1])
		fmt.Sscan(port, &n.discoveryPort)
		n.raftAddr = addrs[2]
	} else {
		n.tcpAddr, n.wsAddr = addrs[1], addrs[2]
	}
	return n
}

// freeAddrsOn returns count host:port addresses whose ports were free on host a
// moment ago, each different from every address another test of this process
// got.
func freeAddrsOn(t *testing.T, host string, count int) []string {
	t.Helper()
	var addrs []string
	for range count {
		addrs = append(addrs, testaddr.Free(t, host))
	}
	return addrs
}

func (c *testCluster) seeds() []string {
	var out []string
	for _, n := range c.cores {
		out = append(out, fmt.Sprintf("%s:%d", n.host, n.discoveryPort))
	}
	return out
}

func (c *testCluster) bootstrap() []string {
	var out []string
	for _, n := range c.cores {
		out = append(out, n.name+"="+n.raftAddr)
	}
	return out
}

// writeConfig writes n's YAML file.
func (c *testCluster) writeConfig(n *clusterNode) {
	list := func(items []string) string { return "[" + strings.Join(items, ", ") + "]" }
	var b strings.Builder
	fmt.Fprintf(&b, "node:\n  role: %s\n  name: %s\n  data_dir: %s\n", n.role, n.name, n.dataDir)
	fmt.Fprintf(&b, "admin:\n  addr: %s\n", n.adminAddr)
	fmt.Fprintf(&b, "limits:\n  send_rate: 100000\n  send_burst: 100000\n  conn_rate: 0\n")
	if n.role == "edge" {
		fmt.Fprintf(&b, "edge:\n  tcp_addr: %s\n  ws_addr: %s\n  redelivery_timeout: 2s\n", n.tcpAddr, n.wsAddr)
	}
	fmt.Fprintf(&b, "cluster:\n  host: %s\n  seeds: %s\n  shards: 32\n", n.host, list(c.seeds()))
	if n.role == "core" {
		fmt.Fprintf(&b, "  discovery_port: %d\n", n.discoveryPort)
		fmt.Fprintf(&b, "  raft:\n    bind: %s\n    bootstrap: %s\n", n.raftAddr, list(c.bootstrap()))
	}
	if c.ca != nil {
		certFile, keyFile := c.ca.WriteNodeCert(c.t, c.dir, n.name, net.ParseIP(n.host))
		fmt.Fprintf(&b, "  tls:\n    ca_file: %s\n    cert_file: %s\n    key_file: %s\n", c.ca.WriteCACert(c.t, c.dir), certFile, keyFile)
	}
	if err := os.WriteFile(n.cfgPath, []byte(b.String()), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

// spawn starts n's process without waiting for it to be ready.
func (n *clusterNode) spawn() {
	n.t.Helper()
	logFile, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		n.t.Fatal(err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "e2e: iris start at %s\n", time.Now().Format(time.RFC3339Nano))

	cmd := exec.Command(irisBinary, "start", "--config", n.cfgPath)
	cmd.Env = os.Environ()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("starting %s: %v", n.name, err)
	}
	n.cmd = cmd
	n.exited = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(n.exited)
	}()
}

// waitReady waits until n's /readyz returns 200.
func (n *clusterNode) waitReady(timeout time.Duration) {
	n.t.Helper()
	httpClient := &http.Client{Timeout: time.Second}
	ready := eventually(timeout, func() bool {
		select {
		case <-n.exited:
			return true
		default:
		}
		resp, err := httpClient.Get("http://" + n.adminAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	select {
	case <-n.exited:
		n.logTail(60)
		n.t.Fatalf("%s exited during start: %v", n.name, n.cmd.ProcessState)
	default:
	}
	if !ready {
		n.logTail(60)
		n.t.Fatalf("%s was not ready within %s", n.name, timeout)
	}
}

// start starts n again on its data dir and ports and waits until it is ready.
func (n *clusterNode) start() {
	n.t.Helper()
	n.spawn()
	n.waitReady(60 * time.Second)
}

// kill sends SIGKILL to n's pid and waits for it to exit.
func (n *clusterNode) kill() {
	n.t.Helper()
	if err := n.cmd.Process.Kill(); err != nil {
		n.t.Fatalf("SIGKILL to %s (pid %d): %v", n.name, n.cmd.Process.Pid, err)
	}
	<-n.exited
	n.cmd = nil
}

// stop sends SIGTERM to n's pid, and SIGKILL if it still runs 10 s later.
func (n *clusterNode) stop() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		n.t.Logf("%s (pid %d) still running 10 s after SIGTERM, sending SIGKILL", n.name, n.cmd.Process.Pid)
		_ = n.cmd.Process.Kill()
		<-n.exited
	}
	n.cmd = nil
}

func (n *clusterNode) logTail(lines int) {
	out, err := os.ReadFile(n.logPath)
	if err != nil {
		return
	}
	all := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	n.t.Logf("last log lines of %s (%s):\n%s", n.name, n.logPath, strings.Join(all[max(0, len(all)-lines):], "\n"))
}

// stats fetches n's /stats.
func (n *clusterNode) stats() (map[string]any, error) {
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + n.adminAddr + "/stats")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// login dials edge n and logs user in with v1 LOGIN.
func (n *clusterNode) login(t *testing.T, transport, user string) *client.Conn {
	t.Helper()
	c := n.dial(t, transport)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Login(ctx, user); err != nil {
		t.Fatalf("%s: %s login of %s: %v", n.name, transport, user, err)
	}
	return c
}

// login2 dials edge n and logs user in with v2 LOGIN2.
func (n *clusterNode) login2(t *testing.T, transport, user string) *client.Conn {
	t.Helper()
	c := n.dial(t, transport)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Login2(ctx, user, ""); err != nil {
		t.Fatalf("%s: %s login2 of %s: %v", n.name, transport, user, err)
	}
	return c
}

func (n *clusterNode) dial(t *testing.T, transport string) *client.Conn {
	t.Helper()
	addr := n.tcpAddr
	if transport == client.TransportWebSocket {
		addr = n.wsAddr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, transport, addr)
	if err != nil {
		t.Fatalf("%s: dial %s: %v", n.name, transport, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
