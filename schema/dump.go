package schema

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Tools are the client programs a creation runs.
type Tools struct {
	PgDump    string // path
	PgRestore string // path, beside pg_dump; empty unless asked for
	Version   string // pg_dump's version as it prints it ("15.18")
	Major     int
}

// versionTimeout bounds a program's --version.
const versionTimeout = 10 * time.Second

// ToolError says a client program is missing or too old. Not retryable:
// the user installs one first.
type ToolError struct{ Msg string }

func (e *ToolError) Error() string { return e.Msg }

// install is the advice for a missing or old program.
func install(major int) string {
	return fmt.Sprintf("install the PostgreSQL %d (or later) client programs (Debian/Ubuntu: apt-get install postgresql-client-%d, "+
		"from the PostgreSQL apt repository if the distribution lacks it; RHEL: postgresql%d) and put pg_dump on PATH or give its path with --pg-dump",
		major, major, major)
}

// Find locates pg_dump (pgDump: a path, or a name looked up on PATH;
// empty: "pg_dump") and checks that its major version is at least the
// source server's: an older pg_dump refuses a newer server, or would miss
// what it does not know. With restore, pg_restore is taken from the same
// directory (or PATH) and must be of pg_dump's major version.
func Find(ctx context.Context, pgDump string, sourceVersionNum int, sourceVersion string, restore bool) (*Tools, error) {
	need := sourceVersionNum / 10000
	if pgDump == "" {
		pgDump = "pg_dump"
	}
	path, err := exec.LookPath(pgDump)
	if err != nil {
		return nil, &ToolError{fmt.Sprintf("--create-missing needs pg_dump %d or later (the source runs PostgreSQL %s), and %s was not found: %s",
			need, sourceVersion, pgDump, install(need))}
	}
	version, major, err := programVersion(ctx, path, "pg_dump")
	if err != nil {
		return nil, &ToolError{fmt.Sprintf("--create-missing needs pg_dump %d or later: %s: %v; %s", need, path, err, install(need))}
	}
	if major < need {
		return nil, &ToolError{fmt.Sprintf("--create-missing needs pg_dump %d or later, as new as the source server (PostgreSQL %s), but %s is pg_dump %s: %s",
			need, sourceVersion, path, version, install(need))}
	}
	t := &Tools{PgDump: path, Version: version, Major: major}
	if !restore {
		return t, nil
	}
	t.PgRestore = filepath.Join(filepath.Dir(path), "pg_restore")
	if _, err := os.Stat(t.PgRestore); err != nil {
		if t.PgRestore, err = exec.LookPath("pg_restore"); err != nil {
			return nil, &ToolError{fmt.Sprintf("--create-missing needs pg_restore of pg_dump's version (%s) to extract type definitions, "+
				"and found none beside %s or on PATH: %s", version, path, install(major))}
		}
	}
	rv, rmajor, err := programVersion(ctx, t.PgRestore, "pg_restore")
	if err != nil {
		return nil, &ToolError{fmt.Sprintf("--create-missing: %s: %v; %s", t.PgRestore, err, install(major))}
	}
	if rmajor != major {
		return nil, &ToolError{fmt.Sprintf("--create-missing needs pg_restore of pg_dump's major version: %s is pg_dump %s but %s is pg_restore %s: %s",
			path, version, t.PgRestore, rv, install(major))}
	}
	return t, nil
}

var versionLine = regexp.MustCompile(`\(PostgreSQL\)\s+((\d+)(\.\d+)*\S*)`)

// programVersion runs a program with --version and reads its version.
func programVersion(ctx context.Context, path, name string) (string, int, error) {
	vctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	out, err := run(vctx, path, []string{"--version"}, os.Environ())
	if err != nil {
		return "", 0, err
	}
	return parseVersion(string(out), name)
}

