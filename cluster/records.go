package cluster

import (
	"encoding/json"
	"slices"
	"time"
)

// RaftSummary is a core's raft state as its member record carries it, so that every node
// polling the seeds reads the state of every core and not only its own.
type RaftSummary struct {
	ID           string `json:"id"`     // raft server ID
	State        string `json:"state"`  // Leader, Follower, Candidate or Shutdown
	Leader       string `json:"leader"` // raft server ID of the leader, empty during an election
	Term         uint64 `json:"term"`
	LastLogIndex uint64 `json:"last_log_index"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"` // last entry applied to the member's store
}

// MemberRecord is a member's record as this node last read it from a seed.
type MemberRecord struct {
	// Seed is the discovery address the record was read from. This member's own record
	// has its own discovery address.
	Seed  string
	ID    string // the member's ID in the cluster member list
	Host  string // remoting host
	Port  int    // remoting port
	Kinds []string
	// Raft is the member's raft state when the record was read. It is nil when the member
	// sent none: it runs without raft, its store is closed, or it runs an older version.
	Raft *RaftSummary
	// ReadAt is when this node read the record. This member's own record is read at the
	// call to Records.
	ReadAt time.Time
	// Stale is true when the seed has not served a newer record for staleAfter, because
	// it timed out or refused the later polls. Records still returns it.
	Stale bool
}

// staleRefreshes is how many refresh periods a seed's record may go without a newer one
// before Records marks it stale.
const staleRefreshes = 3

// staleAfter returns the age at which a seed's record is stale: staleRefreshes missed
// refreshes, plus one seed timeout for the poll in flight.
func staleAfter(refresh time.Duration) time.Duration {
	return staleRefreshes*refresh + seedTimeout
}

// Records returns copies of the latest member records that this node read from its seeds,
// in seed order. A member also returns its own record first, with its raft state read at
// the call. A member that two seed addresses reach appears once, with its newest record.
// Records returns nil for a provider other than automanaged, which keeps no records.
// It is safe for concurrent use with the polling.
func (m *Member) Records() []MemberRecord {
	p, ok := m.Cluster.Config.ClusterProvider.(*seedProvider)
	if !ok {
		return nil
	}
	return p.records(time.Now())
}

// records implements Records, judging staleness at now.
func (p *seedProvider) records(now time.Time) []MemberRecord {
	var out []MemberRecord
	position := make(map[string]int) // member ID → index in out
	if p.self.ID != "" {
		self := p.selfRecord()
		out = append(out, copyRecord(p.listen, &self, now, false))
		position[self.ID] = 0
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	for _, seed := range p.seeds {
		latest, ok := p.latest[seed]
		if !ok {
			continue
		}
		r := copyRecord(seed, latest.record, latest.at, now.Sub(latest.at) > p.staleAfter)
		i, seen := position[r.ID]
		switch {
		case !seen:
			position[r.ID] = len(out)
			out = append(out, r)
		case r.ID != p.self.ID && r.ReadAt.After(out[i].ReadAt):
			out[i] = r
		}
	}
	return out
}

// copyRecord returns r as a MemberRecord that shares no memory with r.
func copyRecord(seed string, r *memberRecord, readAt time.Time, stale bool) MemberRecord {
	out := MemberRecord{
		Seed:   seed,
		ID:     r.ID,
		Host:   r.Host,
		Port:   r.Port,
		Kinds:  slices.Clone(r.Kinds),
		ReadAt: readAt,
		Stale:  stale,
	}
	if r.Raft != nil {
		raft := *r.Raft
		out.Raft = &raft
	}
	return out
}

// keepLatest stores the records that one poll read, for Records. A seed that failed keeps
// its previous record, which ages until Records marks it stale. A seed that now serves
// another cluster's record loses its record.
func (p *seedProvider) keepLatest(records []*memberRecord, errs []error, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, seed := range p.seeds {
		switch {
		case errs[i] != nil:
		case records[i] == nil:
			delete(p.latest, seed)
		default:
			p.latest[seed] = lastRecord{record: records[i], at: now}
		}
	}
}

// selfRecord returns this member's record with its raft state as of now.
func (p *seedProvider) selfRecord() memberRecord {
	record := p.self
	if p.raft != nil {
		record.Raft = p.raft()
	}
	return record
}

// encodeSelf returns this member's record as JSON, with its raft state as of now.
func (p *seedProvider) encodeSelf() ([]byte, error) {
	return json.Marshal(p.selfRecord())
}
