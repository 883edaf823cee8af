package copy

import (
	"context"
	"strconv"
	"testing"

	"lockstep/internal/pgtest"
)

// A connection made by side.connect knows its server's server_version_num
// without asking again.
func TestServerVersionFromServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sd, err := parseSide("source", pgtest.Get(t).Source.DSN("postgres"), DefaultStallTimeout)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := sd.connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var num string
	if err := conn.QueryRow(ctx, "SHOW server_version_num").Scan(&num); err != nil {
		t.Fatal(err)
	}
	if want, _ := strconv.Atoi(num); serverVersion(conn) != want || want < 120000 {
		t.Fatalf("serverVersion = %d, server says %s", serverVersion(conn), num)
	}
}
