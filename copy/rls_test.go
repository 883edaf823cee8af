package copy_test

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"lockstep/copy"
	"lockstep/internal/pgtest"
	"lockstep/partition"
)

// Row security enabled between the plan and the copy: the pinned
// row_security = off makes the server refuse instead of handing over only
// the rows a policy allows, and the unit fails with an error that says
// what the role needs; the destination is left as it was.
func TestRowSecurityEnabledAfterPlanFailsTheUnit(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	role := fmt.Sprintf("rlsrun_%d", time.Now().UnixNano())
	mustExec(t, f.src, "CREATE ROLE "+role+" LOGIN PASSWORD 'pw'; GRANT SELECT, UPDATE ON big TO "+role)
	t.Cleanup(func() { pgtest.Exec(t, f.src, "DROP OWNED BY "+role+"; DROP ROLE "+role) })
	u, _ := url.Parse(f.src)
	u.User = url.UserPassword(role, "pw")

	ctx := testCtx(t)
	p, err := copy.MakePlan(ctx, opts(u.String(), f.dst, "big"))
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	mustExec(t, f.src, "ALTER TABLE big ENABLE ROW LEVEL SECURITY; CREATE POLICY few ON big FOR SELECT USING (id <= 10)")
	rep, err := p.Execute(ctx)
	var rs *partition.RowSecurityError
	if !errors.As(err, &rs) || rep.Units[0].Status != copy.StatusFailed ||
		!strings.Contains(err.Error(), `source: "public"."big": query would be affected by row-level security policy for table "big"`) ||
		!strings.Contains(err.Error(), "BYPASSRLS") {
		t.Fatalf("copy under a policy enabled after the plan: %v, status %s", err, rep.Units[0].Status)
	}
	f.srcBefore = digest(t, f.src) // the source is read by the superuser here
	f.assertUntouched(t)
}
