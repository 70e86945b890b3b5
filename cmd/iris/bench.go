package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/iris-im/iris/gateway/client/loadgen"
)

// benchFlags are the values of the bench command's flags.
type benchFlags struct {
	addrs       []string
	transport   string
	wsPath      string
	protocol    string
	conns       int
	pairing     string
	size        int
	rate        float64
	inflight    int
	concurrency int
	mode        string
	admin       string
	json        bool
	userPrefix  string

	duration, warmup, drain   time.Duration
	stallTimeout, dialTimeout time.Duration
}

func (c *cli) newBenchCommand() *cobra.Command {
	f := &benchFlags{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load a running server and report throughput, latency and lost messages",
		Long: `Connect clients to a running server and measure it. The generator holds both ends
of every message, so it checks order and end-to-end latency and counts every
message the server accepted but never delivered.

Modes:
  steady       senders send to receivers for --duration; v1 receivers ACK each
               RELIABLE, v2 senders count ACCEPTED and receivers send ACK2
  login-storm  --conns clients connect and log in, --concurrency at a time
  idle         --conns clients log in and stay idle for --duration, and the
               server's heap and resident memory per connection are read
               from --admin (/stats and /metrics)

The server's default limits stop a load test, because every client comes from
one address. On the server, raise IRIS_LIMITS_SEND_RATE and
IRIS_LIMITS_SEND_BURST (sends per user) and IRIS_LIMITS_MAX_CONNECTIONS_PER_IP
(open connections per address) above the load, and set IRIS_LIMITS_CONN_RATE
and IRIS_LIMITS_CONN_BURST (new connections per address) to 0.

Exit status: 0 when every accepted message was delivered in order, 1 when a
message was lost or reordered, a v2 send got no answer, the server sent a
frame that fits no message of the run or closed a connection during it, a
client failed to log in or the run failed, and 2 for invalid flags.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.runBench(cmd.Context(), f)
		},
	}

	fl := cmd.Flags()
	fl.StringSliceVar(&f.addrs, "addr", []string{"127.0.0.1:8085"},
		"`host:port` of an edge's client listener; repeat it or separate with commas for several edges")
	fl.StringVar(&f.transport, "transport", "tcp", "client transport: tcp or ws")
	fl.StringVar(&f.wsPath, "ws-path", "/ws", "WebSocket URL `path`")
	fl.StringVar(&f.protocol, "protocol", "v1", "protocol profile: v1 (LOGIN, SEND, ACK) or v2 (LOGIN2, SEND2, ACK2)")
	fl.IntVar(&f.conns, "conns", 200, "number of client connections")
	fl.StringVar(&f.pairing, "pairing", "pairs",
		"steady mode: pairs (conns/2 sender-receiver pairs), fanin (conns-1 senders to one receiver) or random (conns/2 senders to random receivers)")
	fl.IntVar(&f.size, "size", 200, "message body size in `bytes`, at least 22")
	fl.Float64Var(&f.rate, "rate", 0, "total send rate in messages per second over all senders; 0 sends as fast as --inflight allows")
	fl.IntVar(&f.inflight, "inflight", 1, "messages a sender may have sent and not yet seen delivered; 1 waits for each delivery")
	fl.IntVar(&f.concurrency, "concurrency", 200, "connect-and-login attempts at once while clients are set up; 0 starts all at once")
	fl.StringVar(&f.mode, "mode", "steady", "what to measure: steady, login-storm or idle")
	fl.StringVar(&f.admin, "admin", "", "`host:port` of the server's admin endpoint; idle mode requires it")
	fl.BoolVar(&f.json, "json", false, "print the report as JSON")
	fl.StringVar(&f.userPrefix, "user-prefix", "bench", "start of every user name; a random run id follows it")

	fl.DurationVar(&f.duration, "duration", 10*time.Second,
		"steady: sending time, warm-up included; idle: how long the sessions are held before memory is read")
	fl.DurationVar(&f.warmup, "warmup", 2*time.Second, "steady: first part of --duration left out of the figures")
	fl.DurationVar(&f.drain, "drain", 10*time.Second,
		"steady: wait after the last send for outstanding deliveries; keep it above the server's redelivery timeout")
	fl.DurationVar(&f.stallTimeout, "stall-timeout", 5*time.Second,
		"steady: free the window slot of a message outstanding this long and count it as stalled")
	fl.DurationVar(&f.dialTimeout, "connect-timeout", 10*time.Second, "deadline of one connect and login")
	cmd.AddCommand(c.newBenchRelayCommand())
	return cmd
}

func (c *cli) newBenchRelayCommand() *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "Serve a relay that stores nothing, to measure the machine's ceiling",
		Long: `Serve a relay that speaks just enough of the client protocol for a steady
bench run (LOGIN, SEND, ACK, LOGIN2, SEND2, ACK2) and keeps nothing: every
message goes to its target's connection at once, and SEND2 is answered with
ACCEPTED before anything is stored. It is not a server; it loses what a
client misses.

Run 'iris bench' against it with the options of a server run. Its figures
are what the generator and the machine allow with no server work at all,
the ceiling for a server on the same cores. It runs until SIGINT or SIGTERM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.runBenchRelay(cmd.Context(), addr)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8095", "`host:port` to listen on")
	return cmd
}

func (c *cli) runBenchRelay(ctx context.Context, addr string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	r, err := loadgen.ListenRelay(addr)
	if err != nil {
		return failureError(fmt.Errorf("bench relay: %w", err))
	}
	fmt.Fprintf(c.stdout, "relay listening on %s; it stores nothing\n", r.Addr())
	<-ctx.Done()
	if err := r.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return failureError(fmt.Errorf("bench relay: %w", err))
	}
	return nil
}

