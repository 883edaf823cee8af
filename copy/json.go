package copy

import "lockstep/internal/durjson"

// The JSON of reports and plans gives every duration twice: in nanoseconds
// (its field's name ends in _ns) and in seconds as a float (the same name
// ending in _s), which durjson adds for every time.Duration field.

func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	return durjson.Marshal(plain(r))
}

func (r Report) MarshalJSON() ([]byte, error) {
	type plain Report
	return durjson.Marshal(plain(r))
}

func (g PlannedGroup) MarshalJSON() ([]byte, error) {
	type plain PlannedGroup
	return durjson.Marshal(plain(g))
}

func (u PlannedUnit) MarshalJSON() ([]byte, error) {
	type plain PlannedUnit
	return durjson.Marshal(plain(u))
}

func (t PlanTotals) MarshalJSON() ([]byte, error) {
	type plain PlanTotals
	return durjson.Marshal(plain(t))
}