// parseVersion reads "pg_dump (PostgreSQL) 15.18 (Debian ...)"; before
// PostgreSQL 10 the major version had two numbers, all below 12 anyway.
func parseVersion(out, name string) (string, int, error) {
	m := versionLine.FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, name) {
		return "", 0, fmt.Errorf("cannot read a %s version from %q", name, strings.TrimSpace(out))
	}
	major, err := strconv.Atoi(m[2])
	if err != nil {
		return "", 0, fmt.Errorf("cannot read a %s version from %q", name, strings.TrimSpace(out))
	}
	return m[1], major, nil
}

// Source is where and how pg_dump reads.
type Source struct {
	Conn Conn
	// Snapshot is a snapshot exported by a transaction that stays open
	// while pg_dump runs, so the dump sees what the caller's checks saw.
	Snapshot string
	// LockWait bounds pg_dump's wait for its ACCESS SHARE table locks
	// (--lock-wait-timeout), which queue behind an ACCESS EXCLUSIVE request.
	LockWait time.Duration
}

func (s Source) args() []string {
	// --encoding=UTF8: the script runs on a lockstep connection, which
	// speaks UTF8, and the --table names are UTF-8; in the database's own
	// encoding (LATIN1, say) the names would not match and the script's
	// non-ASCII bytes would be refused or, where they happen to form UTF-8,
	// silently read as other characters.
	a := []string{"--schema-only", "--encoding=UTF8", "--no-owner", "--no-privileges", "--no-tablespaces",
		"--no-publications", "--no-subscriptions", "--no-security-labels"}
	if s.LockWait > 0 {
		a = append(a, "--lock-wait-timeout="+strconv.FormatInt(max(s.LockWait.Milliseconds(), 1), 10))
	}
	if s.Snapshot != "" {
		a = append(a, "--snapshot="+s.Snapshot)
	}
	if s.Conn.Info != "" {
		a = append(a, "--dbname="+s.Conn.Info)
	}
	return a
}

// DumpTables returns pg_dump's definitions of the relations named (each as
// SQL writes it, schema-qualified): tables, with their owned sequences,
// defaults, constraints, indexes, triggers, rules, policies, comments and
// the ATTACH of partitions among them; sequences. Ownership and privileges
// are left out (the destination role will own what it creates), and so are
// tablespaces, publications and security labels.
func (t *Tools) DumpTables(ctx context.Context, s Source, relations []string) (string, error) {
	args := append(s.args(), "--strict-names")
	for _, r := range relations {
		args = append(args, "--table="+r)
	}
	out, err := run(ctx, t.PgDump, args, s.Conn.Env(os.Environ()))
	if err != nil {
		return "", err
	}
	return StripRestrict(string(out)), nil
}

// Entry is an archive entry to extract: its catalog (pg_type's or
// pg_constraint's OID) and object OID on the source.
type Entry struct {
	Catalog, OID uint32
	Name         string // for messages
}

// Catalog OIDs of the entries DumpTypes extracts; fixed in every release.
const (
	CatalogType       = 1247 // pg_type
	CatalogConstraint = 2606 // pg_constraint
)

// DumpTypes returns the definitions of the entries, as pg_dump writes
// them, in pg_dump's dependency order. pg_dump has no switch to dump one
// type, so it dumps the schemas' objects but their tables (no table is
// locked) into a custom-format archive in a temporary directory, and
// pg_restore extracts the entries by OID.
func (t *Tools) DumpTypes(ctx context.Context, s Source, schemas []string, want []Entry) (string, error) {
	if t.PgRestore == "" {
		return "", errors.New("DumpTypes: no pg_restore")
	}
	dir, err := os.MkdirTemp("", "lockstep-types-")
	if err != nil {
		return "", fmt.Errorf("pg_dump: %w", err)
	}
	defer os.RemoveAll(dir)
	archive, list := filepath.Join(dir, "types.dump"), filepath.Join(dir, "types.list")
	args := append(s.args(), "--format=custom", "--file="+archive, "--strict-names", "--exclude-table=*.*")
	for _, n := range schemas {
		args = append(args, "--schema="+n)
	}
	if _, err := run(ctx, t.PgDump, args, s.Conn.Env(os.Environ())); err != nil {
		return "", err
	}
	toc, err := run(ctx, t.PgRestore, []string{"--list", archive}, os.Environ())
	if err != nil {
		return "", err
	}
	selected, err := selectEntries(string(toc), want)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(list, []byte(selected), 0o600); err != nil {
		return "", fmt.Errorf("pg_restore: %w", err)
	}
	out, err := run(ctx, t.PgRestore, []string{"--no-owner", "--no-privileges", "--use-list=" + list, "--file=-", archive}, os.Environ())
	if err != nil {
		return "", err
	}
	return StripRestrict(string(out)), nil
}