// config turns the flags into a loadgen configuration.
func (f *benchFlags) config() (loadgen.Config, error) {
	cfg := loadgen.Config{
		Transport:      f.transport,
		WSPath:         f.wsPath,
		Conns:          f.conns,
		Pairing:        loadgen.Pairing(f.pairing),
		Size:           f.size,
		Rate:           f.rate,
		Inflight:       f.inflight,
		Duration:       f.duration,
		Warmup:         f.warmup,
		Drain:          f.drain,
		StallTimeout:   f.stallTimeout,
		ConnectTimeout: f.dialTimeout,
		Mode:           loadgen.Mode(f.mode),
		Admin:          f.admin,
		Concurrency:    f.concurrency,
		UserPrefix:     f.userPrefix,
	}
	for _, a := range f.addrs {
		if a = strings.TrimSpace(a); a != "" {
			cfg.Addrs = append(cfg.Addrs, a)
		}
	}
	switch f.protocol {
	case "v1", "1":
		cfg.Protocol = 1
	case "v2", "2":
		cfg.Protocol = 2
	default:
		return cfg, fmt.Errorf("invalid --protocol %q: expected v1 or v2", f.protocol)
	}
	if f.concurrency == 0 {
		cfg.Concurrency = max(f.conns, 1)
	}
	for name, d := range map[string]time.Duration{
		"duration": f.duration, "drain": f.drain, "stall-timeout": f.stallTimeout, "connect-timeout": f.dialTimeout,
	} {
		if d <= 0 {
			return cfg, fmt.Errorf("invalid --%s %s: expected a positive duration", name, d)
		}
	}
	return cfg, cfg.Validate()
}

func (c *cli) runBench(ctx context.Context, f *benchFlags) error {
	cfg, err := f.config()
	if err != nil {
		return usageError(err)
	}

	rep, runErr := loadgen.Run(ctx, cfg)
	if rep != nil {
		if f.json {
			enc := json.NewEncoder(c.stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(rep); err != nil {
				return failureError(fmt.Errorf("write report: %w", err))
			}
		} else if err := rep.WriteText(c.stdout); err != nil {
			return failureError(fmt.Errorf("write report: %w", err))
		}
	}
	if runErr != nil {
		return failureError(fmt.Errorf("bench: %w", runErr))
	}
	if err := rep.Failed(); err != nil {
		return failureError(fmt.Errorf("bench: %w", err))
	}
	return nil
}
