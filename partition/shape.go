package partition

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// Shape fingerprints a unit's tables on both sides: which relations they
// are (their OIDs: a table dropped and created again under the same name,
// empty, is another table) and their columns: names, types (with
// modifiers, user types schema-qualified) and whether generated, in
// catalog order. The ledger keeps it with each copy; a unit whose shape
// changed since (a table recreated, a column added, dropped, retyped, on
// either side) is copied again.
func Shape(s, d Table, src, dst []Column) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d %d\n", s.OID, d.OID)
	for _, cols := range [][]Column{src, dst} {
		for _, c := range cols {
			fmt.Fprintf(h, "%q %q %t\n", c.Name, c.Type, c.Generated)
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
