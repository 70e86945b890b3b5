package supervisor

import (
	"maps"
	"sync"
)

// Events counts supervision events for a whole supervision tree. Child supervisors share
// their parent's Events unless their Spec sets another one. It is safe for concurrent use.
//
// Children are keyed by their path: the supervisor's PID id, "/", and the child id. Children
// of a SimpleOneForOne supervisor are keyed by the template id rather than their generated
// names, so that thousands of short-lived children do not grow the maps.
type Events struct {
	mu            sync.Mutex
	restarts      map[string]uint64
	abnormalExits map[string]uint64
	escalations   map[string]uint64
	startFailures map[string]uint64
	shutdowns     map[string]uint64
}

// Stats is a point-in-time copy of the counters in Events.
type Stats struct {
	// Restarts counts restarts per child path, including children restarted because a
	// sibling exited (OneForAll, RestForOne).
	Restarts map[string]uint64
	// AbnormalExits counts panics per child path, including escalations of child supervisors.
	AbnormalExits map[string]uint64
	// Escalations counts, per supervisor PID id, the times it exceeded its intensity.
	Escalations map[string]uint64
	// StartFailures counts failed starts per child path, at initial start, restart or
	// dynamic start.
	StartFailures map[string]uint64
	// Shutdowns counts completed supervisor shutdowns per supervisor PID id.
	Shutdowns map[string]uint64
}

// NewEvents returns an Events with all counters at zero.
func NewEvents() *Events {
	return &Events{
		restarts:      make(map[string]uint64),
		abnormalExits: make(map[string]uint64),
		escalations:   make(map[string]uint64),
		startFailures: make(map[string]uint64),
		shutdowns:     make(map[string]uint64),
	}
}

// Snapshot copies the counters.
func (e *Events) Snapshot() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()

	return Stats{
		Restarts:      maps.Clone(e.restarts),
		AbnormalExits: maps.Clone(e.abnormalExits),
		Escalations:   maps.Clone(e.escalations),
		StartFailures: maps.Clone(e.startFailures),
		Shutdowns:     maps.Clone(e.shutdowns),
	}
}

// TotalRestarts sums Restarts over all children.
func (s Stats) TotalRestarts() uint64 {
	var total uint64
	for _, n := range s.Restarts {
		total += n
	}

	return total
}

// TotalEscalations sums Escalations over all supervisors.
func (s Stats) TotalEscalations() uint64 {
	var total uint64
	for _, n := range s.Escalations {
		total += n
	}

	return total
}

func (e *Events) add(counter map[string]uint64, key string) {
	e.mu.Lock()
	counter[key]++
	e.mu.Unlock()
}
