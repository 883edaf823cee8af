package copy_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"lockstep/internal/pgtest"
	"lockstep/verify"
)

// The self-test passes on agreeing servers and names the value when one
// server renders it differently, instead of letting checksums differ.
func TestSelfTestNamesDisagreement(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	ctx := context.Background()
	a, b := connect(t, src), connect(t, dst)
	pin := "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 3; SET bytea_output = 'hex'; SET lc_monetary = 'C'"
	if _, err := a.Exec(ctx, pin); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Exec(ctx, pin); err != nil {
		t.Fatal(err)
	}
	if err := verify.SelfTest(ctx, a, b, true); err != nil {
		t.Fatalf("agreeing servers: %v", err)
	}
	for _, c := range []struct{ set, value string }{
		{"SET extra_float_digits = 0", "float 1e23"},
		{"SET IntervalStyle = 'iso_8601'", "interval"},
		{"SET TimeZone = 'Europe/Berlin'", "timestamptz at a DST change"},
	} {
		if _, err := b.Exec(ctx, pin+"; "+c.set); err != nil {
			t.Fatal(err)
		}
		err := verify.SelfTest(ctx, a, b, true)
		var st *verify.SelfTestError
		if !errors.As(err, &st) || st.Value != c.value || !strings.Contains(err.Error(), "source server ") {
			t.Errorf("%s: got %v, want a self-test error naming %q", c.set, err, c.value)
		}
	}
}
