package durjson

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

type sample struct {
	Name    string        `json:"name"`
	Copy    time.Duration `json:"copy_ns"`
	Wait    time.Duration `json:"wait_ns,omitempty"`
	Plain   time.Duration // no tag: the Go name, plus _s
	Hidden  time.Duration `json:"-"`
	private time.Duration
	Kids    []sample `json:"kids,omitempty"`
}

func (s sample) MarshalJSON() ([]byte, error) {
	type plain sample
	return Marshal(plain(s))
}

func TestSecondsBesideNanoseconds(t *testing.T) {
	s := sample{Name: "a", Copy: 1500 * time.Millisecond, Plain: 2 * time.Second, Hidden: time.Hour, private: time.Hour,
		Kids: []sample{{Name: "b", Wait: 250 * time.Millisecond}}}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"name":"a","copy_ns":1500000000,"copy_s":1.5,"Plain":2000000000,"Plain_s":2,` +
		`"kids":[{"name":"b","copy_ns":0,"copy_s":0,"wait_ns":250000000,"wait_s":0.25,"Plain":0,"Plain_s":0}]}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	// Decoding the output back gives the original (the _s keys are ignored).
	var back sample
	if err := json.Unmarshal(b, &back); err != nil || back.Copy != s.Copy || back.Kids[0].Wait != s.Kids[0].Wait {
		t.Errorf("round trip: %+v, %v", back, err)
	}
}

type embeds struct {
	sample
}

func TestEmbeddedIsAnError(t *testing.T) {
	if _, err := Marshal(embeds{}); err == nil || !strings.Contains(err.Error(), "embeds") {
		t.Errorf("Marshal of a struct with an embedded field: %v", err)
	}
	if b, err := Marshal(42); err != nil || string(b) != "42" {
		t.Errorf("Marshal(42) = %s, %v", b, err)
	}
}
