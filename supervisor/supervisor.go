// Package supervisor adds OTP supervision semantics to proto.actor. It provides the
// strategies one_for_one, one_for_all, rest_for_one and simple_one_for_one, and permanent,
// transient and temporary children. Children start in order and stop in reverse order,
// each within its shutdown timeout. A supervisor past its restart intensity escalates to
// its parent. Children can be added and removed at run time, and their PIDs keep their
// name across restarts. docs/supervision.md compares each rule with OTP's.
//
// A supervisor is an actor. Start runs a top-level one and returns a Ref; StartSupervisor
// and SupervisorChild nest one under another.
package supervisor

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

type supervisorState int

const (
	stateStarting supervisorState = iota
	stateRunning
	stateEscalated
	stateStopping
)

// child is one supervised child and its current incarnation.
type child struct {
	spec ChildSpec
	// name is the actor name under the supervisor: spec.ID for static children and
	// "<template id>-<n>" for SimpleOneForOne children. It stays the same across restarts.
	name string
	arg  any
	// pid is the running incarnation, nil while the child is not running. Incarnations
	// share a PID id, so the supervisor distinguishes them by pointer, because proto.actor
	// reports Terminated and Failure with the same *actor.PID that SpawnNamed returned.
	pid      *actor.PID
	restarts int
	seq      uint64
}

// supervisorActor owns its children's specs, their running incarnations and the restart
// history. It handles the requests sent by Ref, *actor.Terminated for children that
// stopped on their own (a normal exit), and *actor.Failure, through HandleFailure, for
// children that panicked (an abnormal exit).
//
// proto.actor alone restarts a panicking child in place with the same PID and stops it
// once past the restart limit. This actor instead stops the failed incarnation, waits until
// its name is free, and spawns a fresh one under the same name. While it starts, restarts or
// stops children it blocks inside its handler, as an OTP supervisor does, so requests wait.
type supervisorActor struct {
	spec   Spec
	nested bool
	result chan<- error
	top    *topLevel

	ctx    actor.Context
	path   string
	logger *slog.Logger
	events *Events
	state  supervisorState

	children     []*child
	simple       map[string]*child
	simpleSeq    uint64
	running      map[*actor.PID]*child
	restartTimes []time.Time
	escalation   *EscalationError
}

// retryRestart requests another attempt at a restart whose start failed. Like OTP's
// try_again_restart, each attempt counts toward the intensity.
type retryRestart struct {
	child  *child
	reason string
}

func newSupervisorActor(spec Spec, nested bool, result chan<- error, top *topLevel) *supervisorActor {
	return &supervisorActor{
		spec:    spec,
		nested:  nested,
		result:  result,
		top:     top,
		logger:  spec.Logger,
		events:  spec.Events,
		simple:  make(map[string]*child),
		running: make(map[*actor.PID]*child),
	}
}

// Receive handles lifecycle messages, child exits and Ref requests.
func (s *supervisorActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		s.ctx = ctx
		s.path = ctx.Self().Id
		s.init()
	case *actor.Restarting:
		// Reached only if proto.actor restarts this actor in place after a panic in this
		// package, which its parent guardian may do for a top-level supervisor.
		s.state = stateStopping
		s.terminateAll()
	case *actor.Stopping:
		s.shutdown()
	case *actor.Stopped:
		s.finish()
	case *actor.Terminated:
		s.handleExit(msg.Who, false, "normal")
	case *retryRestart:
		s.retry(msg)
	default:
		s.handleRequest(ctx, msg)
	}
}

// HandleFailure receives the failures of children. proto.actor calls it on this actor's
// goroutine in place of a supervisor strategy, because the actor implements
// actor.SupervisorStrategy.
func (s *supervisorActor) HandleFailure(_ *actor.ActorSystem, _ actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason any, _ any) {
	s.handleExit(child, true, fmt.Sprint(reason))
}

// init starts the static children in order. The first failure stops the children already
// started, in reverse order, and stops the supervisor.
func (s *supervisorActor) init() {
	if s.spec.Strategy != SimpleOneForOne {
		for _, spec := range s.spec.Children {
			s.children = append(s.children, &child{spec: spec, name: spec.ID, arg: spec.Arg})
		}
	}

	for i, c := range s.children {
		err := s.startChild(c)
		if err == nil {
			continue
		}

		s.state = stateStopping
		for j := i - 1; j >= 0; j-- {
			s.terminate(s.children[j])
		}
		s.reportStart(err)
		s.ctx.Stop(s.ctx.Self())

		return
	}

	s.state = stateRunning
	s.reportStart(nil)
}

