package copy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"lockstep/lock"
	"lockstep/partition"
	"lockstep/schema"
)

// --create-missing: before the units are planned, the selected tables the
// destination lacks are created there from the source's definitions, in
// one destination transaction, after every check that can be made without
// them has passed. What is created, and what is refused, is decided in
// partition/create.go; the definitions come from pg_dump (package schema).

// Created is what --create-missing created on the destination or, in a
// plan, would create. Names are as SQL writes them.
type Created struct {
	Done      bool     `json:"created"` // false: only planned, nothing was created
	PgDump    string   `json:"pg_dump"` // the pg_dump used: path and version
	Schemas   []string `json:"schemas,omitempty"`
	Types     []string `json:"types,omitempty"` // with their kind
	Tables    []string `json:"tables"`          // partitions included
	Sequences []string `json:"sequences,omitempty"`
	// Locked are existing destination tables that created foreign keys
	// reference: adding a constraint locks them SHARE ROW EXCLUSIVE.
	Locked []string `json:"locked_tables,omitempty"`
}

// String lists what was (or would be) created, at most 20 tables by name.
func (c *Created) String() string {
	var parts []string
	list := func(what string, names []string) {
		if len(names) == 0 {
			return
		}
		shown := names
		more := ""
		if len(shown) > 20 {
			shown, more = shown[:20], fmt.Sprintf(" and %d more", len(names)-20)
		}
		parts = append(parts, fmt.Sprintf("%d %s (%s%s)", len(names), what, strings.Join(shown, ", "), more))
	}
	list("schema(s)", c.Schemas)
	list("type(s)", c.Types)
	list("table(s)", c.Tables)
	list("sequence(s)", c.Sequences)
	s := strings.Join(parts, ", ")
	if len(c.Locked) > 0 {
		s += "; foreign keys reference existing " + strings.Join(c.Locked, ", ")
	}
	return s
}

// stay adds to an error found after the creation what was created: it
// stays on the destination, empty.
func (c *Created) stay(err error) error {
	if c == nil || !c.Done || err == nil {
		return err
	}
	tables := c.Tables
	more := ""
	if len(tables) > 5 {
		tables, more = tables[:5], fmt.Sprintf(" and %d more", len(c.Tables)-5)
	}
	return fmt.Errorf("%w (--create-missing had created %d table(s) on the destination before this was found: %s%s; they stay there, empty)",
		err, len(c.Tables), strings.Join(tables, ", "), more)
}

// pgDumpConnect are the connection parameters pg_dump gets unless the
// source's connection string sets them: it must not wait for ever on a
// dead server either.
func pgDumpConnect(stall time.Duration) map[string]string {
	k := keepaliveFor(stall)
	secs := func(d time.Duration) string { return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10) }
	return map[string]string{
		"connect_timeout":           secs(DefaultConnect),
		"fallback_application_name": "lockstep pg_dump",
		"keepalives_idle":           secs(k.idle),
		"keepalives_interval":       secs(k.interval),
		"keepalives_count":          strconv.Itoa(k.count(stall)),
	}
}

