package copy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// side is one server: its parsed configuration and the name used in
// messages.
type side struct {
	name  string // "source" or "destination"
	cfg   *pgx.ConnConfig
	stall time.Duration // Options.StallTimeout
}

func parseSide(name, dsn string, stall time.Duration) (*side, error) {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnect
	}
	cfg.DialFunc = dialFunc(cfg.ConnectTimeout, stall)
	// Rows travel and are hashed as UTF8 whatever each server's encoding;
	// the servers convert. A connection string cannot change this.
	cfg.RuntimeParams["client_encoding"] = "UTF8"
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "lockstep"
	}
	cfg.AfterConnect = readVersion
	return &side{name: name, cfg: cfg, stall: stall}, nil
}

// connect opens a connection, naming the side and the server in errors,
// and sets the session up so that the server notices when lockstep
// vanishes or stops talking (see setupSQL).
func (s *side) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, s.cfg.Copy())
	if err != nil {
		return nil, fmt.Errorf("%s: cannot connect to %s: %w", s.name, s.where(), unwrapConnect(err))
	}
	sctx, cancel := bounded(ctx, s.name, "to the session setup", s.stall)
	defer cancel()
	if err := stalled(sctx, exec(sctx, conn, setupSQL(s.stall, serverVersion(conn)))); err != nil {
		closeConn(ctx, conn)
		return nil, fmt.Errorf("%s: set up the session on %s: %w", s.name, s.where(), err)
	}
	return conn, nil
}

func (s *side) where() string {
	return fmt.Sprintf("%s:%d database %s as %s", s.cfg.Host, s.cfg.Port, s.cfg.Database, s.cfg.User)
}

// unwrapConnect drops pgconn's own "failed to connect to ..." preamble,
// which repeats what where() says, and the repeats of one cause from
// several attempts (sslmode=prefer tries twice).
func unwrapConnect(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr
	}
	// sslmode=verify-ca/verify-full: say so plainly, without the write
	// that happened to see the handshake fail.
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &certErr) {
		return fmt.Errorf("TLS: the server's certificate does not verify (check sslrootcert, and that the host is a name the certificate gives): %w", certErr.Err)
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) && errors.Unwrap(ce) != nil {
		err = errors.Unwrap(ce)
	}
	var parts []string
	for _, p := range strings.Split(err.Error(), "\n") {
		if p = strings.TrimSpace(p); p != "" && !slices.Contains(parts, p) {
			parts = append(parts, p)
		}
	}
	return errors.New(strings.Join(parts, "; "))
}

// versionKey is where readVersion keeps a connection's server_version_num.
const versionKey = "lockstep.server_version_num"

