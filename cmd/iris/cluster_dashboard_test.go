package main

import (
	"fmt"
	"testing"
	"time"
)

// membersColumns is the number of columns of the dashboard's members table.
const membersColumns = 11

// coreRowsJS returns a JavaScript expression that lists the rows of the members table with
// raft state, as {raftID, state, className, cells}.
const coreRowsJS = `[...document.querySelectorAll("#members tr")]
	.filter((tr) => tr.cells.length === %d && tr.cells[3].textContent !== "-")
	.map((tr) => ({ raftID: tr.cells[3].textContent, state: tr.cells[4].textContent, className: tr.className,
		cells: [...tr.cells].map((td) => td.textContent) }))`

// TestClusterDashboardShowsEveryCore opens an edge's dashboard in Chromium. Its members
// table shows the raft state of all three cores with one leader, and a core that is
// killed stays in the table, marked unreachable.
func TestClusterDashboardShowsEveryCore(t *testing.T) {
	b := startBrowser(t)
	c := startCluster(t, 3, 1, clusterOptions{})
	leader := c.leader(10 * time.Second)
	edge := c.edges[0]
	rows := fmt.Sprintf(coreRowsJS, membersColumns)

	tab, _ := b.newTab()
	navigate(t, tab, "http://"+edge.adminAddr+"/?interval=200")
	waitFor(t, tab, "the first update from /events", `document.body.dataset.live === "1"`, 10*time.Second)
	waitFor(t, tab, "three cores with raft state and one leader",
		`(() => { const rows = `+rows+`; return rows.length === 3 && document.querySelectorAll("#members td.state-leader").length === 1; })()`,
		10*time.Second)

	type coreRow struct {
		RaftID    string   `json:"raftID"`
		State     string   `json:"state"`
		ClassName string   `json:"className"`
		Cells     []string `json:"cells"`
	}
	for _, row := range evaluate[[]coreRow](t, tab, rows) {
		if row.State == "Leader" && (row.RaftID != leader.name || row.ClassName != "leader") {
			t.Errorf("leader row %+v, want raft id %s and class leader", row, leader.name)
		}
		if row.State != "Leader" && row.State != "Follower" {
			t.Errorf("core row %+v, want state Leader or Follower", row)
		}
		// Columns: id, address, kinds, raft id, state, leader, term, applied, commit, lag, record age.
		if row.Cells[5] != leader.name || row.Cells[6] == "-" || row.Cells[7] == "-" || row.Cells[8] == "-" || row.Cells[9] == "-" {
			t.Errorf("core row %v, want leader %s, term, applied, commit and lag", row.Cells, leader.name)
		}
	}
	saveScreenshot(t, tab, "healthy")

	var follower *clusterNode
	for _, n := range c.cores {
		if n != leader {
			follower = n
			break
		}
	}
	follower.kill()
	waitFor(t, tab, follower.name+" marked unreachable",
		fmt.Sprintf(`(() => { const row = (%s).find((r) => r.raftID === %s); return !!row && row.className === "unreachable" && row.state === "unreachable"; })()`,
			rows, jsString(follower.name)),
		15*time.Second)
	if got := len(evaluate[[]coreRow](t, tab, rows)); got != 3 {
		t.Errorf("%d core rows after %s was killed, want 3", got, follower.name)
	}
	saveScreenshot(t, tab, "core-killed")
}
