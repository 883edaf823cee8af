package verify

import "lockstep/internal/durjson"

// MarshalJSON gives Elapsed in seconds too (elapsed_s), as every duration
// in lockstep's JSON is given.
func (d Diff) MarshalJSON() ([]byte, error) {
	type plain Diff
	return durjson.Marshal(plain(d))
}