// readVersion asks a new connection for server_version_num (the server
// does not report it at startup) and keeps it with the connection, so that
// serverVersion costs no query later: a query inside a unit's transaction
// would take the source's snapshot before the lock.
func readVersion(ctx context.Context, pc *pgconn.PgConn) error {
	res, err := pc.Exec(ctx, "SHOW server_version_num").ReadAll()
	if err != nil {
		return fmt.Errorf("read server_version_num: %w", err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 1 {
		return errors.New("read server_version_num: no value")
	}
	n, err := strconv.Atoi(string(res[0].Rows[0][0]))
	if err != nil || n <= 0 {
		return fmt.Errorf("read server_version_num: unexpected value %q", res[0].Rows[0][0])
	}
	pc.CustomData()[versionKey] = n
	return nil
}

// serverVersion is the server's version as server_version_num writes it
// (150018 for 15.18, 170000 for 17beta1). Connections made by side.connect
// carry the server's own figure; others fall back to parsing the
// server_version the server reported at startup.
func serverVersion(conn *pgx.Conn) int {
	if v, ok := conn.PgConn().CustomData()[versionKey].(int); ok {
		return v
	}
	return parseVersion(conn.PgConn().ParameterStatus("server_version"))
}

// parseVersion turns a server_version string ("15.18 (Debian ...)",
// "17beta1", "18devel", "9.6.24") into server_version_num's form; 0 when
// it has no leading number.
func parseVersion(v string) int {
	num := func(s string) (int, string) {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		n, _ := strconv.Atoi(s[:i])
		return n, s[i:]
	}
	major, rest := num(strings.TrimSpace(v))
	minor, patch := 0, 0
	if strings.HasPrefix(rest, ".") {
		minor, rest = num(rest[1:])
		if strings.HasPrefix(rest, ".") {
			patch, _ = num(rest[1:])
		}
	}
	if major >= 10 {
		return major*10000 + minor // 10 and later: major.minor
	}
	return major*10000 + minor*100 + patch
}

// minServerVersion is the oldest PostgreSQL lockstep runs against: the
// catalog queries use pg_partition_tree and pg_partition_ancestors, and
// the sessions set tcp_user_timeout (all 12+).
const minServerVersion = 120000

// checkVersion refuses a server older than minServerVersion.
func checkVersion(sideName string, conn *pgx.Conn) error {
	return versionError(sideName, serverVersion(conn), conn.PgConn().ParameterStatus("server_version"))
}

func versionError(sideName string, num int, text string) error {
	if num >= minServerVersion {
		return nil
	}
	return fmt.Errorf("%s: PostgreSQL %s is not supported: lockstep needs PostgreSQL 12 or later", sideName, text)
}

// exec runs statements with the simple protocol and checks the server ran
// them.
func exec(ctx context.Context, conn *pgx.Conn, sql string) error {
	_, err := conn.PgConn().Exec(ctx, sql).ReadAll()
	return err
}

// commit commits and fails unless the server reports COMMIT (a failed
// transaction answers COMMIT with ROLLBACK).
func commit(ctx context.Context, conn *pgx.Conn) error {
	if conn.IsClosed() {
		return errNotSent
	}
	res, err := conn.PgConn().Exec(ctx, "COMMIT").ReadAll()
	if err != nil {
		return err
	}
	if len(res) != 1 || res[0].CommandTag.String() != "COMMIT" {
		return errRolledBack
	}
	return nil
}

// commitWith commits like commit, first running sql with args (the unit's
// ledger row, which returns its id) in the same round trip: both go as
// one extended-protocol pipeline with one Sync, parameters in text. sql
// runs as the statement prepared when the connection opened
// (prepareLedgerRow), or else is parsed here. If the insert fails the server skips
// the COMMIT, and the transaction is left failed for the caller to roll
// back; a COMMIT that fails (a deferred constraint) rolls both back. Only
// an answer of COMMIT to the COMMIT is a commit. Without sql it is commit.
func commitWith(ctx context.Context, conn *pgx.Conn, sql string, args []any) (int64, error) {
	if sql == "" {
		return 0, commit(ctx, conn)
	}
	if conn.IsClosed() {
		return 0, errNotSent
	}
	var eqb pgx.ExtendedQueryBuilder
	if err := eqb.Build(conn.TypeMap(), nil, args); err != nil {
		return 0, fmt.Errorf("%w: %v", errUnencodable, err)
	}
	b := &pgconn.Batch{}
	if conn.PgConn().CustomData()[preparedKey] == sql {
		b.ExecPrepared(ledgerStmt, eqb.ParamValues, eqb.ParamFormats, eqb.ResultFormats)
	} else {
		b.ExecParams(sql, eqb.ParamValues, nil, eqb.ParamFormats, eqb.ResultFormats)
	}
	b.ExecParams("COMMIT", nil, nil, nil, nil)
	res, err := conn.PgConn().ExecBatch(ctx, b).ReadAll()
	if err != nil {
		return 0, err
	}
	if len(res) != 2 || res[1].CommandTag.String() != "COMMIT" {
		return 0, errRolledBack
	}
	var id int64
	if len(res[0].Rows) == 1 && len(res[0].Rows[0]) == 1 {
		id, _ = strconv.ParseInt(string(res[0].Rows[0][0]), 10, 64)
	}
	return id, nil
}

// errUnencodable: the ledger row could not be encoded, so nothing was
// sent. Certain.
var errUnencodable = errors.New("the ledger row could not be encoded; COMMIT was not sent")

// errRolledBack: the server answered COMMIT with ROLLBACK. Certain.
var errRolledBack = errors.New("the transaction had failed and was rolled back")

// errNotSent: the connection was gone before COMMIT was sent. Certain.
var errNotSent = errors.New("the connection was closed before COMMIT could be sent")

// rollback ends conn's transaction, even when ctx is already cancelled.
// It reports whether the connection is still fit for reuse.
func rollback(ctx context.Context, conn *pgx.Conn) bool {
	if conn == nil || conn.IsClosed() {
		return false
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return exec(rctx, conn, "ROLLBACK") == nil
}

// closeConn closes a connection without waiting on a cancelled context.
func closeConn(ctx context.Context, conn *pgx.Conn) {
	if conn == nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	conn.Close(cctx)
}

// uncertain reports whether a failed COMMIT may nonetheless have committed:
// the connection broke, or the backend died, before the outcome was known.
// pgconn.SafeToRetry cannot decide it: a connection lost while the answer
// was awaited comes back as "conn closed", which it deems safe to retry.
func uncertain(err error) bool {
	if errors.Is(err, errRolledBack) || errors.Is(err, errNotSent) || errors.Is(err, errUnencodable) {
		return false // never sent, or answered: not committed
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Severity == "FATAL" || pgErr.Severity == "PANIC"
	}
	return true
}
