package actors

import "github.com/asynkron/protoactor-go/actor"

// pidKey identifies a session in maps by the two fields that a PID keeps
// across nodes (irispb.Pid carries only these). PID.String would serve as
// well, but it formats the protobuf as text. In a login storm of 19,000
// clients (iris bench --mode login-storm) that took a tenth of the server's
// CPU, and every key was a new string of about 70 bytes kept for the
// session's life.
type pidKey struct{ address, id string }

func keyOf(pid *actor.PID) pidKey { return pidKey{address: pid.Address, id: pid.Id} }