func (s *supervisorActor) reportStart(err error) {
	if s.result == nil {
		return
	}
	// An in-place restart runs init again; only the first outcome has a reader.
	select {
	case s.result <- err:
	default:
	}
}

// startChild spawns a new incarnation of c. A panic in the start function counts as a
// start failure instead of crashing the supervisor.
func (s *supervisorActor) startChild(c *child) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in start function: %v", r)
		}
		if err == nil {
			return
		}

		s.events.add(s.events.startFailures, s.childKey(c))
		s.logger.Error("child failed to start", "supervisor", s.path, "child", c.name, "reason", err.Error())
		err = &StartError{Supervisor: s.path, Child: c.name, Err: err}
	}()

	pid, err := c.spec.Start(s.ctx, c.name, c.arg)
	if err != nil {
		return err
	}
	if pid == nil {
		return fmt.Errorf("start function returned neither a PID nor an error")
	}

	c.pid = pid
	s.running[pid] = c

	return nil
}

// handleExit applies the restart rules to a child that exited: normally when its actor
// stopped on its own, abnormally when it panicked.
func (s *supervisorActor) handleExit(pid *actor.PID, abnormal bool, reason string) {
	if s.state != stateRunning {
		return
	}
	c, ok := s.running[pid]
	if !ok {
		// An earlier incarnation, or a child whose stop the supervisor already handled.
		return
	}
	delete(s.running, pid)
	c.pid = nil

	if abnormal {
		s.events.add(s.events.abnormalExits, s.childKey(c))
		s.logger.Error("child exited abnormally", "supervisor", s.path, "child", c.name, "reason", reason)
		// proto.actor only suspends a panicking actor. Stop it so its name is free.
		s.stop([]*actor.PID{pid}, c.spec.Kind, BrutalKill)
	} else {
		s.logger.Debug("child exited normally", "supervisor", s.path, "child", c.name)
	}

	switch {
	case c.spec.Restart == Temporary:
		s.removeChild(c)
	case c.spec.Restart == Transient && !abnormal:
		if s.spec.Strategy == SimpleOneForOne {
			s.removeChild(c)
		}
	default:
		s.restart(c, reason)
	}
}

// restart restarts c and, depending on the strategy, its siblings. The siblings are
// terminated in reverse start order and the whole group is started again in start order.
func (s *supervisorActor) restart(c *child, reason string) {
	if !s.allowRestart(time.Now()) {
		s.escalate(c, reason)

		return
	}

	group := s.restartGroup(c)
	for i := len(group) - 1; i >= 0; i-- {
		if group[i] != c {
			s.terminate(group[i])
		}
	}

	for _, g := range group {
		if g != c && g.spec.Restart == Temporary {
			// OTP removes temporary children that a sibling's restart terminated.
			s.removeChild(g)

			continue
		}

		if err := s.startChild(g); err != nil {
			s.ctx.Send(s.ctx.Self(), &retryRestart{child: g, reason: err.Error()})

			return
		}

		g.restarts++
		s.events.add(s.events.restarts, s.childKey(g))
		cause := reason
		if g != c {
			cause = fmt.Sprintf("sibling %q exited: %s", c.name, reason)
		}
		s.logger.Warn("child restarted", "supervisor", s.path, "child", g.name, "reason", cause,
			"strategy", s.spec.Strategy.String(), "restarts", g.restarts)
	}
}

func (s *supervisorActor) restartGroup(c *child) []*child {
	switch s.spec.Strategy {
	case OneForAll:
		return append([]*child(nil), s.children...)
	case RestForOne:
		for i, sibling := range s.children {
			if sibling == c {
				return append([]*child(nil), s.children[i:]...)
			}
		}
	}

	return []*child{c}
}

func (s *supervisorActor) retry(msg *retryRestart) {
	if s.state != stateRunning || msg.child.pid != nil || !s.contains(msg.child) {
		return
	}
	s.restart(msg.child, msg.reason)
}

// allowRestart records a restart at now and reports whether the restarts within the
// period, this one included, stay within the intensity.
func (s *supervisorActor) allowRestart(now time.Time) bool {
	period := s.spec.period()
	recent := s.restartTimes[:0]
	for _, t := range s.restartTimes {
		if now.Sub(t) < period {
			recent = append(recent, t)
		}
	}
	s.restartTimes = append(recent, now)

	return len(s.restartTimes) <= s.spec.Intensity
}

