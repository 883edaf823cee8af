package partition

// regTypes are the built-in types whose values are object OIDs that print
// as names (regclass, regtype, ...), with their array types. Binary COPY
// carries the raw OID, which on another server names another object or
// none while both sides' checksums agree; text carries the name, which the
// destination resolves to its own object. Their text form is
// schema-qualified only for objects outside the search_path, so lockstep
// reads with search_path pinned to pg_catalog (see copy/sql.go).
var regTypes = map[uint32]string{
	24: "regproc", 1008: "regproc[]",
	2202: "regprocedure", 2207: "regprocedure[]",
	2203: "regoper", 2208: "regoper[]",
	2204: "regoperator", 2209: "regoperator[]",
	2205: "regclass", 2210: "regclass[]",
	2206: "regtype", 2211: "regtype[]",
	3734: "regconfig", 3735: "regconfig[]",
	3769: "regdictionary", 3770: "regdictionary[]",
	4089: "regnamespace", 4090: "regnamespace[]",
	4096: "regrole", 4097: "regrole[]",
	4191: "regcollation", 4192: "regcollation[]",
}

// namesByOID reports whether a column's values are object OIDs (a reg*
// type or an array of one).
func namesByOID(c Column) bool {
	_, ok := regTypes[c.TypeOID]
	return ok
}

// noBinaryIO are the built-in types without binary send and receive
// functions, with their array types: binary COPY refuses them.
var noBinaryIO = map[uint32]string{
	1033: "aclitem", 1034: "aclitem[]",
}

// textOnly says why a column whose type is the same on both servers must
// travel as text, also when it is a domain over such a type (a domain
// travels in binary as its base type), or "" when binary may carry it.
func textOnly(c Column) string {
	for _, o := range []uint32{c.TypeOID, c.BaseOID} {
		if namesByOID(Column{TypeOID: o}) {
			return "whose values are object OIDs: binary would carry the source's OIDs, which name other objects on the destination; text carries the names"
		}
		if _, ok := noBinaryIO[o]; ok {
			return "which has no binary form"
		}
	}
	return ""
}
