package invui

import (
	"fmt"
	"testing"
	"time"

	"github.com/keydesk/keydesk/app/inventory"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/app/ui/uitest"
	"github.com/keydesk/keydesk/registry"
)

// importOrg restores an organisation of n users straight into the registry
// (POST /v1/import): most with a primary and a backup key, some with one,
// some pending, some with none.
func importOrg(b *testing.B, r *reg, n int) (keys int) {
	b.Helper()
	now := time.Now().UTC()
	x := registry.Export{Format: registry.ExportFormat, Scope: "organisation", ExportedAt: now}
	for i := 0; i < n; i++ {
		u := registry.User{ID: fmt.Sprintf("usr_%06d", i), ExternalID: fmt.Sprintf("e%06d", i), DisplayName: fmt.Sprintf("Person %06d", i),
			Email: fmt.Sprintf("p%06d@example.org", i), Groups: []string{[]string{"engineering", "operations", "sales", "support"}[i%4]},
			Status: registry.UserActive, Version: 1, CreatedAt: now, UpdatedAt: now}
		x.Users = append(x.Users, u)
		add := func(j int, role registry.KeyRole, st registry.KeyStatus) {
			x.Keys = append(x.Keys, registry.Key{ID: fmt.Sprintf("key_%06d_%d", i, j), Serial: fmt.Sprintf("%d", 30000000+2*i+j), Model: "YubiKey 5 NFC",
				Firmware: "5.7.2", OwnerID: u.ID, Role: role, Status: st, Version: 1, CreatedAt: now, UpdatedAt: now})
		}
		switch i % 10 {
		case 0:
		case 1:
			add(0, registry.RolePrimary, registry.KeyActive)
		case 2:
			add(0, registry.RolePrimary, registry.KeyPending)
		default:
			add(0, registry.RolePrimary, registry.KeyActive)
			add(1, registry.RoleBackup, registry.KeyActive)
		}
	}
	var out registry.Restored
	r.call("POST", "/v1/import", x, &out)
	if out.Users != n {
		b.Fatalf("imported %d users of %d", out.Users, n)
	}
	return out.Keys
}

// BenchmarkInventoryLoad10k loads 10,000 users and their keys into the
// Inventory screen from a real registry process, as an admin (the audit
// log is read for last verifications when reading user by user).
// first-page-ms is how long until the table first shows rows.
func BenchmarkInventoryLoad10k(b *testing.B) {
	const n = 10000
	r := startRegistry(b)
	keys := importOrg(b, r, n)
	b.Run("pages", func(b *testing.B) { benchLoad(b, r, n, keys, inventory.Options{}) })
	b.Run("user-by-user", func(b *testing.B) { benchLoad(b, r, n, keys, inventory.Options{PerUser: true}) })
}

// benchLoad loads the inventory b.N times with opt.
func benchLoad(b *testing.B, r *reg, n, keys int, opt inventory.Options) {
	var first time.Duration
	for i := 0; i < b.N; i++ {
		env := newEnv(b, r.admin, uikit.Admin)
		v := newInventory(env)
		done := make(chan error, 1)
		v.loaded = func(err error) { done <- err }
		v.Options = opt
		env.Window.SetContent(v.Root)
		start := time.Now()
		v.Load()
		var err error
		uitest.Unlocked(func() { err = <-done })
		if err != nil {
			b.Fatal(err)
		}
		if v.Shown() != n || len(v.users) != n {
			b.Fatalf("%d rows of %d", v.Shown(), n)
		}
		first += v.firstPage.Sub(start)
	}
	b.ReportMetric(float64(first.Milliseconds())/float64(b.N), "first-page-ms")
	b.ReportMetric(float64(n), "users")
	b.ReportMetric(float64(keys), "keys")
}

// BenchmarkInventoryFilter10k is one keystroke in the search field over
// 10,000 loaded users: filter, recount, refresh the table.
func BenchmarkInventoryFilter10k(b *testing.B) {
	const n = 10000
	r := startRegistry(b)
	importOrg(b, r, n)
	env := newEnv(b, r.admin, uikit.Admin)
	v := newInventory(env)
	done := make(chan error, 1)
	v.loaded = func(err error) { done <- err }
	env.Window.SetContent(v.Root)
	v.Load()
	var err error
	uitest.Unlocked(func() { err = <-done })
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		v.Search.SetText(fmt.Sprintf("p%04d", i%1000))
	}
	b.StopTimer()
	if v.Shown() == 0 || v.Shown() == n {
		b.Fatalf("search shows %d rows", v.Shown())
	}
}
