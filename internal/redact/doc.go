// Package redact makes text that came from a server or a user safe to
// print, log and write to files people run: it removes passwords, and it
// escapes control characters so that a name cannot end a line (and with it
// an SQL comment), drive a terminal, or reorder text on screen.
//
// Everything lockstep prints, logs or writes passes through it: the error
// line, the unit lines and tables, the JSON report, the log handler built
// by NewHandler, and the comments of the repair file.
package redact
