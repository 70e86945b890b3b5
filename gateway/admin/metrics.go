package admin

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/iris-im/iris/actors"
)

// collector exports the node's counters, histograms and gauges to
// Prometheus at scrape time. It reads the same sources as /stats, so the two
// never disagree by more than the time between two reads.
type collector struct {
	cfg *Config

	events          *prometheus.Desc
	sessions        *prometheus.Desc
	deliveryLatency *prometheus.Desc
	writeLatency    *prometheus.Desc
	actorsLive      *prometheus.Desc
	mailbox         *prometheus.Desc
	processes       *prometheus.Desc
	deadLetters     *prometheus.Desc
	backlog         *prometheus.Desc
	raftLag         *prometheus.Desc
	raftApplied     *prometheus.Desc
	raftCommit      *prometheus.Desc
	raftTerm        *prometheus.Desc
	raftLeader      *prometheus.Desc
	raftVoters      *prometheus.Desc
	members         *prometheus.Desc
	restarts        *prometheus.Desc
	crashes         *prometheus.Desc
	escalations     *prometheus.Desc
}

func newCollector(cfg *Config) *collector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &collector{
		cfg:             cfg,
		events:          desc("iris_events_total", "Events counted by the node's actors, by kind: received (messages in), delivered (out), acked, redelivered, deduplicated, rejected and more.", "event"),
		sessions:        desc("iris_sessions", "Live client sessions, by transport.", "transport"),
		deliveryLatency: desc("iris_delivery_latency_seconds", "Time from a sender's session taking a message to its first write to a live recipient's connection."),
		writeLatency:    desc("iris_store_write_latency_seconds", "Time from an append to the store to its durable result: an fsync on one node, a raft commit in a cluster."),
		actorsLive:      desc("iris_actors", "Live actors, by kind.", "kind"),
		mailbox:         desc("iris_mailbox_depth", "Messages waiting in the mailboxes of the actors of a kind.", "kind"),
		processes:       desc("iris_actor_processes", "Every process the node's actor system holds, of all kinds."),
		deadLetters:     desc("iris_dead_letters_total", "Messages sent to actors that no longer exist."),
		backlog:         desc("iris_inbox_backlog", "Unacknowledged entries in all inboxes of this node's store."),
		raftLag:         desc("iris_raft_lag_entries", "Committed raft entries this core has not applied yet."),
		raftApplied:     desc("iris_raft_applied_index", "The last raft index applied to this core's store."),
		raftCommit:      desc("iris_raft_commit_index", "The last raft index this core knows to be committed."),
		raftTerm:        desc("iris_raft_term", "This core's current raft term."),
		raftLeader:      desc("iris_raft_leader", "1 while this core is the raft leader, else 0."),
		raftVoters:      desc("iris_raft_voters", "Voters in the raft configuration."),
		members:         desc("iris_cluster_members", "Cluster members this node sees."),
		restarts:        desc("iris_supervisor_restarts_total", "Restarts of supervised children, by child path.", "child"),
		crashes:         desc("iris_supervisor_abnormal_exits_total", "Crashes of supervised children, by child path.", "child"),
		escalations:     desc("iris_supervisor_escalations_total", "Supervisors that exceeded their restart intensity, by supervisor.", "supervisor"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.cfg.Stats
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}

	for name, v := range counters(st) {
		counter(c.events, float64(v), name)
	}
	gauge(c.sessions, float64(st.SessionsTCP.Load()), "tcp")
	gauge(c.sessions, float64(st.SessionsWS.Load()), "ws")
	ch <- histogram(c.deliveryLatency, st.DeliveryLatency.Snapshot())
	ch <- histogram(c.writeLatency, st.StoreWriteLatency.Snapshot())
	st.Actors.Each(func(name string, k *actors.Kind) {
		gauge(c.actorsLive, float64(k.Live()), name)
		gauge(c.mailbox, float64(k.Mailbox()), name)
	})
	if c.cfg.Processes != nil {
		gauge(c.processes, float64(c.cfg.Processes()))
	}
	counter(c.deadLetters, float64(st.DeadLetters.Load()))
	if c.cfg.Backlog != nil {
		if n, ok := c.cfg.Backlog(); ok {
			gauge(c.backlog, float64(n))
		}
	}
	if c.cfg.Members != nil {
		// Members() keeps a member that left the list, marked unreachable, so the gauge
		// counts only the reachable ones.
		reachable := 0
		for _, m := range c.cfg.Members() {
			if m.Reachable {
				reachable++
			}
		}
		gauge(c.members, float64(reachable))
	}
	if c.cfg.Raft != nil {
		if r := c.cfg.Raft(); r != nil {
			gauge(c.raftLag, float64(r.Lag))
			gauge(c.raftApplied, float64(r.AppliedIndex))
			gauge(c.raftCommit, float64(r.CommitIndex))
			gauge(c.raftTerm, float64(r.Term))
			leader := 0.0
			if r.State == "Leader" {
				leader = 1
			}
			gauge(c.raftLeader, leader)
			gauge(c.raftVoters, float64(len(r.Voters)))
		}
	}
	c.collectSupervision(ch)
}

func (c *collector) collectSupervision(ch chan<- prometheus.Metric) {
	if c.cfg.Supervision == nil {
		return
	}
	sup := c.cfg.Supervision.Snapshot()
	perLabel := func(d *prometheus.Desc, counts map[string]uint64) {
		for label, n := range counts {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(n), label)
		}
	}
	perLabel(c.restarts, sup.Restarts)
	perLabel(c.crashes, sup.AbnormalExits)
	perLabel(c.escalations, sup.Escalations)
}

// histogram converts a latency histogram to a Prometheus one in seconds.
func histogram(d *prometheus.Desc, h actors.HistogramSnapshot) prometheus.Metric {
	buckets := make(map[float64]uint64, len(actors.LatencyBounds))
	var cumulative uint64
	for i, bound := range actors.LatencyBounds {
		cumulative += h.Counts[i]
		buckets[bound.Seconds()] = cumulative
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum.Seconds(), buckets)
}
