package supervisor

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestNamesRoundTripThroughJSON(t *testing.T) {
	in := Node{ID: "node", Kind: KindSupervisor, Restart: Transient, Strategy: RestForOne}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{`"supervisor"`, `"transient"`, `"rest_for_one"`} {
		if !json.Valid(data) || !strings.Contains(string(data), name) {
			t.Errorf("JSON %s lacks %s", data, name)
		}
	}
	var out Node
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	if out.Kind != in.Kind || out.Restart != in.Restart || out.Strategy != in.Strategy {
		t.Errorf("round trip = %+v, want %+v", out, in)
	}
	var bad Strategy
	if err := bad.UnmarshalText([]byte("one_for_none")); err == nil {
		t.Error("an unknown strategy name parsed")
	}
}
