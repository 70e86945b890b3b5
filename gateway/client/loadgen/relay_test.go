package loadgen

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

func TestRelayCarriesSteadyRun(t *testing.T) {
	for _, protocol := range []int{1, 2} {
		r, err := ListenRelay("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{
			Mode:           ModeSteady,
			Transport:      "tcp",
			Protocol:       protocol,
			Addrs:          []string{r.Addr().String()},
			Conns:          20,
			Pairing:        PairingPairs,
			Size:           200,
			Inflight:       4,
			Duration:       time.Second,
			Warmup:         200 * time.Millisecond,
			Drain:          2 * time.Second,
			StallTimeout:   2 * time.Second,
			ConnectTimeout: 5 * time.Second,
			Concurrency:    20,
			UserPrefix:     "relay",
		}
		rep, err := Run(context.Background(), cfg)
		if cerr := r.Close(); cerr != nil {
			t.Errorf("v%d: close: %v", protocol, cerr)
		}
		if err != nil {
			t.Fatalf("v%d: run: %v", protocol, err)
		}
		st := rep.Steady
		if st.Delivered == 0 || st.Lost != 0 || st.OutOfOrder != 0 || st.Stalled != 0 {
			t.Errorf("v%d: delivered %d, lost %d, out of order %d, stalled %d; want deliveries and no faults",
				protocol, st.Delivered, st.Lost, st.OutOfOrder, st.Stalled)
		}
		if protocol == 2 && st.Accepted != st.Sent {
			t.Errorf("v2: accepted %d of %d sent", st.Accepted, st.Sent)
		}
	}
}

func TestRelayClosesClientThatStopsReading(t *testing.T) {
	r, err := ListenRelay("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	login := func(user string) net.Conn {
		c, err := net.Dial("tcp", r.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write(append([]byte{0x01}, user...)); err != nil {
			t.Fatal(err)
		}
		reply := make([]byte, 9)
		if _, err := io.ReadFull(c, reply); err != nil {
			t.Fatalf("%s: LOGIN_OK: %v", user, err)
		}
		return c
	}
	login("victim") // never reads again
	sender := login("sender")

	// 60 MB to the victim fills its socket buffers; the relay must give up
	// on the victim instead of blocking the sender for good.
	send := []byte{0x02, 0, 6}
	send = append(send, "victim"...)
	send = binary.BigEndian.AppendUint16(send, 60000)
	send = append(send, make([]byte, 60000)...)
	done := make(chan error, 1)
	go func() {
		for range 1000 {
			if _, err := sender.Write(send); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sender's writes failed: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a client that stops reading blocked the sender to it for 30 s")
	}
}
