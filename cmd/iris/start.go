package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/iris-im/iris/config"
	"github.com/iris-im/iris/supervisor/app"
)

// node is the running server as the start command drives it.
type node interface {
	// Stop shuts the node down and returns when it has stopped or ctx ends.
	Stop(ctx context.Context) error
	// Done is closed when the node stops on its own, such as after a fatal error.
	Done() <-chan struct{}
}

// startAppNode starts the real node and returns once its listeners are up.
func startAppNode(cfg *config.Config, logger *slog.Logger) (node, error) {
	n, err := app.Start(cfg, logger)
	if err != nil {
		return nil, err // a nil *app.Node must not become a non-nil node
	}
	go paceGC(n.Done())
	return n, nil
}

// startFlags maps the start command's flags to configuration keys.
var startFlags = []struct {
	name, key, usage string
}{
	{"role", "node.role", "services to run: all, core or edge"},
	{"data-dir", "node.data_dir", "`directory` of the durable store"},
	{"tcp-addr", "edge.tcp_addr", "`host:port` of the TCP client listener"},
	{"ws-addr", "edge.ws_addr", "`host:port` of the WebSocket client listener"},
	{"admin-addr", "admin.addr", "`host:port` of the admin HTTP server"},
	{"log-level", "log.level", "minimum log `level`: debug, info, warn or error"},
}

func (c *cli) newStartCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Start a node and run it until SIGINT or SIGTERM",
		Long: `Start a node with the role that node.role (or --role) selects, and run it until
SIGINT or SIGTERM. The node then gets 10 seconds to stop cleanly. A second
signal during that time ends the process at once.

Exit status: 0 after a clean stop, 1 when the node fails to start, stops on
its own or fails to stop, and 2 for invalid flags or configuration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.runStart(cmd.Context(), cmd.Flags())
		},
	}
	for _, f := range startFlags {
		cmd.Flags().String(f.name, "", fmt.Sprintf("%s (overrides %s)", f.usage, f.key))
	}
	return cmd
}

// flagOverrides returns the flags that the command line set, as
// configuration overrides. Flags left unset do not hide lower layers.
func flagOverrides(flags *pflag.FlagSet) []config.Override {
	var out []config.Override
	for _, f := range startFlags {
		flag := flags.Lookup(f.name)
		if flag != nil && flag.Changed {
			out = append(out, config.Override{Key: f.key, Value: flag.Value.String(), Flag: "--" + f.name})
		}
	}
	return out
}

func (c *cli) runStart(ctx context.Context, flags *pflag.FlagSet) error {
	cfg, err := config.Load(config.LoadOptions{File: c.configFile, Overrides: flagOverrides(flags), ForStart: true})
	if err != nil {
		return usageError(err)
	}
	logger, err := newLogger(cfg.Log, c.stderr)
	if err != nil {
		return usageError(err)
	}
	if c.setDefaultLogger {
		slog.SetDefault(logger)
	}

	// Register before starting, so a signal that arrives during startup is
	// kept in the channel instead of killing the process half-started.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)

	configFile := c.configFile
	if configFile == "" {
		configFile = "(built-in defaults)"
	}
	// The node logs its own "node started" and "node stopped" lines, so this
	// command logs only what the node cannot know: the configuration source,
	// the signal, and failures to start or stop.
	logger.Info("starting node", "node", cfg.Node.Name, "role", cfg.Node.Role, "config", configFile,
		"version", versionString())

	// The node creates node.data_dir on a first start, except in
	// production, where a missing data dir is an error.
	n, err := c.startNode(cfg, logger)
	if err != nil {
		logger.Error("node failed to start", "node", cfg.Node.Name, "err", err)
		return failureError(fmt.Errorf("start node: %w", err))
	}

	select {
	case sig := <-signals:
		logger.Info("stopping node", "node", cfg.Node.Name, "signal", sig.String(), "timeout", c.stopTimeout.String())
	case <-ctx.Done():
		logger.Info("stopping node", "node", cfg.Node.Name, "reason", context.Cause(ctx), "timeout", c.stopTimeout.String())
	case <-n.Done():
		logger.Error("node stopped on its own", "node", cfg.Node.Name)
		return failureError(errors.New("node stopped on its own; the log above gives the cause"))
	}
	// Restore the default action, so a second signal ends a stop that hangs.
	// NOTE: a signal that was ignored when the process started (SIGINT for a
	// background job of a non-interactive shell) goes back to being ignored.
	signal.Stop(signals)

	return c.stopNode(ctx, n, logger.With("node", cfg.Node.Name))
}

// stopNode calls n.Stop with a deadline of c.stopTimeout. If Stop ignores its
// context, stopNode gives up one second after the deadline, so the process
// still exits.
func (c *cli) stopNode(ctx context.Context, n node, logger *slog.Logger) error {
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.stopTimeout)
	defer cancel()
	stoppingAt := c.now()

	result := make(chan error, 1)
	go func() { result <- n.Stop(stopCtx) }()

	select {
	case err := <-result:
		if err != nil {
			logger.Error("node failed to stop cleanly", "err", err, "elapsed", c.now().Sub(stoppingAt).String())
			return failureError(fmt.Errorf("stop node: %w", err))
		}
		return nil
	case <-time.After(c.stopTimeout + time.Second):
		logger.Error("node did not stop in time", "timeout", c.stopTimeout.String())
		return failureError(fmt.Errorf("stop node: still running %s after the stop request", c.stopTimeout+time.Second))
	}
}
