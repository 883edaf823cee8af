package redact

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"
)

func TestPasswords(t *testing.T) {
	cases := []struct{ in, want string }{
		{"cannot parse postgres://bob:s3cret@db:5432/app?sslmode=require",
			"cannot parse postgres://bob:xxxxx@db:5432/app?sslmode=require"},
		// An @ in the password: the host starts after the last one.
		{"postgresql://bob:p@ss:w@rd@db/app and more", "postgresql://bob:xxxxx@db/app and more"},
		{"POSTGRES://bob:p%40ss%2Fw%25@db/app", "POSTGRES://bob:xxxxx@db/app"},
		{"postgres://bob@db/app", "postgres://bob@db/app"},
		{"host=db password=s3cret user=bob", "host=db password=xxxxx user=bob"},
		{"host=db password = 'it\\'s a \\\\ secret' user=bob", "host=db password = xxxxx user=bob"},
		{"host=db PASSWORD='unterminated", "host=db PASSWORD=xxxxx"},
		{"sslpassword=keypass sslmode=verify-full", "sslpassword=xxxxx sslmode=verify-full"},
		{"ALTER ROLE app PASSWORD 'hunter2'; SELECT 1", "ALTER ROLE app PASSWORD 'xxxxx'; SELECT 1"},
		{"CREATE USER u WITH ENCRYPTED PASSWORD 'it''s'", "CREATE USER u WITH ENCRYPTED PASSWORD 'xxxxx'"},
		{"alter role x password E'a\\'b' valid until 'infinity'", "alter role x password 'xxxxx' valid until 'infinity'"},
		{"ALTER ROLE x PASSWORD $pw$sec'ret$pw$ LOGIN", "ALTER ROLE x PASSWORD 'xxxxx' LOGIN"},
		{"ALTER ROLE x PASSWORD 'cut short by track_activity_query_si", "ALTER ROLE x PASSWORD 'xxxxx'"},
		{"ALTER ROLE x PASSWORD NULL", "ALTER ROLE x PASSWORD NULL"},
		{"password authentication failed for user \"bob\"", "password authentication failed for user \"bob\""},
		{"SELECT dblink_connect('host=h dbname=d password=topsecret')", "SELECT dblink_connect('host=h dbname=d password=xxxxx"},
		// A quoted key=value password inside an SQL literal: its quotes are doubled.
		{`SELECT dblink_connect('host=h password=''top sec\''ret'' dbname=d')`, `SELECT dblink_connect('host=h password=xxxxx dbname=d')`},
	}
	for _, c := range cases {
		if got := Passwords(c.in); got != c.want {
			t.Errorf("Passwords(%q)\n = %q\nwant %q", c.in, got, c.want)
		}
	}
}

func TestPasswordsSecretForms(t *testing.T) {
	secret := `p@ss w'o"rd\%=/:`
	forms := []string{
		secret,
		url.QueryEscape(secret),
		url.PathEscape(secret),
		strings.TrimPrefix(url.UserPassword("", secret).String(), ":"),
		`p%40ss%20w%27o%22rd%5c%25%3d/:`, // a mix, lower-case hex
		`p@ss w\'o"rd\\%=/:`,             // key=value quoting
		`p@ss w''o"rd\%=/:`,              // SQL literal
		`p@ss w'o\"rd\\%=/:`,             // %q
	}
	for _, f := range forms {
		msg := "error near " + f + " in input"
		if got := Passwords(msg, secret); strings.Contains(got, "ss w") || strings.Contains(got, "rd") {
			t.Errorf("form %q survived: %q", f, got)
		}
	}
}

func TestHandlerRedactsEverything(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(NewHandler(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), "topsecret"))
	log = log.With("dsn", "postgres://u:topsecret@h/db").WithGroup("g")
	log.Debug("connecting with password=topsecret", "error", errors.New("ALTER ROLE u PASSWORD 'other'"),
		"any", struct{ DSN string }{"host=h password=kv"}, slog.Group("inner", "s", "topsecret"))
	log.Log(context.Background(), slog.LevelInfo, "plain", "n", 3)
	out := buf.String()
	for _, leak := range []string{"topsecret", "other", "kv"} {
		if strings.Contains(out, leak) {
			t.Errorf("log holds %q:\n%s", leak, out)
		}
	}
	if !strings.Contains(out, "g.n=3") || !strings.Contains(out, "xxxxx") {
		t.Errorf("log:\n%s", out)
	}
}
