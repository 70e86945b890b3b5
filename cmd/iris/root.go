package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/iris-im/iris/config"
)

// Exit statuses. Cobra's own errors (unknown flag or command, missing
// required flag) also exit with exitUsage.
const (
	exitFailure = 1 // the node failed to start, stopped on its own or failed to stop
	exitUsage   = 2 // invalid flags, arguments or configuration
)

// exitError is a command error with the exit status it calls for.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageError(err error) error   { return &exitError{code: exitUsage, err: err} }
func failureError(err error) error { return &exitError{code: exitFailure, err: err} }

// cli contains what the commands read and write outside their flags, so
// tests can run them in process with fakes.
type cli struct {
	stdout, stderr io.Writer
	now            func() time.Time
	startNode      func(*config.Config, *slog.Logger) (node, error)

	// stopTimeout is the deadline that node.Stop gets after a signal.
	stopTimeout time.Duration
	// setDefaultLogger makes the node's logger the slog default, for code
	// that logs through slog.Default. Tests leave it off to keep the
	// process-wide default untouched.
	setDefaultLogger bool

	configFile string // --config, shared by every command
}

// run executes the command line args and returns the exit status.
func run(ctx context.Context, args []string) int {
	c := &cli{
		stdout:           os.Stdout,
		stderr:           os.Stderr,
		now:              time.Now,
		startNode:        startAppNode,
		stopTimeout:      10 * time.Second,
		setDefaultLogger: true,
	}
	return c.execute(ctx, args)
}

// execute runs one command line. A failure prints one line, "iris: <error>",
// to stderr.
func (c *cli) execute(ctx context.Context, args []string) int {
	root := c.newRootCommand()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}

	message := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	fmt.Fprintf(c.stderr, "iris: %s\n", message)

	var exit *exitError
	if errors.As(err, &exit) {
		return exit.code
	}
	return exitUsage
}

func (c *cli) newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "iris",
		Short: "Iris chat server",
		Long: `Iris is a chat server. Clients connect over TCP or WebSocket to edge nodes, and
core nodes store every user's inbox until the user acknowledges each message.

Settings come from four layers, each overriding the one before: built-in
defaults, the YAML file given with --config, environment variables named
IRIS_<SECTION>_<KEY> (such as IRIS_AUTH_JWT_SECRET), and command-line flags.`,
		Version:       versionString(),
		SilenceErrors: true, // execute prints the error as one line
		SilenceUsage:  true,
	}
	root.SetOut(c.stdout)
	root.SetErr(c.stderr)
	root.SetVersionTemplate(versionLine() + "\n")
	root.PersistentFlags().StringVar(&c.configFile, "config", "",
		"YAML configuration `file` read over the built-in defaults")

	root.AddCommand(c.newStartCommand(), c.newTokenCommand(), c.newStatusCommand(), c.newVersionCommand(), c.newBenchCommand())
	return root
}
