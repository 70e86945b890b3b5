package supervisor

import (
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Strategy selects which children a supervisor restarts when one child must be restarted.
type Strategy int

const (
	// OneForOne restarts only the child that exited.
	OneForOne Strategy = iota
	// OneForAll terminates the other children in reverse start order, then restarts all
	// children in start order.
	OneForAll
	// RestForOne terminates the children started after the exited one in reverse start
	// order, then restarts the exited child and those children in start order.
	RestForOne
	// SimpleOneForOne is OneForOne for children that are all started at run time from one
	// template child spec with StartSimpleChild.
	SimpleOneForOne
)

// String returns the OTP name of the strategy.
func (s Strategy) String() string {
	switch s {
	case OneForOne:
		return "one_for_one"
	case OneForAll:
		return "one_for_all"
	case RestForOne:
		return "rest_for_one"
	case SimpleOneForOne:
		return "simple_one_for_one"
	default:
		return fmt.Sprintf("Strategy(%d)", int(s))
	}
}

// RestartType decides whether a child is restarted after it exits.
type RestartType int

const (
	// Permanent children are restarted after every exit, normal or abnormal.
	Permanent RestartType = iota
	// Transient children are restarted only after an abnormal exit (a panic).
	Transient
	// Temporary children are never restarted, and their spec is removed when they exit.
	Temporary
)

// String returns the OTP name of the restart type.
func (r RestartType) String() string {
	switch r {
	case Permanent:
		return "permanent"
	case Transient:
		return "transient"
	case Temporary:
		return "temporary"
	default:
		return fmt.Sprintf("RestartType(%d)", int(r))
	}
}

// Kind is the role of a child: worker or supervisor.
type Kind int

const (
	// KindWorker is any actor that is not a supervisor from this package.
	KindWorker Kind = iota
	// KindSupervisor is a supervisor started with StartSupervisor.
	KindSupervisor
)

// String returns the OTP name of the kind.
func (k Kind) String() string {
	switch k {
	case KindWorker:
		return "worker"
	case KindSupervisor:
		return "supervisor"
	default:
		return fmt.Sprintf("Kind(%d)", int(k))
	}
}

// Shutdown values with a special meaning in ChildSpec.Shutdown.
const (
	// BrutalKill stops the child at once with a Stop system message, which overtakes the
	// user messages still queued in its mailbox.
	BrutalKill time.Duration = -1
	// Infinity waits for the child to stop without a time limit. It is the default for
	// supervisor children so that their own subtree has time to shut down.
	Infinity time.Duration = math.MaxInt64
)

// Defaults applied to zero fields.
const (
	// DefaultWorkerShutdown is the shutdown timeout of a worker whose Shutdown is zero, as in OTP.
	DefaultWorkerShutdown = 5 * time.Second
	// DefaultPeriod is the intensity period of a Spec whose Period is zero, as in OTP.
	DefaultPeriod = 5 * time.Second
)

// StartFunc spawns one incarnation of a child under the supervisor's context ctx and
// returns its PID. It must spawn the actor with ctx.SpawnNamed(props, name), because the
// supervisor relies on that name to give the child a stable PID across restarts. arg is
// ChildSpec.Arg for static children and the StartSimpleChild argument for children of a
// SimpleOneForOne supervisor. A returned error aborts the start, as an error from OTP's
// init/1 does, and must leave no actor registered under name.
type StartFunc func(ctx actor.SpawnerContext, name string, arg any) (*actor.PID, error)

// ChildSpec describes one supervised child.
type ChildSpec struct {
	// ID names the child inside its supervisor and becomes the last element of the child's
	// PID id (supervisor id + "/" + ID). It must be non-empty, unique among the supervisor's
	// children and free of "/".
	ID string
	// Start spawns the child. StartActor and StartSupervisor build the usual ones.
	Start StartFunc
	// Arg is passed to Start for static children. SimpleOneForOne children receive the
	// StartSimpleChild argument instead.
	Arg any
	// Restart decides when the child is restarted. The zero value is Permanent.
	Restart RestartType
	// Shutdown is how long the supervisor waits for the child to stop before it kills it.
	// Zero means DefaultWorkerShutdown for workers and Infinity for supervisors. BrutalKill
	// skips the graceful phase.
	Shutdown time.Duration
	// Kind is KindWorker (the zero value) or KindSupervisor.
	Kind Kind
}

// Spec configures a supervisor.
type Spec struct {
	// Strategy picks the children restarted together. The zero value is OneForOne.
	Strategy Strategy
	// Intensity is the maximum number of restarts allowed within Period. One restart more
	// makes the supervisor terminate its children and escalate. Zero allows no restart at
	// all, as in OTP, so set it explicitly.
	Intensity int
	// Period is the sliding window for Intensity. Zero means DefaultPeriod.
	Period time.Duration
	// Children are started in order when the supervisor starts. A SimpleOneForOne
	// supervisor needs exactly one spec here, the template, and starts no child at first.
	Children []ChildSpec
	// Logger receives the restart, escalation, shutdown and start-failure lines. Nil means
	// the parent supervisor's logger, or the actor system's logger for a top-level supervisor.
	Logger *slog.Logger
	// Events counts restarts and escalations. Nil means the parent supervisor's Events, or
	// a new Events for a top-level supervisor (see Ref.Events).
	Events *Events
}

// Validate reports the first invalid field of the spec and its children.
func (s Spec) Validate() error {
	if s.Strategy < OneForOne || s.Strategy > SimpleOneForOne {
		return fmt.Errorf("invalid supervisor strategy %d: use OneForOne, OneForAll, RestForOne or SimpleOneForOne", int(s.Strategy))
	}
	if s.Intensity < 0 {
		return fmt.Errorf("invalid supervisor intensity %d: must be zero or more", s.Intensity)
	}
	if s.Period < 0 {
		return fmt.Errorf("invalid supervisor period %s: must be zero (default %s) or more", s.Period, DefaultPeriod)
	}
	if s.Strategy == SimpleOneForOne && len(s.Children) != 1 {
		return fmt.Errorf("invalid simple_one_for_one spec: needs exactly one template child spec, got %d", len(s.Children))
	}

	seen := make(map[string]bool, len(s.Children))
	for _, c := range s.Children {
		if err := c.Validate(); err != nil {
			return err
		}
		if seen[c.ID] {
			return fmt.Errorf("invalid child spec: duplicate child id %q", c.ID)
		}
		seen[c.ID] = true
	}

	return nil
}

// Validate reports the first invalid field of the child spec.
func (c ChildSpec) Validate() error {
	if c.ID == "" {
		return fmt.Errorf("invalid child spec: missing id")
	}
	if strings.Contains(c.ID, "/") {
		return fmt.Errorf("invalid child id %q: must not contain \"/\", the PID path separator", c.ID)
	}
	if c.Start == nil {
		return fmt.Errorf("invalid child spec %q: missing start function", c.ID)
	}
	if c.Restart < Permanent || c.Restart > Temporary {
		return fmt.Errorf("invalid child spec %q: unknown restart type %d", c.ID, int(c.Restart))
	}
	if c.Kind < KindWorker || c.Kind > KindSupervisor {
		return fmt.Errorf("invalid child spec %q: unknown kind %d", c.ID, int(c.Kind))
	}
	if c.Shutdown < 0 && c.Shutdown != BrutalKill {
		return fmt.Errorf("invalid child spec %q: shutdown %s is negative; use BrutalKill, Infinity or a positive timeout", c.ID, c.Shutdown)
	}

	return nil
}

func (c ChildSpec) shutdownTimeout() time.Duration {
	if c.Shutdown != 0 {
		return c.Shutdown
	}
	if c.Kind == KindSupervisor {
		return Infinity
	}

	return DefaultWorkerShutdown
}

func (s Spec) period() time.Duration {
	if s.Period == 0 {
		return DefaultPeriod
	}

	return s.Period
}
