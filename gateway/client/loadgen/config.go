// Package loadgen is a load generator for Iris servers. It opens client
// connections with the spec-only client in gateway/client, logs them in,
// and then either sends messages between them (steady mode), measures how
// fast a crowd of clients logs in (login storm), or holds idle sessions and
// reads the server's memory from its admin endpoints (idle mode).
//
// The generator holds both ends of every message, so each receiver checks
// the order and end-to-end latency of what it gets and every message can be
// accounted for: a message the server accepted and never delivered is
// reported as lost.
package loadgen

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/iris-im/iris/gateway/client"
)

// Mode selects what Run measures.
type Mode string

// The modes of Run.
const (
	ModeSteady     Mode = "steady"      // senders send to receivers for Duration
	ModeLoginStorm Mode = "login-storm" // Conns clients connect and log in, then leave
	ModeIdle       Mode = "idle"        // Conns clients log in and stay idle while server memory is read
)

// Pairing selects which receiver each message of steady mode goes to.
type Pairing string

// The pairings of steady mode.
const (
	// PairingPairs splits the connections into Conns/2 sender-receiver
	// pairs, and each sender sends only to its own receiver.
	PairingPairs Pairing = "pairs"
	// PairingFanIn makes Conns-1 senders send to one receiver, the load of
	// one busy user.
	PairingFanIn Pairing = "fanin"
	// PairingRandom has Conns/2 senders send each message to a receiver
	// chosen at random out of Conns/2.
	PairingRandom Pairing = "random"
)

// Config describes one run. The zero value of a field means the default
// that Validate documents next to it.
type Config struct {
	// Addrs are the client listeners (host:port) of the edges. Connection i
	// goes to Addrs[i % len(Addrs)]. Required.
	Addrs []string
	// Transport is client.TransportTCP ("tcp", the default) or
	// client.TransportWebSocket ("ws").
	Transport string
	// WSPath is the WebSocket URL path. Default "/ws".
	WSPath string
	// Protocol is 1 (LOGIN, SEND, ACK, the default) or 2 (LOGIN2, SEND2,
	// ACK2).
	Protocol int
	// Conns is the number of client connections. Default 200.
	Conns int
	// Pairing is how steady mode matches senders to receivers. Default
	// PairingPairs.
	Pairing Pairing
	// Size is the message body size in bytes, at least PayloadHeaderSize.
	// Default 200.
	Size int
	// Rate is the total send rate in messages per second over all senders.
	// 0 sends as fast as the window allows. With a rate, latency is
	// measured from each message's scheduled send time, so a stalled
	// sender does not hide the wait of the messages it did not send.
	Rate float64
	// Inflight is how many messages a sender may have sent and not yet seen
	// delivered before it waits. 1 sends a message and waits for its
	// delivery before the next. Default 1.
	Inflight int
	// Duration is how long steady mode sends, warm-up included, and how long
	// idle mode holds its sessions before reading memory. Default 10s.
	Duration time.Duration
	// Warmup is the first part of Duration whose messages are left out of
	// the figures. Default 0.
	Warmup time.Duration
	// Drain is how long steady mode waits after the last send for
	// outstanding messages to arrive before it counts the missing ones as
	// lost. It should exceed the server's redelivery timeout (5s by
	// default). Default 10s.
	Drain time.Duration
	// StallTimeout frees a window slot whose message has been outstanding
	// this long, so that one lost message does not stop its sender for the
	// rest of the run. Such messages count as the error "stalled". Default 5s.
	StallTimeout time.Duration
	// Mode selects what is measured. Default ModeSteady.
	Mode Mode
	// Admin is the server's admin address (host:port). Idle mode requires
	// it to read memory from /stats and /metrics.
	Admin string
	// Concurrency is how many connect-and-login attempts run at once while
	// clients are set up. Default 200. A value of Conns or more starts them
	// all at once.
	Concurrency int
	// ConnectTimeout bounds one connect and login. Default 10s.
	ConnectTimeout time.Duration
	// UserPrefix starts every user name. A random run id follows it, so
	// runs against one server never share an inbox. Default "bench".
	UserPrefix string
}

