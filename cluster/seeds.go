package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"time"

	protocluster "github.com/asynkron/protoactor-go/cluster"
)

// Timing of the seed provider. A refresh well under a second keeps the
// member list fresh enough for proto.actor's identity lookup, which waits a
// fixed 5 s when it finds the list stale.
const (
	DefaultRefresh = 500 * time.Millisecond
	seedTimeout    = 400 * time.Millisecond
)

// memberPath is the HTTP path where a member serves its member record.
const memberPath = "/iris/cluster/member"

// memberRecord is the description of a member that it serves to the nodes polling it.
// Decoding ignores unknown fields, and Raft is optional, so nodes of the versions before
// and after Raft was added read each other's records.
type memberRecord struct {
	Cluster string       `json:"cluster"`
	ID      string       `json:"id"`
	Host    string       `json:"host"`
	Port    int          `json:"port"`
	Kinds   []string     `json:"kinds"`
	Raft    *RaftSummary `json:"raft,omitempty"` // filled when the record is served, nil without raft
}

// seedProvider is the "automanaged" cluster provider: a static list of seed
// addresses, each a member's discovery endpoint, polled every refresh. The
// members are the seeds that respond with this cluster's name, and a seed
// that stops responding leaves the member list at the next refresh. Members serve
// their own record on Options.DiscoveryAddr; clients only poll.
//
// It replaces proto.actor's automanaged provider, which serves plain HTTP on
// every interface and logs an error for each unreachable seed on every
// refresh. This one binds the discovery address only, uses the cluster's
// mutual TLS when it is set, and logs a seed only when its reachability
// changes.
type seedProvider struct {
	seeds   []string
	listen  string      // discovery address of a member; empty for a client
	tls     *tls.Config // nil for plain HTTP
	refresh time.Duration
	logger  *slog.Logger

	client *http.Client
	server *http.Server
	self   memberRecord
	raft   func() *RaftSummary // fills self.Raft when the record is served, nil without raft
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once

	// staleAfter is the age at which Records marks a seed's record stale.
	staleAfter time.Duration

	mu   sync.Mutex
	down map[string]bool // seed → unreachable at the last refresh
	// latest is each seed's most recent record of this cluster and when it was read,
	// for Records. Unlike last, it keeps the record of a seed that stopped responding,
	// so that the node can show that member as unreachable instead of dropping it.
	latest map[string]lastRecord

	// last is each seed's last record and when it was read. A seed that
	// does not respond in time keeps its record for unresponsiveGrace; see
	// poll. Only poll's goroutine uses it.
	last map[string]lastRecord
}

// lastRecord is a seed's most recent member record.
type lastRecord struct {
	record *memberRecord
	at     time.Time
}

// unresponsiveGrace is how long a member whose seed times out stays in the
// member list. NB: proto.actor blocks a member that leaves the list for the
// rest of that member's life (it must restart to join again), so one slow
// response, a long GC pause or a frozen poller must not count as a departure.
// A refused connection does: the process is gone, and failover should start
// at once.
const unresponsiveGrace = 5 * time.Second

func newSeedProvider(opts Options) *seedProvider {
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: seedTimeout}).DialContext,
		TLSClientConfig:     opts.TLS,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     30 * time.Second,
	}
	refresh := opts.Refresh
	if refresh <= 0 {
		refresh = DefaultRefresh
	}
	return &seedProvider{
		seeds:      slices.Clone(opts.Seeds),
		listen:     opts.DiscoveryAddr,
		tls:        opts.TLS,
		refresh:    refresh,
		logger:     opts.Logger,
		client:     &http.Client{Transport: transport, Timeout: seedTimeout},
		raft:       opts.Raft,
		stop:       make(chan struct{}),
		staleAfter: staleAfter(refresh),
		down:       make(map[string]bool),
		latest:     make(map[string]lastRecord),
		last:       make(map[string]lastRecord),
	}
}

// StartMember serves this member's record and starts polling the seeds.
func (p *seedProvider) StartMember(c *protocluster.Cluster) error {
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return err
	}
	p.self = memberRecord{Cluster: c.Config.Name, ID: c.ActorSystem.ID, Host: host, Port: port, Kinds: c.GetClusterKinds()}
	if err := p.serve(); err != nil {
		return err
	}
	p.start(c.Config.Name, c.MemberList.UpdateClusterTopology)
	return nil
}

// StartClient starts polling the seeds.
func (p *seedProvider) StartClient(c *protocluster.Cluster) error {
	p.start(c.Config.Name, c.MemberList.UpdateClusterTopology)
	return nil
}

