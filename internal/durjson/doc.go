// Package durjson encodes structs as encoding/json does, with every
// time.Duration field given twice: as it is (an integer of nanoseconds,
// under its own name, which lockstep's types end in _ns) and in seconds, a
// float, under the same name ending in _s instead (copy_ns, copy_s), placed
// right after it. Operations tooling expects seconds; the nanoseconds stay
// for readers written against them. Types opt in with a MarshalJSON method
// that hands Marshal a copy of themselves as a type without that method:
//
//	func (r Result) MarshalJSON() ([]byte, error) {
//		type plain Result
//		return durjson.Marshal(plain(r))
//	}
//
// so that a duration field added later gets its seconds without anyone
// remembering to.
package durjson
