package loadgen

import (
	"context"
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