// start publishes the members of cluster that a first poll finds and then polls every
// refresh until Shutdown.
func (p *seedProvider) start(cluster string, publish func(protocluster.Members)) {
	publish(p.poll(cluster))
	p.wg.Go(func() { p.run(cluster, publish) })
}

// Shutdown stops polling and serving.
func (p *seedProvider) Shutdown(bool) error {
	p.once.Do(func() { close(p.stop) })
	var err error
	if p.server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err = p.server.Shutdown(ctx)
	}
	p.wg.Wait()
	p.client.CloseIdleConnections()
	return err
}

func (p *seedProvider) serve() error {
	if p.listen == "" {
		return errors.New("cluster: a member needs a discovery address (cluster.discovery_port) for the automanaged provider")
	}
	ln, err := net.Listen("tcp", p.listen)
	if err != nil {
		return fmt.Errorf("cluster: listen for discovery on %s: %w", p.listen, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+memberPath, func(w http.ResponseWriter, _ *http.Request) {
		// The record is encoded per request because its raft summary changes with
		// every commit.
		body, err := p.encodeSelf()
		if err != nil {
			p.logger.Error("cluster: encode member record failed", "member", p.self.ID, "err", err)
			http.Error(w, "cluster: encode member record: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	p.server = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(p.logger.Handler(), slog.LevelDebug)}
	if p.tls != nil {
		cfg := p.tls.Clone()
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		ln = tls.NewListener(ln, cfg)
	}
	p.wg.Go(func() {
		if err := p.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.logger.Error("cluster: discovery server stopped", "addr", p.listen, "err", err)
		}
	})
	return nil
}

func (p *seedProvider) run(cluster string, publish func(protocluster.Members)) {
	ticker := time.NewTicker(p.refresh)
	defer ticker.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-ticker.C:
			publish(p.poll(cluster))
		}
	}
}

// poll requests the record of every seed, all at once, and returns the members of cluster
// among the seeds that reply, this member first.
func (p *seedProvider) poll(cluster string) protocluster.Members {
	records := make([]*memberRecord, len(p.seeds))
	errs := make([]error, len(p.seeds))
	var wg sync.WaitGroup
	for i, seed := range p.seeds {
		wg.Go(func() {
			r, err := p.fetch(seed)
			p.noteSeed(seed, err)
			errs[i] = err
			if err == nil && r.Cluster == cluster {
				records[i] = r
			}
		})
	}
	wg.Wait()

	now := time.Now()
	for i, seed := range p.seeds {
		switch {
		case errs[i] == nil:
			p.last[seed] = lastRecord{record: records[i], at: now}
		case isRefused(errs[i]):
			delete(p.last, seed)
		default:
			if last, ok := p.last[seed]; ok && now.Sub(last.at) < unresponsiveGrace {
				records[i] = last.record
			}
		}
	}
	p.keepLatest(records, errs, now)

	var members protocluster.Members
	seen := make(map[string]bool)
	add := func(r *memberRecord) {
		if r == nil || seen[r.ID] {
			return
		}
		seen[r.ID] = true
		members = append(members, &protocluster.Member{Id: r.ID, Host: r.Host, Port: int32(r.Port), Kinds: r.Kinds})
	}
	if p.self.ID != "" {
		add(&p.self) // a member always lists itself, even when it is not a seed
	}
	for _, r := range records {
		add(r)
	}
	return members
}

// isRefused reports whether err is a refused connection, which means that
// nothing listens at the seed because its process stopped or was killed.
func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

func (p *seedProvider) fetch(seed string) (*memberRecord, error) {
	scheme := "http"
	if p.tls != nil {
		scheme = "https"
	}
	resp, err := p.client.Get(scheme + "://" + seed + memberPath)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	var r memberRecord
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 64<<10)).Decode(&r); err != nil {
		return nil, fmt.Errorf("invalid member record: %w", err)
	}
	return &r, nil
}

// noteSeed logs a seed when it becomes unreachable or reachable again, not on every refresh.
func (p *seedProvider) noteSeed(seed string, err error) {
	p.mu.Lock()
	wasDown, known := p.down[seed]
	p.down[seed] = err != nil
	p.mu.Unlock()
	switch {
	case err != nil && (!known || !wasDown):
		p.logger.Warn("cluster: seed unreachable", "seed", seed, "err", err)
	case err == nil && wasDown:
		p.logger.Info("cluster: seed reachable again", "seed", seed)
	}
}
