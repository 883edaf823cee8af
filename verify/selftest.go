package verify

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"
)

// trickyValues are values whose text or binary form depends on settings,
// versions or builds: if the two servers render any differently, their
// checksums cannot be compared.
var trickyValues = []struct{ label, expr string }{
	{"float NaN", "'NaN'::float8"},
	{"float -0", "'-0'::float8"},
	{"float 1e23", "1e23::float8"},
	{"real 0.1", "0.1::real"},
	{"'' (empty text)", "''::text"},
	{"NULL", "NULL::text"},
	{"non-ASCII text", "'ünïcødé \t\\'::text"}, // characters every Latin encoding has
	{"interval", "'1 mon -1 day -00:00:00.000001'::interval"},
	{"timestamptz at a DST change", "'2024-03-31 02:30:00 Europe/Berlin'::timestamptz"},
	{"timestamp BC", "'4713-01-01 00:00:00.000001 BC'::timestamp"},
	{"date infinity", "'infinity'::date"},
	{"huge numeric", "('1' || repeat('0', 130) || '.' || repeat('9', 30))::numeric"},
	{"numeric trailing zero", "1.50::numeric"},
	{"bytea", "'\\x00ff5c0a'::bytea"},
	{"money", "'-92233720368547758.08'::money"}, // text follows lc_monetary
	{"jsonb", `'{"b": [1, 2.50, null], "a": "x"}'::jsonb`},
	{"inet", "'::ffff:10.0.0.1/128'::inet"},
	{"text array", `ARRAY[NULL, '', 'a,b', 'q"uote']::text[]`},
}

// SelfTest renders the tricky values on both servers, in their pinned
// sessions, as COPY text, COPY binary and the row text the diff hashes,
// and fails naming the first value, and the server versions, when they
// disagree. Binary forms are compared only between servers of one major
// version, the only ones lockstep copies in binary. Run it before trusting either side's figures.
func SelfTest(ctx context.Context, src, dst *pgx.Conn, sameMajor bool) error {
	exprs := make([]string, len(trickyValues))
	for i, v := range trickyValues {
		exprs[i] = v.expr
	}
	sel := "SELECT " + strings.Join(exprs, ", ")
	type rendering struct {
		text, binary []byte
		rows         []string
	}
	render := func(ctx context.Context, c *pgx.Conn) (r rendering, err error) {
		var buf bytes.Buffer
		if _, err = c.PgConn().CopyTo(ctx, &buf, "COPY ("+sel+") TO STDOUT"); err != nil {
			return r, err
		}
		r.text = bytes.Clone(buf.Bytes())
		buf.Reset()
		if _, err = c.PgConn().CopyTo(ctx, &buf, "COPY ("+sel+") TO STDOUT (FORMAT binary)"); err != nil {
			return r, err
		}
		r.binary = buf.Bytes()
		r.rows = make([]string, len(exprs))
		ptr := make([]any, len(exprs))
		hashes := make([]string, len(exprs))
		for i, e := range exprs {
			hashes[i] = "ROW(" + e + ")::text"
			ptr[i] = &r.rows[i]
		}
		err = c.QueryRow(ctx, "SELECT "+strings.Join(hashes, ", ")).Scan(ptr...)
		return r, err
	}
	var s, d rendering
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) { s, err = render(gctx, src); return wrap("source: self-test", err) })
	g.Go(func() (err error) { d, err = render(gctx, dst); return wrap("destination: self-test", err) })
	if err := g.Wait(); err != nil {
		return err
	}
	versions := fmt.Sprintf("source server %s, destination server %s", src.PgConn().ParameterStatus("server_version"), dst.PgConn().ParameterStatus("server_version"))
	sf := strings.Split(strings.TrimSuffix(string(s.text), "\n"), "\t")
	df := strings.Split(strings.TrimSuffix(string(d.text), "\n"), "\t")
	for i, v := range trickyValues {
		switch {
		case i >= len(sf) || i >= len(df) || sf[i] != df[i]:
			return &SelfTestError{Value: v.label, Form: "COPY text", Source: field(sf, i), Dest: field(df, i), Versions: versions}
		case s.rows[i] != d.rows[i]:
			return &SelfTestError{Value: v.label, Form: "row text", Source: s.rows[i], Dest: d.rows[i], Versions: versions}
		}
	}
	if sameMajor && !bytes.Equal(s.binary, d.binary) {
		return &SelfTestError{Value: "one of the values", Form: "COPY binary", Versions: versions}
	}
	return nil
}

func field(f []string, i int) string {
	if i < len(f) {
		return f[i]
	}
	return "(missing)"
}

// SelfTestError says the servers render a value differently, so comparing
// their checksums would report false differences. Not retryable.
type SelfTestError struct {
	Value, Form, Source, Dest, Versions string
}

func (e *SelfTestError) Error() string {
	return fmt.Sprintf("self-test: the servers render %s differently as %s (source %q, destination %q; %s): "+
		"checksums would differ for identical data; align the server versions or the settings that shape output "+
		"(TimeZone, DateStyle, IntervalStyle, extra_float_digits, bytea_output, lc_monetary are pinned by lockstep)",
		e.Value, e.Form, e.Source, e.Dest, e.Versions)
}
