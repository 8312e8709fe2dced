package kit

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/soukhq/souk/internal/testkeys"
	"github.com/soukhq/souk/kg"
)

// TestKgWireCompat sends bodies marshalled from kg's kit wire types (what
// souk market and souk check emit) and expects them applied.
func TestKgWireCompat(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		ts := "20260301160000000"
		ct, err := kg.EncryptClientSecret(&testkeys.RSA3072(t).PublicKey, "sec", rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		reqs := []struct {
			path string
			body any
		}{
			{PathTenantSync, &kg.TenantSyncRequest{TenantID: "t-9", TenantCode: "c9", Name: "Nine", DomainName: "https://nine.example.com", Flag: kg.KitFlagAdd, TimeStamp: ts}},
			{PathApplicationSync, &kg.ApplicationSyncRequest{TenantID: "t-9", AppID: "a9", ClientID: "cid", ClientSecret: ct, Flag: kg.KitFlagAdd, TimeStamp: ts}},
			{PathAuthSync, &kg.AuthSyncRequest{TenantID: "t-9", AppID: "a9", Flag: kg.KitFlagAdd, TimeStamp: ts, CurrentSyncTime: ts,
				UserList: []kg.KitUser{{UserName: "u9", Name: "U", OrgCode: "o9", Role: kg.RoleAdmin, Enable: "true", EmployeeType: "2"}}}},
			{PathAuthSync, &kg.AuthSyncRequest{TenantID: "t-9", AppID: "a9", Flag: kg.KitFlagCancel, TimeStamp: ts, CurrentSyncTime: "20260301160000001",
				UserList: []kg.KitUser{{UserName: "u9"}}}},
			{PathSingleOrgSync, &kg.SingleOrgSyncRequest{TenantID: "t-9", OrgCode: "o9", OrgName: "Org", Flag: kg.KitFlagAdd, TimeStamp: ts}},
			{PathAllOrgSync, &kg.AllOrgSyncRequest{TenantID: "t-9", TimeStamp: ts, OrgInfoList: []kg.OrgInfo{{OrgCode: "o9", OrgName: "Org"}, {OrgCode: "p9", OrgName: "Sub", ParentCode: "o9"}}}},
		}
		for _, r := range reqs {
			body, err := kg.KitBody(mustJSON(t, r.body))
			if err != nil {
				t.Fatal(err)
			}
			f.code(kg.CodeSuccess, r.path, body, signOpts{})
		}
		u, err := f.svc.User(ctx, false, "t-9", "a9", "u9")
		if err != nil || u.State != StateCancelled || u.EmployeeType != 2 || u.Role != "admin" {
			t.Fatalf("user %+v %v", u, err)
		}
		if _, s, err := f.svc.ClientCredentials(ctx, false, "t-9", "a9"); err != nil || s != "sec" {
			t.Fatalf("credentials %q %v", s, err)
		}
		if g, _ := f.svc.Orgs(ctx, false, "t-9"); len(g) != 2 {
			t.Fatalf("orgs %+v", g)
		}
	})
}
