package supervisor

import (
	"fmt"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
)

// Node is one entry of a running supervision tree.
type Node struct {
	// ID is the child id, or the last element of the PID id for the root of the tree.
	ID  string
	PID *actor.PID
	// Kind, Restart and Restarts come from the parent's child record; the root of the
	// tree has Kind KindSupervisor and zero Restart and Restarts.
	Kind     Kind
	Restart  RestartType
	Restarts int
	// Strategy is set for supervisors.
	Strategy Strategy
	// Children lists a supervisor's children in start order.
	Children []Node
	// Error is set when a running child supervisor did not describe its subtree in time.
	Error string
}

// Tree describes the running tree under this supervisor. It requests each supervisor's
// children in turn from the caller's goroutine, so no supervisor waits on another. A child supervisor that
// is busy past the request timeout appears with Error set and no children.
func (r *Ref) Tree() (Node, error) {
	reply, err := request[*childrenReply](r, &whichChildrenRequest{})
	if err != nil {
		return Node{}, err
	}

	root := Node{ID: childName(r.pid), PID: r.pid, Kind: KindSupervisor, Strategy: reply.strategy}
	for _, info := range reply.children {
		node := Node{
			ID:       info.ID,
			PID:      info.PID,
			Kind:     info.Kind,
			Restart:  info.Restart,
			Restarts: info.Restarts,
		}
		if info.Kind == KindSupervisor && info.PID != nil {
			sub, err := NewRef(r.system, info.PID).WithTimeout(r.timeout).Tree()
			if err != nil {
				node.Error = err.Error()
			} else {
				node.Strategy = sub.Strategy
				node.Children = sub.Children
			}
		}
		root.Children = append(root.Children, node)
	}

	return root, nil
}

// String renders the tree one node per line, indented by depth, for logs and status output.
func (n Node) String() string {
	var b strings.Builder
	n.write(&b, 0)

	return b.String()
}

func (n Node) write(b *strings.Builder, depth int) {
	b.WriteString(strings.Repeat("  ", depth))
	b.WriteString(n.ID)
	b.WriteString(" " + n.Kind.String())
	if depth > 0 {
		b.WriteString(" " + n.Restart.String())
	}
	if n.Kind == KindSupervisor {
		b.WriteString(" " + n.Strategy.String())
	}
	if n.PID != nil {
		b.WriteString(" pid=" + n.PID.Id)
	} else {
		b.WriteString(" stopped")
	}
	if depth > 0 {
		fmt.Fprintf(b, " restarts=%d", n.Restarts)
	}
	if n.Error != "" {
		b.WriteString(" error=" + n.Error)
	}
	b.WriteString("\n")

	for _, c := range n.Children {
		c.write(b, depth+1)
	}
}
