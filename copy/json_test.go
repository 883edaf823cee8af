package copy

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"lockstep/verify"
)

// Every duration in a report or plan is given in nanoseconds (_ns) and in
// seconds (_s): each struct type reachable from them that has a duration
// field encodes itself through durjson. A duration added to a type without
// that fails here.
func TestEveryDurationAlsoInSeconds(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type, string)
	walk = func(typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Array || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] || typ.PkgPath() == "time" {
			return
		}
		seen[typ] = true
		for i := range typ.NumField() {
			f := typ.Field(i)
			tag := f.Tag.Get("json")
			if !f.IsExported() || tag == "-" {
				continue
			}
			if f.Type == reflect.TypeFor[time.Duration]() {
				name, _, _ := strings.Cut(tag, ",")
				if !strings.HasSuffix(name, "_ns") {
					t.Errorf("%s.%s: a duration's JSON name must end in _ns, not %q", path, f.Name, name)
				}
				if !typ.Implements(reflect.TypeFor[json.Marshaler]()) {
					t.Errorf("%s (%s) has durations but no MarshalJSON through durjson: %s has no seconds", path, typ, f.Name)
				}
			}
			walk(f.Type, path+"."+f.Name)
		}
	}
	for _, root := range []any{Report{}, PlannedGroup{}, PlannedUnit{}, PlanTotals{}} {
		walk(reflect.TypeOf(root), reflect.TypeOf(root).Name())
	}

	r := Report{Elapsed: 2 * time.Second, BlockedP95: 250 * time.Millisecond, Units: []Result{{
		Unit: "u", WritesBlocked: 1500 * time.Millisecond, Diff: &verify.Diff{Elapsed: time.Second},
		Members: []Result{{Unit: "m", Copy: 3 * time.Second}},
	}}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"elapsed_ns":2000000000,"elapsed_s":2`, `"writes_blocked_p95_ns":250000000,"writes_blocked_p95_s":0.25`,
		`"writes_blocked_ns":1500000000,"writes_blocked_s":1.5`, `"diff":{`, `"elapsed_ns":1000000000,"elapsed_s":1`, `"copy_ns":3000000000,"copy_s":3`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report JSON lacks %s:\n%s", want, b)
		}
	}
}
