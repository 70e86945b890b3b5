package supervisor

import (
	"errors"
	"fmt"
	"time"
)

// Errors returned by the Ref methods. They carry OTP's error atoms as Go sentinels, so
// callers test them with errors.Is.
var (
	// ErrNotFound means no child with the requested id exists.
	ErrNotFound = errors.New("child not found")
	// ErrRunning means the operation needs a stopped child but the child is running.
	ErrRunning = errors.New("child is running")
	// ErrAlreadyStarted means StartChild found a running child with the same id.
	ErrAlreadyStarted = errors.New("child already started")
	// ErrAlreadyPresent means StartChild found a stopped child with the same id; use
	// RestartChild to start it or DeleteChild to remove it first.
	ErrAlreadyPresent = errors.New("child spec already present")
	// ErrSimpleOneForOne means the operation is not supported by a SimpleOneForOne
	// supervisor, or StartSimpleChild was called on another strategy.
	ErrSimpleOneForOne = errors.New("operation not supported for this strategy")
	// ErrNotRunning means the supervisor actor does not exist (it stopped or never started).
	ErrNotRunning = errors.New("supervisor not running")
	// ErrTimeout means the supervisor did not reply in time. It is busy while it starts,
	// restarts or stops children, so a long child shutdown can cause it.
	ErrTimeout = errors.New("supervisor request timed out")
)

// StartError reports a child that failed to start. Errors of nested supervisors are
// wrapped, so the message names the whole path down to the failing child.
type StartError struct {
	// Supervisor is the PID id of the supervisor that started the child.
	Supervisor string
	// Child is the child's id.
	Child string
	// Err is the error returned by the child's start function, or the recovered panic.
	Err error
}

// Error returns a message that names the supervisor, the child and the cause.
func (e *StartError) Error() string {
	return fmt.Sprintf("supervisor %s: child %q failed to start: %v", e.Supervisor, e.Child, e.Err)
}

// Unwrap returns the cause.
func (e *StartError) Unwrap() error { return e.Err }

// EscalationError is the failure reason a supervisor hands to its parent when it has
// exceeded its restart intensity. A top-level supervisor returns it from Ref.Err.
type EscalationError struct {
	// Supervisor is the PID id of the supervisor that gave up.
	Supervisor string
	// Child is the id of the child whose exit exceeded the intensity.
	Child string
	// Reason is that child's exit reason.
	Reason string
	// Intensity and Period are the limit that was exceeded.
	Intensity int
	Period    time.Duration
}

// Error returns a message that names the supervisor, the limit and the last exit.
func (e *EscalationError) Error() string {
	return fmt.Sprintf("supervisor %s: more than %d restarts within %s (last: child %q, reason: %s)",
		e.Supervisor, e.Intensity, e.Period, e.Child, e.Reason)
}