// withDefaults returns c with the defaults applied.
func (c Config) withDefaults() Config {
	if c.Transport == "" {
		c.Transport = client.TransportTCP
	}
	if c.WSPath == "" {
		c.WSPath = "/ws"
	}
	if c.Protocol == 0 {
		c.Protocol = 1
	}
	if c.Conns == 0 {
		c.Conns = 200
	}
	if c.Pairing == "" {
		c.Pairing = PairingPairs
	}
	if c.Size == 0 {
		c.Size = 200
	}
	if c.Inflight == 0 {
		c.Inflight = 1
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Drain == 0 {
		c.Drain = 10 * time.Second
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = 5 * time.Second
	}
	if c.Mode == "" {
		c.Mode = ModeSteady
	}
	if c.Concurrency == 0 {
		c.Concurrency = 200
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.UserPrefix == "" {
		c.UserPrefix = "bench"
	}
	return c
}

// Validate applies the defaults and returns every invalid field in one
// error.
func (c Config) Validate() error {
	c = c.withDefaults()
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if len(c.Addrs) == 0 {
		add("no server address: give at least one host:port")
	}
	for _, a := range c.Addrs {
		if !strings.Contains(a, ":") {
			add("address %q: expected host:port", a)
		}
	}
	if c.Transport != client.TransportTCP && c.Transport != client.TransportWebSocket {
		add("transport %q: expected %q or %q", c.Transport, client.TransportTCP, client.TransportWebSocket)
	}
	if c.Protocol != 1 && c.Protocol != 2 {
		add("protocol %d: expected 1 or 2", c.Protocol)
	}
	switch c.Mode {
	case ModeSteady:
		c.validateSteady(add)
	case ModeLoginStorm:
		if c.Conns < 1 {
			add("conns %d: expected at least 1", c.Conns)
		}
	case ModeIdle:
		if c.Conns < 1 {
			add("conns %d: expected at least 1", c.Conns)
		}
		if c.Admin == "" {
			add("idle mode reads server memory, so it needs the admin address")
		}
	default:
		add("mode %q: expected %q, %q or %q", c.Mode, ModeSteady, ModeLoginStorm, ModeIdle)
	}
	if c.Concurrency < 0 {
		add("concurrency %d: expected at least 1", c.Concurrency)
	}
	if c.Duration < 0 || c.Warmup < 0 || c.Drain < 0 || c.StallTimeout < 0 || c.ConnectTimeout < 0 {
		add("durations must not be negative")
	}

	if len(problems) > 0 {
		return errors.New("invalid load configuration: " + strings.Join(problems, "; "))
	}
	return nil
}

func (c Config) validateSteady(add func(string, ...any)) {
	switch c.Pairing {
	case PairingPairs, PairingRandom, PairingFanIn:
	default:
		add("pairing %q: expected %q, %q or %q", c.Pairing, PairingPairs, PairingFanIn, PairingRandom)
	}
	if c.Conns < 2 {
		add("conns %d: steady mode needs at least 2 (a sender and a receiver)", c.Conns)
	}
	if c.Size < PayloadHeaderSize {
		add("size %d: a message carries a %d-byte header, so it must be at least that", c.Size, PayloadHeaderSize)
	}
	if c.Protocol == 1 && c.Size > 65535 {
		add("size %d: a v1 SEND holds at most 65535 bytes", c.Size)
	}
	if c.Rate < 0 {
		add("rate %g: expected 0 (unpaced) or more", c.Rate)
	}
	if c.Inflight < 1 {
		add("inflight %d: expected at least 1", c.Inflight)
	}
	if c.Warmup >= c.Duration {
		add("warmup %s must be shorter than duration %s", c.Warmup, c.Duration)
	}
}

// roles returns the number of senders and receivers of steady mode.
func (c Config) roles() (senders, receivers int) {
	switch c.Pairing {
	case PairingFanIn:
		return c.Conns - 1, 1
	default:
		return c.Conns / 2, c.Conns / 2
	}
}