var tocLine = regexp.MustCompile(`^\s*\d+;\s+(\d+)\s+(\d+)\s`)

// selectEntries keeps the lines of a pg_restore --list that name the
// entries wanted, in the archive's order, and fails naming any not found.
func selectEntries(toc string, want []Entry) (string, error) {
	wanted := map[[2]uint32]bool{}
	for _, e := range want {
		wanted[[2]uint32{e.Catalog, e.OID}] = true
	}
	found := map[[2]uint32]bool{}
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(toc))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		m := tocLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		cat, _ := strconv.ParseUint(m[1], 10, 32)
		oid, _ := strconv.ParseUint(m[2], 10, 32)
		k := [2]uint32{uint32(cat), uint32(oid)}
		if wanted[k] && !found[k] {
			found[k] = true
			b.WriteString(sc.Text())
			b.WriteByte('\n')
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("pg_restore --list: %w", err)
	}
	var lost []string
	for _, e := range want {
		if !found[[2]uint32{e.Catalog, e.OID}] {
			lost = append(lost, e.Name)
		}
	}
	if len(lost) > 0 {
		return "", fmt.Errorf("pg_dump did not dump %s (dropped meanwhile?)", strings.Join(lost, ", "))
	}
	return b.String(), nil
}

var restrictLine = regexp.MustCompile(`^\\restrict ([A-Za-z0-9]+)\r?$`)

// StripRestrict takes out the \restrict KEY and \unrestrict KEY lines that
// pg_dump 17.6, 16.10, 15.14 and later put around a script. They are psql
// meta-commands that stop psql from running any other meta-command the
// script might smuggle in (a line starting with a backslash inside a
// quoted name, say). The script is not run by psql but sent to the server
// as SQL, where no meta-command exists: a stray one is a syntax error that
// fails the whole transaction. Only those two exact lines go.
func StripRestrict(sql string) string {
	lines := strings.SplitAfter(sql, "\n")
	key := ""
	var b strings.Builder
	b.Grow(len(sql))
	for _, l := range lines {
		t := strings.TrimRight(l, "\n")
		if key == "" {
			if m := restrictLine.FindStringSubmatch(t); m != nil {
				key = m[1]
				continue
			}
		} else if strings.TrimRight(t, "\r") == `\unrestrict `+key {
			continue
		}
		b.WriteString(l)
	}
	return b.String()
}

// run runs a program and returns its standard output; a failure carries
// the end of its standard error.
func run(ctx context.Context, path string, args, env []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &limited{w: &errOut, n: 64 << 10}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Base(path), context.Cause(ctx))
		}
		msg := strings.Join(strings.Fields(strings.TrimSpace(errOut.String())), " ")
		if len(msg) > 2000 {
			msg = "..." + msg[len(msg)-2000:]
		}
		if msg == "" {
			msg = "no message"
		}
		return nil, fmt.Errorf("%s failed (%v): %s", filepath.Base(path), err, msg)
	}
	return out.Bytes(), nil
}

// limited keeps the first n bytes written to it and drops the rest.
type limited struct {
	w *bytes.Buffer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if room := l.n - l.w.Len(); room > 0 {
		l.w.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
