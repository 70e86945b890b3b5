package supervisor

import "fmt"

// Strategies, restart types and kinds are written as their OTP names in
// JSON and other text encodings, such as the tree in a node's /stats.

// MarshalText returns the OTP name of the strategy.
func (s Strategy) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses an OTP strategy name.
func (s *Strategy) UnmarshalText(b []byte) error {
	return parseName(b, s, []Strategy{OneForOne, OneForAll, RestForOne, SimpleOneForOne})
}

// MarshalText returns the OTP name of the restart type.
func (r RestartType) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText parses an OTP restart type name.
func (r *RestartType) UnmarshalText(b []byte) error {
	return parseName(b, r, []RestartType{Permanent, Transient, Temporary})
}

// MarshalText returns the OTP name of the kind.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText parses "worker" or "supervisor".
func (k *Kind) UnmarshalText(b []byte) error {
	return parseName(b, k, []Kind{KindWorker, KindSupervisor})
}

// parseName sets *dst to the value among values whose String is b.
func parseName[T fmt.Stringer](b []byte, dst *T, values []T) error {
	for _, v := range values {
		if v.String() == string(b) {
			*dst = v
			return nil
		}
	}
	return fmt.Errorf("supervisor: unknown name %q", b)
}