// createMissing creates the selected tables the destination lacks, when
// asked to, and says what it created. First the tables that exist are
// planned (every check of the plan, the self-test included); then what is
// missing is found and checked (partition.FindMissing) and pg_dump is
// found. With PlanOnly it stops there and says what it would create.
// Otherwise the definitions are dumped from a snapshot of the source that
// saw those checks, and run on the destination in one transaction, which
// first locks the existing tables that new foreign keys reference
// (--lock-timeout), so nothing waits in their lock queue for long. Any
// failure rolls it back: then nothing was created.
func createMissing(ctx context.Context, src, dst *side, opts *Options) (*Created, error) {
	if !opts.CreateMissing {
		return nil, nil
	}
	pre := *opts
	pre.skipMissing = true
	if _, err := plan(ctx, src, dst, &pre); err != nil {
		return nil, err
	}
	opts.planStage("finding the tables to create")
	sc, err := src.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer closeConn(ctx, sc)
	dc, err := dst.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer closeConn(ctx, dc)
	var snapshot string
	if err := exec(ctx, sc, beginSnapshot); err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	defer rollback(ctx, sc)
	if err := sc.QueryRow(ctx, "SELECT pg_catalog.pg_export_snapshot()").Scan(&snapshot); err != nil {
		return nil, fmt.Errorf("source: export a snapshot for pg_dump: %w", err)
	}
	if err := exec(ctx, dc, beginSnapshot); err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	m, err := partition.FindMissing(ctx, sc, dc, partition.Options{Selection: opts.Selection})
	rollback(ctx, dc)
	if err != nil || m.Empty() {
		return nil, err
	}
	tools, err := schema.Find(ctx, opts.PgDump, serverVersion(sc), sc.PgConn().ParameterStatus("server_version"), len(m.Types) > 0)
	if err != nil {
		return nil, err
	}
	c := describe(m, tools)
	if opts.PlanOnly {
		opts.skipMissing = true // the plan lists them instead of their units
		return c, nil
	}
	conn, err := schema.ParseConn(opts.Source, pgDumpConnect(opts.StallTimeout))
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	s := schema.Source{Conn: conn, Snapshot: snapshot, LockWait: opts.LockTimeout}
	opts.planStage(fmt.Sprintf("pg_dump --schema-only of %d tables", len(m.Tables)))
	types, tables, err := dumpMissing(ctx, tools, s, m)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	rollback(ctx, sc)
	opts.planStage(fmt.Sprintf("creating %d tables on the destination", len(m.Tables)))
	if err := applyMissing(ctx, dst, m, types, tables, opts); errors.Is(err, errCreatedMeanwhile) {
		opts.Logger.Info("the missing tables were created on the destination by another process meanwhile", "tables", len(c.Tables))
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	c.Done = true
	opts.Logger.Info("created missing tables on the destination", "tables", len(c.Tables), "types", len(c.Types), "schemas", len(c.Schemas))
	if opts.OnCreate != nil {
		opts.OnCreate(*c)
	}
	return c, nil
}

func describe(m *partition.Missing, tools *schema.Tools) *Created {
	c := &Created{PgDump: tools.PgDump + " " + tools.Version}
	for _, s := range m.Schemas {
		c.Schemas = append(c.Schemas, pgx.Identifier{s}.Sanitize())
	}
	for _, t := range m.Types {
		c.Types = append(c.Types, t.String()+" ("+t.Kind+")")
	}
	for _, t := range m.Tables {
		c.Tables = append(c.Tables, t.String())
	}
	for _, t := range m.Sequences {
		c.Sequences = append(c.Sequences, t.String())
	}
	for _, t := range m.FKTargets {
		c.Locked = append(c.Locked, t.String())
	}
	return c
}

// dumpMissing runs pg_dump for the types (when any) and the tables.
func dumpMissing(ctx context.Context, tools *schema.Tools, s schema.Source, m *partition.Missing) (types, tables string, err error) {
	if len(m.Types) > 0 {
		var want []schema.Entry
		var schemas []string
		for _, t := range m.Types {
			want = append(want, schema.Entry{Catalog: schema.CatalogType, OID: t.OID, Name: "type " + t.String()})
			for _, con := range t.Constraints {
				want = append(want, schema.Entry{Catalog: schema.CatalogConstraint, OID: con, Name: "a constraint of domain " + t.String()})
			}
			if n := (pgx.Identifier{t.Schema}).Sanitize(); !slices.Contains(schemas, n) {
				schemas = append(schemas, n)
			}
		}
		if types, err = tools.DumpTypes(ctx, s, schemas, want); err != nil {
			return "", "", err
		}
	}
	var rels []string
	for _, t := range m.Sequences {
		rels = append(rels, t.String())
	}
	for _, t := range m.Tables {
		rels = append(rels, t.String())
	}
	tables, err = tools.DumpTables(ctx, s, rels)
	return types, tables, err
}

// createLockKey is the advisory lock (one bigint key: "lkcreate") that
// serializes --create-missing on a destination database; createLockWait
// bounds the wait for it.
const (
	createLockKey  = 0x6c6b637265617465
	createLockWait = time.Minute
)

// errCreatedMeanwhile says another process created every missing table
// between the plan and the creation.
var errCreatedMeanwhile = errors.New("created meanwhile")

// applyMissing runs the definitions on the destination in one transaction
// and checks every table is there before committing.
func applyMissing(ctx context.Context, dst *side, m *partition.Missing, types, tables string, opts *Options) error {
	conn, err := dst.connect(ctx)
	if err != nil {
		return err
	}
	defer closeConn(ctx, conn)
	// READ COMMITTED whatever the database's default, so that what is
	// read after the lock below is read after it.
	if err := exec(ctx, conn, "BEGIN ISOLATION LEVEL READ COMMITTED"); err != nil {
		return fmt.Errorf("destination: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			rollback(ctx, conn)
		}
	}()
	// Processes started at once (workers sharing a selection) create one
	// after the other; one that waited finds the tables there and creates
	// nothing.
	if err := exec(ctx, conn, fmt.Sprintf("SET LOCAL lock_timeout = %d; SELECT pg_catalog.pg_advisory_xact_lock(%d)",
		createLockWait.Milliseconds(), createLockKey)); err != nil {
		return fmt.Errorf("destination: --create-missing: wait for another process creating tables: %w; nothing was created", err)
	}
	if exists, err := partition.RelationsExist(ctx, conn, m.Tables); err != nil {
		return fmt.Errorf("destination: --create-missing: %w; nothing was created", err)
	} else if !slices.Contains(exists, false) {
		return errCreatedMeanwhile
	}
	// The scripts set lock_timeout = 0, as pg_dump's scripts do: the only
	// existing tables they lock are those new foreign keys reference, so
	// those are locked first, all in one LOCK within --lock-timeout (one
	// at a time, a table granted early would be held while the next
	// waited a timeout of its own).
	if len(m.FKTargets) > 0 {
		targets := make([]lock.Target, len(m.FKTargets))
		for i, t := range m.FKTargets {
			targets[i] = lock.Target{Table: t.Ident()}
		}
		req := lock.Request{Side: "destination", Tables: targets, Mode: lock.Mode("SHARE ROW EXCLUSIVE"), Timeout: opts.LockTimeout, Watch: dst.connect}
		if _, err := lock.Acquire(ctx, conn, req); err != nil {
			return fmt.Errorf("--create-missing: nothing was created: a foreign key to create references these tables: %w", err)
		}
	}
	var b strings.Builder
	for _, s := range m.Schemas {
		fmt.Fprintf(&b, "CREATE SCHEMA %s;\n", pgx.Identifier{s}.Sanitize())
	}
	for _, script := range []string{b.String(), types, tables} {
		if strings.TrimSpace(script) == "" {
			continue
		}
		script = forServer(script, serverVersion(conn))
		if err := exec(ctx, conn, script); err != nil {
			return createError(err, script)
		}
	}
	exists, err := partition.RelationsExist(ctx, conn, m.Tables)
	if err != nil {
		return fmt.Errorf("destination: --create-missing: check the created tables: %w; nothing was created", err)
	}
	for i, ok := range exists {
		if !ok {
			return fmt.Errorf("destination: --create-missing: pg_dump's definitions did not create %s (a table of an extension?); nothing was created", m.Tables[i])
		}
	}
	if err := commit(ctx, conn); err != nil {
		if uncertain(err) {
			return fmt.Errorf("destination: --create-missing: the connection was lost during COMMIT, so whether the tables were created is unknown: %w; look, then run again", err)
		}
		return fmt.Errorf("destination: --create-missing: COMMIT failed, nothing was created: %w", err)
	}
	committed = true
	return nil
}

// forServer drops from a pg_dump script the settings the destination
// server does not know: pg_dump 17 and later open every script with SET
// transaction_timeout = 0 (a setting PostgreSQL 17 added), whatever the
// version of the server dumped, and an older destination refuses it.
func forServer(script string, versionNum int) string {
	if versionNum >= 170000 || versionNum == 0 {
		return script
	}
	lines := strings.SplitAfter(script, "\n")
	out := lines[:0]
	for _, l := range lines {
		if strings.TrimSpace(l) == "SET transaction_timeout = 0;" {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "")
}

// createError names the server's error and the pg_dump entry it came from.
func createError(err error, script string) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return fmt.Errorf("destination: --create-missing failed, nothing was created: %w", err)
	}
	msg := fmt.Sprintf("%s (SQLSTATE %s)", pgErr.Message, pgErr.Code)
	if pgErr.Detail != "" {
		msg += ": " + pgErr.Detail
	}
	if entry := entryAt(script, int(pgErr.Position)); entry != "" {
		msg += ", in pg_dump's " + entry
	}
	if pgErr.Hint != "" {
		msg += "; hint: " + pgErr.Hint
	}
	return fmt.Errorf("destination: --create-missing failed, nothing was created: %s; the destination lacks something the definitions need "+
		"(they name it), or has an object of the same name: create or fix it there and run again", msg)
}

