package supervisor

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
)

// Requests sent by Ref. They never leave the process, so they are plain Go structs.
type (
	startChildRequest       struct{ spec ChildSpec }
	startSimpleChildRequest struct{ arg any }
	terminateChildRequest   struct{ id string }
	restartChildRequest     struct{ id string }
	deleteChildRequest      struct{ id string }
	whichChildrenRequest    struct{}
	countChildrenRequest    struct{}
)

// Replies to the requests above.
type (
	childReply struct {
		pid *actor.PID
		err error
	}
	childrenReply struct {
		strategy Strategy
		children []ChildInfo
	}
	countsReply struct{ counts Counts }
)

// ChildInfo describes one child, as OTP's which_children does.
type ChildInfo struct {
	// ID is the child id; for SimpleOneForOne children the generated name "<template id>-<n>".
	ID string
	// PID is the running incarnation, nil while the child is not running.
	PID     *actor.PID
	Kind    Kind
	Restart RestartType
	// Restarts counts the restarts of this child since its spec was added.
	Restarts int
}

// Counts is the result of Ref.CountChildren, with the fields of OTP's count_children.
type Counts struct {
	// Specs is the number of child specs, running or not.
	Specs int
	// Active is the number of running children.
	Active int
	// Supervisors and Workers count the specs of each kind.
	Supervisors int
	Workers     int
}

func (s *supervisorActor) handleRequest(ctx actor.Context, msg any) {
	switch m := msg.(type) {
	case *startChildRequest:
		pid, err := s.startDynamic(m.spec)
		ctx.Respond(&childReply{pid: pid, err: err})
	case *startSimpleChildRequest:
		pid, err := s.startSimple(m.arg)
		ctx.Respond(&childReply{pid: pid, err: err})
	case *terminateChildRequest:
		ctx.Respond(&childReply{err: s.terminateDynamic(m.id)})
	case *restartChildRequest:
		pid, err := s.restartDynamic(m.id)
		ctx.Respond(&childReply{pid: pid, err: err})
	case *deleteChildRequest:
		ctx.Respond(&childReply{err: s.deleteDynamic(m.id)})
	case *whichChildrenRequest:
		ctx.Respond(&childrenReply{strategy: s.spec.Strategy, children: s.whichChildren()})
	case *countChildrenRequest:
		ctx.Respond(&countsReply{counts: s.countChildren()})
	}
}

func (s *supervisorActor) startDynamic(spec ChildSpec) (*actor.PID, error) {
	if s.spec.Strategy == SimpleOneForOne {
		return nil, fmt.Errorf("start child %q: %w: use StartSimpleChild on a simple_one_for_one supervisor", spec.ID, ErrSimpleOneForOne)
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if c := s.findStatic(spec.ID); c != nil {
		if c.pid != nil {
			return c.pid, fmt.Errorf("start child %q: %w as %s", spec.ID, ErrAlreadyStarted, c.pid.Id)
		}

		return nil, fmt.Errorf("start child %q: %w", spec.ID, ErrAlreadyPresent)
	}

	c := &child{spec: spec, name: spec.ID, arg: spec.Arg}
	if err := s.startChild(c); err != nil {
		return nil, err
	}
	s.children = append(s.children, c)

	return c.pid, nil
}

func (s *supervisorActor) startSimple(arg any) (*actor.PID, error) {
	if s.spec.Strategy != SimpleOneForOne {
		return nil, fmt.Errorf("start simple child: %w: the supervisor is %s, use StartChild", ErrSimpleOneForOne, s.spec.Strategy)
	}

	template := s.spec.Children[0]
	s.simpleSeq++
	c := &child{
		spec: template,
		name: fmt.Sprintf("%s-%d", template.ID, s.simpleSeq),
		arg:  arg,
		seq:  s.simpleSeq,
	}
	if err := s.startChild(c); err != nil {
		return nil, err
	}
	s.simple[c.name] = c

	return c.pid, nil
}

// terminateDynamic stops a child without restarting it. Static children keep their spec
// unless they are temporary; SimpleOneForOne children are removed, as in OTP.
func (s *supervisorActor) terminateDynamic(id string) error {
	if s.spec.Strategy == SimpleOneForOne {
		c, ok := s.simple[id]
		if !ok {
			return fmt.Errorf("terminate child %q: %w", id, ErrNotFound)
		}
		s.terminate(c)
		delete(s.simple, id)

		return nil
	}

	c := s.findStatic(id)
	if c == nil {
		return fmt.Errorf("terminate child %q: %w", id, ErrNotFound)
	}
	s.terminate(c)
	if c.spec.Restart == Temporary {
		s.removeChild(c)
	}

	return nil
}

// restartDynamic starts a stopped child again. It does not count toward the intensity.
func (s *supervisorActor) restartDynamic(id string) (*actor.PID, error) {
	if s.spec.Strategy == SimpleOneForOne {
		return nil, fmt.Errorf("restart child %q: %w", id, ErrSimpleOneForOne)
	}
	c := s.findStatic(id)
	if c == nil {
		return nil, fmt.Errorf("restart child %q: %w", id, ErrNotFound)
	}
	if c.pid != nil {
		return nil, fmt.Errorf("restart child %q: %w; terminate it first", id, ErrRunning)
	}
	if err := s.startChild(c); err != nil {
		return nil, err
	}

	return c.pid, nil
}

func (s *supervisorActor) deleteDynamic(id string) error {
	if s.spec.Strategy == SimpleOneForOne {
		return fmt.Errorf("delete child %q: %w", id, ErrSimpleOneForOne)
	}
	c := s.findStatic(id)
	if c == nil {
		return fmt.Errorf("delete child %q: %w", id, ErrNotFound)
	}
	if c.pid != nil {
		return fmt.Errorf("delete child %q: %w; terminate it first", id, ErrRunning)
	}
	s.removeChild(c)

	return nil
}

// whichChildren lists static children in start order and SimpleOneForOne children in the
// order they were started.
func (s *supervisorActor) whichChildren() []ChildInfo {
	children := s.children
	if s.spec.Strategy == SimpleOneForOne {
		children = make([]*child, 0, len(s.simple))
		for _, c := range s.simple {
			children = append(children, c)
		}
		slices.SortFunc(children, func(a, b *child) int { return cmp.Compare(a.seq, b.seq) })
	}

	infos := make([]ChildInfo, 0, len(children))
	for _, c := range children {
		infos = append(infos, ChildInfo{
			ID:       c.name,
			PID:      c.pid,
			Kind:     c.spec.Kind,
			Restart:  c.spec.Restart,
			Restarts: c.restarts,
		})
	}

	return infos
}

func (s *supervisorActor) countChildren() Counts {
	var counts Counts
	count := func(c *child) {
		counts.Specs++
		if c.pid != nil {
			counts.Active++
		}
		if c.spec.Kind == KindSupervisor {
			counts.Supervisors++
		} else {
			counts.Workers++
		}
	}

	for _, c := range s.children {
		count(c)
	}
	for _, c := range s.simple {
		count(c)
	}

	return counts
}

func (s *supervisorActor) findStatic(id string) *child {
	for _, c := range s.children {
		if c.name == id {
			return c
		}
	}

	return nil
}
