//go:build !unix

package loadgen

import "time"

// processCPU returns 0 where getrusage is not available, so the report
// shows no generator CPU time.
func processCPU() time.Duration { return 0 }
