package supervisor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// DefaultRequestTimeout bounds each request a Ref sends, unless WithTimeout changes it.
const DefaultRequestTimeout = 5 * time.Second

// Ref is a handle to a running supervisor. Its methods send requests to the supervisor
// actor and wait for the reply, so they may be called from any goroutine, including
// other actors' handlers.
//
// A child that calls its own supervisor from its Started handler while that supervisor is
// starting it waits until the request times out, because the supervisor is busy starting
// that child. OTP has the same deadlock when init/1 calls the supervisor.
type Ref struct {
	system  *actor.ActorSystem
	pid     *actor.PID
	timeout time.Duration
	top     *topLevel
	events  *Events
}

// topLevel carries the exit of a supervisor started with Start to its Ref.
type topLevel struct {
	done chan struct{}
	once sync.Once
	err  error
}

func (t *topLevel) finish(err error) {
	t.once.Do(func() {
		t.err = err
		close(t.done)
	})
}

// Start spawns a top-level supervisor named name under the actor system's root and starts
// its children in order. It returns a *StartError naming the child when a child fails to
// start, after stopping the children already started in reverse order. When the
// supervisor exceeds its intensity it stops, and Done and Err report it.
func Start(system *actor.ActorSystem, name string, spec Spec) (*Ref, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if spec.Logger == nil {
		spec.Logger = system.Logger()
	}
	if spec.Events == nil {
		spec.Events = NewEvents()
	}

	top := &topLevel{done: make(chan struct{})}
	result := make(chan error, 1)
	props := actor.PropsFromProducer(func() actor.Actor {
		return newSupervisorActor(spec, false, result, top)
	})

	pid, err := system.Root.SpawnNamed(props, name)
	if err != nil {
		return nil, fmt.Errorf("start supervisor %q: %w", name, err)
	}
	if err := <-result; err != nil {
		<-top.done

		return nil, err
	}

	return &Ref{system: system, pid: pid, timeout: DefaultRequestTimeout, top: top, events: spec.Events}, nil
}

// NewRef returns a Ref for the supervisor at pid, for example a child supervisor found
// with WhichChildren or ChildPID. Done and Events are only available on Refs from Start.
func NewRef(system *actor.ActorSystem, pid *actor.PID) *Ref {
	return &Ref{system: system, pid: pid, timeout: DefaultRequestTimeout}
}

// WithTimeout returns a copy of r whose requests wait at most d for a reply.
func (r *Ref) WithTimeout(d time.Duration) *Ref {
	copied := *r
	copied.timeout = d

	return &copied
}

// PID returns the supervisor's PID.
func (r *Ref) PID() *actor.PID { return r.pid }

// Events returns the counters of the tree started with Start, or nil for a Ref from NewRef.
func (r *Ref) Events() *Events { return r.events }

// Done returns a channel that is closed when a supervisor started with Start has stopped,
// after Stop or an escalation. It returns nil for a Ref from NewRef.
func (r *Ref) Done() <-chan struct{} {
	if r.top == nil {
		return nil
	}

	return r.top.done
}

// Err returns the *EscalationError that stopped a top-level supervisor, or nil while it
// runs, after a plain Stop, and for a Ref from NewRef.
func (r *Ref) Err() error {
	if r.top == nil {
		return nil
	}
	select {
	case <-r.top.done:
		return r.top.err
	default:
		return nil
	}
}

// ChildPID returns the stable PID of the child id. Messages sent to it reach whichever
// incarnation of the child runs when they are delivered. Messages sent while the child is
// being restarted go to dead letters, as sends to an unregistered name do in OTP.
func (r *Ref) ChildPID(id string) *actor.PID {
	return actor.NewPID(r.pid.Address, r.pid.Id+"/"+id)
}

// Child returns a Ref for the child supervisor id through its stable PID, so the Ref stays
// valid across restarts of that supervisor.
func (r *Ref) Child(id string) *Ref {
	return &Ref{system: r.system, pid: r.ChildPID(id), timeout: r.timeout}
}

// StartChild adds spec to a static supervisor and starts it after the existing children.
// A spec whose start fails is not kept.
func (r *Ref) StartChild(spec ChildSpec) (*actor.PID, error) {
	reply, err := request[*childReply](r, &startChildRequest{spec: spec})
	if err != nil {
		return nil, err
	}

	return reply.pid, reply.err
}

// StartSimpleChild starts a child of a SimpleOneForOne supervisor from its template, with
// arg passed to the template's start function. The child's id is the last element of the
// returned PID's id.
func (r *Ref) StartSimpleChild(arg any) (*actor.PID, error) {
	reply, err := request[*childReply](r, &startSimpleChildRequest{arg: arg})
	if err != nil {
		return nil, err
	}

	return reply.pid, reply.err
}

// TerminateChild stops the child id within its shutdown timeout and does not restart it.
// The spec stays, so RestartChild can start it again, except for temporary children and
// SimpleOneForOne children, whose spec is removed.
func (r *Ref) TerminateChild(id string) error {
	reply, err := request[*childReply](r, &terminateChildRequest{id: id})
	if err != nil {
		return err
	}

	return reply.err
}

// RestartChild starts the stopped child id again from its spec.
func (r *Ref) RestartChild(id string) (*actor.PID, error) {
	reply, err := request[*childReply](r, &restartChildRequest{id: id})
	if err != nil {
		return nil, err
	}

	return reply.pid, reply.err
}

// DeleteChild removes the spec of the stopped child id.
func (r *Ref) DeleteChild(id string) error {
	reply, err := request[*childReply](r, &deleteChildRequest{id: id})
	if err != nil {
		return err
	}

	return reply.err
}

// WhichChildren lists the children in start order.
func (r *Ref) WhichChildren() ([]ChildInfo, error) {
	reply, err := request[*childrenReply](r, &whichChildrenRequest{})
	if err != nil {
		return nil, err
	}

	return reply.children, nil
}

// CountChildren counts the children by state and kind.
func (r *Ref) CountChildren() (Counts, error) {
	reply, err := request[*countsReply](r, &countChildrenRequest{})
	if err != nil {
		return Counts{}, err
	}

	return reply.counts, nil
}

// Stop shuts the supervisor down: it stops its children in reverse start order, each
// within its shutdown timeout, and then stops itself. Stop waits until the supervisor has
// terminated or ctx is done. On a child supervisor this counts as a normal exit, so a
// permanent one is restarted by its parent. The parent's TerminateChild stops it for good.
func (r *Ref) Stop(ctx context.Context) error {
	done, cancel := watchExit(r.system, r.pid)
	defer cancel()

	r.system.Root.Stop(r.pid)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop supervisor %s: %w", r.pid.Id, ctx.Err())
	}
}

// request sends message to the supervisor and waits for a reply of type T.
func request[T any](r *Ref, message any) (T, error) {
	var zero T

	result, err := r.system.Root.RequestFuture(r.pid, message, r.timeout).Result()
	switch {
	case errors.Is(err, actor.ErrTimeout):
		return zero, fmt.Errorf("supervisor %s: %w after %s", r.pid.Id, ErrTimeout, r.timeout)
	case errors.Is(err, actor.ErrDeadLetter):
		return zero, fmt.Errorf("supervisor %s: %w", r.pid.Id, ErrNotRunning)
	case err != nil:
		return zero, fmt.Errorf("supervisor %s: request failed: %w", r.pid.Id, err)
	}

	reply, ok := result.(T)
	if !ok {
		return zero, fmt.Errorf("supervisor %s: unexpected reply %T", r.pid.Id, result)
	}

	return reply, nil
}
