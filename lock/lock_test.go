package lock

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

func TestBackoffDoublesWithJitterAndCap(t *testing.T) {
	base, limit := 100*time.Millisecond, time.Second
	for n, top := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 5: time.Second, 50: time.Second} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := Backoff(n, base, limit)
			if d < top/2 || d > top {
				t.Fatalf("Backoff(%d) = %s, want within [%s, %s]", n, d, top/2, top)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("Backoff(%d): only %d distinct pauses; no jitter", n, len(seen))
		}
	}
}

func TestRequestSQL(t *testing.T) {
	r := Request{Tables: []Target{{Table: pgx.Identifier{"s", `t"x`}}}, Mode: Exclusive, Timeout: 1500 * time.Millisecond}
	if got, want := r.SQL(), `SET LOCAL lock_timeout = 1500; SET LOCAL statement_timeout = 1500; LOCK TABLE "s"."t""x" IN EXCLUSIVE MODE; SET LOCAL statement_timeout = 0`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	r = Request{Tables: []Target{{Table: pgx.Identifier{"public", "a"}, Only: true}, {Table: pgx.Identifier{"public", "p"}}},
		Mode: AccessExclusive, Timeout: time.Second, Before: []string{"BEGIN"}, After: []string{`TRUNCATE ONLY "public"."a", "public"."p"`}}
	want := `BEGIN; SET LOCAL lock_timeout = 1000; SET LOCAL statement_timeout = 1000; LOCK TABLE ONLY "public"."a", "public"."p" IN ACCESS EXCLUSIVE MODE; SET LOCAL statement_timeout = 0; TRUNCATE ONLY "public"."a", "public"."p"`
	if got := r.SQL(); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestTimeoutErrorNamesBlockers(t *testing.T) {
	e := &TimeoutError{Side: "source", Table: `"public"."t"`, Mode: Exclusive, Timeout: time.Second,
		Blockers: []Blocker{{PID: 42, User: "app", Application: "batch", State: "idle in transaction", XactAge: 3 * time.Second, Query: "UPDATE t\n   SET x = 1"}}}
	msg := e.Error()
	for _, w := range []string{"source:", "EXCLUSIVE lock on \"public\".\"t\" not granted within 1s", "pid 42", "user app", `"batch"`, "idle in transaction", "open 3s", "UPDATE t SET x = 1"} {
		if !strings.Contains(msg, w) {
			t.Errorf("%q lacks %q", msg, w)
		}
	}
}

func TestBlockerQueryRedactedAndCut(t *testing.T) {
	q := "ALTER ROLE app PASSWORD 'hunter2-" + strings.Repeat("é", 200) + "'"
	if got := queryText(q); strings.Contains(got, "hunter2") || strings.Contains(got, "é") || got != "ALTER ROLE app PASSWORD 'xxxxx'" {
		t.Errorf("queryText = %q", got)
	}
	long := "SELECT '" + strings.Repeat("é", 300) + "' -- password=s3cret"
	got := queryText(long)
	if n := len([]rune(got)); n != MaxQuery || !strings.HasSuffix(got, "...") || !utf8.ValidString(got) {
		t.Errorf("queryText kept %d runes (valid UTF-8: %v): %q", n, utf8.ValidString(got), got)
	}
	b := Blocker{Query: "SELECT dblink_connect('host=h password=s3cret')"}
	if strings.Contains(b.String(), "s3cret") {
		t.Errorf("Blocker.String = %q", b.String())
	}
}
