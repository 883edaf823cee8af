package partition

import (
	"strings"
	"testing"
)

func tbl(oid uint32, name, kind string) Table {
	return Table{OID: oid, Schema: "public", Name: name, Kind: kind}
}

func unit(t Table, bytes int64) Unit {
	return Unit{Source: t, Dest: t, Estimate: Estimate{Bytes: bytes}}
}

func fk(name string, from, to Table) ForeignKey {
	return ForeignKey{Name: name, Referencing: from, Referenced: to}
}

func names(g Group) string {
	var s []string
	for _, u := range g.Units {
		s = append(s, u.Dest.Name)
	}
	return strings.Join(s, ",")
}

func TestGroupUnits(t *testing.T) {
	customer, rental, staff := tbl(1, "customer", "r"), tbl(2, "rental", "r"), tbl(3, "staff", "r")
	payment, p1, p2 := tbl(10, "payment", "p"), tbl(11, "payment_p1", "r"), tbl(12, "payment_p2", "r")
	loner, other := tbl(20, "loner", "r"), tbl(21, "other", "r")
	a, b := tbl(30, "a", "r"), tbl(31, "b", "r")
	leaves := map[uint32][]Table{payment.OID: {p1, p2}}
	clone := fk("payment_customer_fk", p1, customer)
	clone.PartitionClone = true

	t.Run("lone tables", func(t *testing.T) {
		gs, err := groupUnits([]Unit{unit(loner, 5), unit(other, 9)}, &fkGraph{}, FKGroup, BySize)
		if err != nil || len(gs) != 2 || names(gs[0]) != "other" || gs[0].Why != "" || len(gs[0].Truncate) != 0 {
			t.Fatalf("%v %+v", err, gs)
		}
	})
	t.Run("chain in order", func(t *testing.T) {
		g := &fkGraph{keys: []ForeignKey{fk("r_c", rental, customer), fk("s_r", staff, rental), fk("self", customer, customer)}}
		gs, err := groupUnits([]Unit{unit(staff, 1), unit(rental, 1), unit(customer, 1), unit(loner, 100)}, g, FKGroup, BySize)
		if err != nil || len(gs) != 2 || names(gs[0]) != "loner" || names(gs[1]) != "customer,rental,staff" {
			t.Fatalf("%v %v", err, gs)
		}
		if !strings.Contains(gs[1].Why, `"r_c" on "public"."rental"`) || gs[1].Deferred {
			t.Errorf("why: %s", gs[1].Why)
		}
	})
	t.Run("referenced from outside", func(t *testing.T) {
		g := &fkGraph{keys: []ForeignKey{fk("r_c", rental, customer)}}
		_, err := groupUnits([]Unit{unit(customer, 1)}, g, FKGroup, BySize)
		if err == nil || !strings.Contains(err.Error(), `"public"."customer" is referenced by foreign key "r_c" on "public"."rental", which is not selected`) {
			t.Fatalf("%v", err)
		}
		if gs, err := groupUnits([]Unit{unit(customer, 1)}, g, FKReplica, BySize); err != nil || !gs[0].Delete {
			t.Fatalf("replica: %v %+v", err, gs)
		}
	})
	t.Run("partitions split out", func(t *testing.T) {
		g := &fkGraph{keys: []ForeignKey{fk("payment_customer_fk", payment, customer), clone, fk("r_c", rental, customer)}, leaves: leaves}
		units := []Unit{unit(p1, 50), unit(p2, 50), unit(customer, 1), unit(rental, 1)}
		gs, err := groupUnits(units, g, FKGroup, BySize)
		if err != nil || len(gs) != 3 {
			t.Fatalf("%v %+v", err, gs)
		}
		if names(gs[0]) != "customer,rental" || len(gs[0].Truncate) != 1 || gs[0].Truncate[0].Name != "payment" ||
			!strings.Contains(gs[0].Why, "copied one by one after it commits") {
			t.Fatalf("group: %+v", gs[0])
		}
		for _, leaf := range gs[1:] {
			if len(leaf.Units) != 1 || len(leaf.After) != 1 || leaf.After[0] != 0 {
				t.Errorf("partition unit %s: after %v", names(leaf), leaf.After)
			}
		}
		strict, err := groupUnits(units, g, FKGroupStrict, BySize)
		if err != nil || len(strict) != 1 || names(strict[0]) != "customer,payment_p1,payment_p2,rental" || len(strict[0].Truncate) != 1 {
			t.Fatalf("group-strict: %v %+v", err, strict)
		}
		// A partition that is itself referenced stays in the group.
		g.keys = append(g.keys, fk("s_p1", staff, p1))
		tied, err := groupUnits(append(units, unit(staff, 1)), g, FKGroup, BySize)
		if err != nil || len(tied) != 1 || len(tied[0].Truncate) != 1 {
			t.Fatalf("tied partition: %v %+v", err, tied)
		}
		if got := names(tied[0]); !strings.HasPrefix(got, "customer,") || strings.Index(got, "payment_p1") > strings.Index(got, "staff") {
			t.Errorf("order %s: referenced before referencing", got)
		}
	})
	t.Run("partition not selected", func(t *testing.T) {
		g := &fkGraph{keys: []ForeignKey{fk("payment_customer_fk", payment, customer)}, leaves: leaves}
		_, err := groupUnits([]Unit{unit(p1, 1), unit(customer, 1)}, g, FKGroup, BySize)
		if err == nil || !strings.Contains(err.Error(), `its partitions "public"."payment_p2", which are not selected`) {
			t.Fatalf("%v", err)
		}
	})
	t.Run("cycle", func(t *testing.T) {
		g := &fkGraph{keys: []ForeignKey{fk("a_b", a, b), fk("b_a", b, a)}}
		gs, err := groupUnits([]Unit{unit(a, 1), unit(b, 1)}, g, FKGroup, BySize)
		if err != nil || len(gs) != 1 || !gs[0].Deferred || !strings.Contains(gs[0].Why, "DEFERRABLE") {
			t.Fatalf("%v %+v", err, gs)
		}
	})
	t.Run("dependents after their group whatever the size order", func(t *testing.T) {
		g := &fkGraph{keys: []ForeignKey{fk("payment_customer_fk", payment, customer)}, leaves: leaves}
		gs, err := groupUnits([]Unit{unit(p1, 900), unit(p2, 800), unit(customer, 1), unit(loner, 500)}, g, FKGroup, BySize)
		if err != nil {
			t.Fatal(err)
		}
		var order []string
		for _, g := range gs {
			order = append(order, names(g))
		}
		if got := strings.Join(order, " "); got != "loner customer payment_p1 payment_p2" {
			t.Fatalf("order %s", got)
		}
		if gs[2].After[0] != 1 || gs[3].After[0] != 1 {
			t.Errorf("after: %v %v", gs[2].After, gs[3].After)
		}
	})
}