// entryAt describes the entry above character position pos (1-based; 0:
// unknown) of a pg_dump script from the comment pg_dump writes above each
// ("-- Name: x; Type: TABLE; Schema: app; Owner: -").
func entryAt(script string, pos int) string {
	if pos <= 0 {
		return ""
	}
	runes := []rune(script)
	if pos > len(runes) {
		return ""
	}
	before := string(runes[:pos])
	i := strings.LastIndex(before, "\n-- Name: ")
	if i < 0 {
		return ""
	}
	line := before[i+1:]
	if j := strings.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	fields := map[string]string{}
	for _, f := range strings.Split(strings.TrimPrefix(line, "-- "), "; ") {
		if k, v, ok := strings.Cut(f, ": "); ok {
			fields[k] = v
		}
	}
	if fields["Type"] == "" || fields["Name"] == "" {
		return ""
	}
	s := fields["Type"] + " " + fields["Name"]
	if sch := fields["Schema"]; sch != "" && sch != "-" {
		s += " of schema " + sch
	}
	return s
}

// writeText prints, at the head of a plan, what --create-missing would
// create (nothing when c is nil).
func (c *Created) writeText(w io.Writer) {
	if c == nil {
		return
	}
	verb := "would create"
	if c.Done {
		verb = "created"
	}
	fmt.Fprintf(w, "--create-missing %s on the destination (definitions from %s --schema-only, run in one transaction):\n", verb, c.PgDump)
	for _, l := range []struct {
		what  string
		names []string
	}{{"schemas", c.Schemas}, {"types", c.Types}, {"tables", c.Tables}, {"sequences", c.Sequences}} {
		if len(l.names) > 0 {
			fmt.Fprintf(w, "  %s: %s\n", l.what, strings.Join(l.names, ", "))
		}
	}
	if len(c.Locked) > 0 {
		fmt.Fprintf(w, "  existing tables that new foreign keys reference, locked SHARE ROW EXCLUSIVE while they are created: %s\n", strings.Join(c.Locked, ", "))
	}
	if !c.Done {
		fmt.Fprintln(w, "  their units are planned once they exist; the units below are those of the tables the destination has")
	}
	fmt.Fprintln(w)
}