// escalate terminates all children in reverse start order and fails to the parent
// supervisor, which then applies its own strategy to this supervisor. A top-level
// supervisor stops instead and reports the error through Ref.Err.
func (s *supervisorActor) escalate(c *child, reason string) {
	err := &EscalationError{
		Supervisor: s.path,
		Child:      c.name,
		Reason:     reason,
		Intensity:  s.spec.Intensity,
		Period:     s.spec.period(),
	}
	s.state = stateEscalated
	s.escalation = err
	s.events.add(s.events.escalations, s.path)
	s.logger.Error("restart intensity exceeded, terminating children and escalating",
		"supervisor", s.path, "child", c.name, "reason", reason,
		"intensity", s.spec.Intensity, "period", s.spec.period())

	s.terminateAll()

	if !s.nested {
		s.ctx.Stop(s.ctx.Self())

		return
	}
	if parent, ok := s.ctx.(actor.Supervisor); ok {
		parent.EscalateFailure(err, nil)

		return
	}
	// A decorated context hides EscalateFailure; a panic reaches the parent the same way.
	panic(err)
}

// shutdown stops all children in reverse start order when the supervisor stops.
func (s *supervisorActor) shutdown() {
	previous := s.state
	s.state = stateStopping
	if previous == stateRunning {
		s.terminateAll()
	}
}

func (s *supervisorActor) finish() {
	reason := "shutdown"
	var err error
	if s.escalation != nil {
		reason = s.escalation.Error()
		err = s.escalation
	}
	s.events.add(s.events.shutdowns, s.path)
	s.logger.Info("supervisor stopped", "supervisor", s.path, "reason", reason)

	if s.top != nil {
		s.top.finish(err)
	}
}

// terminate stops c within its shutdown timeout. It removes the incarnation from the
// running set first, so the Terminated message that follows does not count as an exit.
func (s *supervisorActor) terminate(c *child) {
	if c.pid == nil {
		return
	}
	pid := c.pid
	delete(s.running, pid)
	c.pid = nil

	s.stop([]*actor.PID{pid}, c.spec.Kind, c.spec.shutdownTimeout())
}

// terminateAll stops static children one at a time in reverse start order. Children of a
// SimpleOneForOne supervisor have no order between them and stop in parallel, as in OTP.
func (s *supervisorActor) terminateAll() {
	if s.spec.Strategy != SimpleOneForOne {
		for i := len(s.children) - 1; i >= 0; i-- {
			s.terminate(s.children[i])
		}

		return
	}

	pids := make([]*actor.PID, 0, len(s.running))
	for pid, c := range s.running {
		pids = append(pids, pid)
		c.pid = nil
	}
	clear(s.running)
	clear(s.simple)

	template := s.spec.Children[0]
	s.stop(pids, template.Kind, template.shutdownTimeout())
}

func (s *supervisorActor) stop(pids []*actor.PID, kind Kind, timeout time.Duration) {
	onKill := func(pid *actor.PID) {
		s.logger.Warn("child did not stop within its shutdown timeout, killing it",
			"supervisor", s.path, "child", childName(pid), "timeout", timeout)
	}
	for _, pid := range stopChildren(s.ctx, pids, kind, timeout, onKill) {
		s.logger.Error("child did not stop after kill and is abandoned because its handler is still running",
			"supervisor", s.path, "child", childName(pid), "wait", killWait)
	}
}

func (s *supervisorActor) removeChild(c *child) {
	if s.spec.Strategy == SimpleOneForOne {
		delete(s.simple, c.name)

		return
	}
	for i, sibling := range s.children {
		if sibling == c {
			s.children = append(s.children[:i], s.children[i+1:]...)

			return
		}
	}
}

func (s *supervisorActor) contains(c *child) bool {
	if s.spec.Strategy == SimpleOneForOne {
		return s.simple[c.name] == c
	}
	for _, sibling := range s.children {
		if sibling == c {
			return true
		}
	}

	return false
}

// childKey names c in Events: the template id stands for all SimpleOneForOne children.
func (s *supervisorActor) childKey(c *child) string {
	return s.path + "/" + c.spec.ID
}

func childName(pid *actor.PID) string {
	for i := len(pid.Id) - 1; i >= 0; i-- {
		if pid.Id[i] == '/' {
			return pid.Id[i+1:]
		}
	}

	return pid.Id
}
