package kit

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/internal/testkeys"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/merchant/auditnote"
)

func TestSignatureVariants(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		// a body whose keys are not sorted: the sorted reading differs from the raw one
		body := []byte(`{"tenantId":"t-1","name":"Acme","tenantCode":"acme","domainName":"https://acme.example.com","flag":1,"testFlag":0,"instanceId":"i","orderId":"o","timeStamp":"20260301160000000"}`)
		sorted, err := kg.KitBody(body)
		if err != nil {
			t.Fatal(err)
		}
		now := f.clk.Now()
		ms := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).UnixMilli(), 10) }
		tests := []struct {
			name    string
			o       signOpts
			body    []byte
			want    string
			msgPart string
		}{
			{name: "raw", body: body, want: kg.CodeSuccess},
			{name: "sorted", body: body, o: signOpts{signBody: sorted}, want: kg.CodeSuccess},
			{name: "sorted-deep", body: []byte(`{"domainName":"https://acme.example.com","flag":1,"instanceId":"i","name":"Acme","orderId":"o","tenantCode":"acme","tenantId":"t-1","testFlag":0,"timeStamp":"20260301160000000","x":{"z":1,"b":2}}`),
				o: signOpts{signBody: []byte(`{"domainName":"https://acme.example.com","flag":1,"instanceId":"i","name":"Acme","orderId":"o","tenantCode":"acme","tenantId":"t-1","testFlag":0,"timeStamp":"20260301160000000","x":{"b":2,"z":1}}`)}, want: kg.CodeSuccess},
			{name: "rotated old key", body: body, o: signOpts{key: "old-rotated-key"}, want: kg.CodeSuccess},
			{name: "seconds timestamp", body: body, o: signOpts{timestamp: strconv.FormatInt(now.Unix(), 10)}, want: kg.CodeSuccess},
			{name: "59s old", body: body, o: signOpts{timestamp: ms(-59 * time.Second)}, want: kg.CodeSuccess},
			{name: "59s ahead", body: body, o: signOpts{timestamp: ms(59 * time.Second)}, want: kg.CodeSuccess},
			{name: "wrong key", body: body, o: signOpts{key: "not-the-key"}, want: kg.CodeAuthFailed, msgPart: "x-sign"},
			{name: "tampered body", body: []byte(strings.Replace(string(body), "Acme", "Evil", 1)), o: signOpts{signBody: body}, want: kg.CodeAuthFailed},
			{name: "stale", body: body, o: signOpts{timestamp: ms(-61 * time.Second)}, want: kg.CodeAuthFailed, msgPart: "stale"},
			{name: "future", body: body, o: signOpts{timestamp: ms(61 * time.Second)}, want: kg.CodeAuthFailed, msgPart: "future"},
			{name: "garbage timestamp", body: body, o: signOpts{timestamp: "yesterday"}, want: kg.CodeAuthFailed},
			{name: "no signature", body: body, o: signOpts{noSign: true}, want: kg.CodeAuthFailed, msgPart: "x-sign"},
		}
		for _, tc := range tests {
			r, _ := f.call(PathTenantSync, tc.body, tc.o)
			if r.ResultCode != tc.want {
				t.Errorf("%s: %s %q, want %s", tc.name, r.ResultCode, r.ResultMsg, tc.want)
			}
			if tc.msgPart != "" && !strings.Contains(r.ResultMsg, tc.msgPart) {
				t.Errorf("%s: resultMsg %q does not mention %q", tc.name, r.ResultMsg, tc.msgPart)
			}
		}
		if got := counterValue(t, f.svc.signVariants.WithLabelValues(kg.KitVariantSorted, kg.VariantMillis)); got != 1 {
			t.Errorf("sorted variant counted %v times, want 1", got)
		}
		if got := counterValue(t, f.svc.signVariants.WithLabelValues(kg.KitVariantSortedDeep, kg.VariantMillis)); got != 1 {
			t.Errorf("sorted-deep variant counted %v times, want 1", got)
		}
		if got := counterValue(t, f.svc.signVariants.WithLabelValues(kg.KitVariantRaw, kg.VariantSeconds)); got != 1 {
			t.Errorf("raw/seconds variant counted %v times, want 1", got)
		}
		if got := counterValue(t, f.svc.requests.WithLabelValues("tenantSync", kg.CodeAuthFailed)); got != 6 {
			t.Errorf("auth failures counted %v, want 6", got)
		}
	})
}

func TestReplayRejected(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		body := mustJSON(t, tenantBody(FlagAdd, "Acme", "https://acme.example.com"))
		f.code(kg.CodeSuccess, PathTenantSync, body, signOpts{nonce: "n-replayed"})
		r := f.code(kg.CodeAuthFailed, PathTenantSync, body, signOpts{nonce: "n-replayed"})
		if !strings.Contains(r.ResultMsg, "replay") {
			t.Errorf("message %q does not say replay", r.ResultMsg)
		}
		// the same nonce on another interface is a replay too
		f.code(kg.CodeAuthFailed, PathAllOrgSync, []byte(`{"tenantId":"t-1","orgInfoList":[]}`), signOpts{nonce: "n-replayed"})
		// a request failing its signature does not burn the nonce
		f.code(kg.CodeAuthFailed, PathTenantSync, body, signOpts{nonce: "n-fresh", key: "wrong"})
		f.code(kg.CodeSuccess, PathTenantSync, body, signOpts{nonce: "n-fresh"})
		// old nonces are pruned once they can no longer pass the window
		f.clk.Advance(10 * time.Minute)
		f.ok(PathTenantSync, tenantBody(FlagAdd, "Acme", "https://acme.example.com"))
		if n := f.count(`SELECT COUNT(*) FROM kit_nonces WHERE nonce = $1`, "n-replayed"); n != 0 {
			t.Errorf("stale nonce not pruned")
		}
	})
}

func TestBadParams(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		tests := []struct {
			path, body, field string
		}{
			{PathTenantSync, `{"flag":1,"tenantCode":"c","name":"n","domainName":"https://d.example.com"}`, "tenantId"},
			{PathTenantSync, `{"tenantId":"t","flag":7,"tenantCode":"c","name":"n","domainName":"https://d.example.com"}`, "flag"},
			{PathTenantSync, `{"tenantId":"t","flag":1,"tenantCode":"c","name":"n","domainName":"ftp://d"}`, "domainName"},
			{PathTenantSync, `{"tenantId":"t","flag":1,"testFlag":5,"tenantCode":"c","name":"n","domainName":"https://d.example.com"}`, "testFlag"},
			{PathTenantSync, `[1,2]`, "body"},
			{PathApplicationSync, `{"tenantId":"t","appId":"a","clientId":"c","clientSecret":"bm90IHJzYQ==","flag":1}`, "clientSecret"},
			{PathApplicationSync, `{"tenantId":"t","clientId":"c","clientSecret":"x","flag":1}`, "appId"},
			{PathAuthSync, `{"tenantId":"t","appId":"a","flag":1,"userList":[{"userName":"u","name":"n","role":"boss","enable":"true"}]}`, "userList[0].role"},
			{PathAuthSync, `{"tenantId":"t","appId":"a","flag":1,"userList":[{"userName":"u","name":"n","role":"user","enable":"maybe"}]}`, "userList[0].enable"},
			{PathAuthSync, `{"tenantId":"t","appId":"a","flag":1,"userList":[]}`, "userList"},
			{PathAuthSync, `{"tenantId":"t","appId":"a","flag":4,"userList":[{"userName":"u"}]}`, "flag"},
			{PathSingleOrgSync, `{"tenantId":"t","flag":1,"orgName":"x"}`, "orgCode"},
			{PathAllOrgSync, `{"tenantId":"t","orgInfoList":[{"orgCode":"1"}]}`, "orgInfoList[0].orgName"},
			{PathAllOrgSync, `{"tenantId":"t"}`, "orgInfoList"},
		}
		for _, tc := range tests {
			r := f.code(kg.CodeBadParam, tc.path, []byte(tc.body), signOpts{})
			if !strings.Contains(r.ResultMsg, tc.field) {
				t.Errorf("%s %s: message %q does not name %s", tc.path, tc.body, r.ResultMsg, tc.field)
			}
		}
		if r := f.code(kg.CodeBadParam, "/produceAPI/v2/noSuchSync", []byte(`{}`), signOpts{}); !strings.Contains(r.ResultMsg, "noSuchSync") {
			t.Errorf("unknown interface: %q", r.ResultMsg)
		}
		if n := len(f.events()); n != 0 {
			t.Errorf("%d events after rejected requests", n)
		}
	})
}

func TestTenantSyncIdempotency(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		// a delete of a tenant never seen succeeds, without an instance check
		f.ok(PathTenantSync, tenantBody(FlagDelete, "", ""))
		f.ok(PathTenantSync, tenantBody(FlagAdd, "Acme", "https://acme.example.com/"))
		f.ok(PathTenantSync, tenantBody(FlagAdd, "Acme", "https://acme.example.com"))
		if n := f.count(`SELECT COUNT(*) FROM kit_tenants`); n != 1 {
			t.Fatalf("%d tenants after a repeated add, want 1", n)
		}
		if n := f.countEvents(EventTenantSynced); n != 1 {
			t.Fatalf("%d tenant.synced events after a repeated add, want 1", n)
		}
		f.clk.Advance(time.Minute)
		f.ok(PathTenantSync, tenantBody(FlagModify, "Acme Corp", "https://login.acme.example.com"))
		tn, err := f.svc.Tenant(ctx, false, "t-1")
		if err != nil {
			t.Fatal(err)
		}
		if tn.Name != "Acme Corp" || tn.DomainName != "https://login.acme.example.com" || tn.TenantCode != "huawei" || tn.Deleted {
			t.Fatalf("after modify: %+v", tn)
		}
		f.ok(PathTenantSync, tenantBody(FlagDelete, "", ""))
		f.ok(PathTenantSync, tenantBody(FlagDelete, "", ""))
		if tn, _ = f.svc.Tenant(ctx, false, "t-1"); !tn.Deleted {
			t.Fatal("tenant not deleted")
		}
		f.ok(PathTenantSync, tenantBody(FlagAdd, "Acme Corp", "https://login.acme.example.com"))
		var actions []string
		for _, e := range eventsAs[TenantEvent](f) {
			if e.Subject != "t-1" || e.TestFlag {
				t.Errorf("event subject %q testFlag %v", e.Subject, e.TestFlag)
			}
			actions = append(actions, e.D.Action+":"+e.D.Tenant.Name)
		}
		want := []string{"added:Acme", "modified:Acme Corp", "deleted:Acme Corp", "added:Acme Corp"}
		if fmt.Sprint(actions) != fmt.Sprint(want) {
			t.Fatalf("events %v, want %v", actions, want)
		}
	})
}

func TestTestFlagIsolation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		b := tenantBody(FlagAdd, "Sandbox", "https://sandbox.example.com")
		b["testFlag"] = "1" // a string, as some pages show
		b["instanceId"], b["orderId"] = "", ""
		f.ok(PathTenantSync, b)
		if _, err := f.svc.Tenant(ctx, false, "t-1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("debug tenant visible as production: %v", err)
		}
		tn, err := f.svc.LookupTenant(ctx, "t-1")
		if err != nil || !tn.TestFlag {
			t.Fatalf("LookupTenant: %+v %v", tn, err)
		}
		f.ok(PathTenantSync, tenantBody(FlagAdd, "Real", "https://real.example.com"))
		if tn, _ = f.svc.LookupTenant(ctx, "t-1"); tn.TestFlag || tn.Name != "Real" {
			t.Fatalf("LookupTenant prefers production: %+v", tn)
		}
		ev := f.events()
		if len(ev) != 2 || !ev[0].TestFlag || ev[1].TestFlag {
			t.Fatalf("events %+v", ev)
		}
	})
}

func TestApplicationSync(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.ok(PathApplicationSync, appBody(t, FlagDelete, "", "")) // unknown app: success
		f.ok(PathApplicationSync, appBody(t, FlagAdd, "client-1", "s3cr3t-value"))
		f.ok(PathApplicationSync, appBody(t, FlagAdd, "client-1", "s3cr3t-value")) // fresh ciphertext, same secret
		if n := f.countEvents(EventAppSynced); n != 1 {
			t.Fatalf("%d app.synced events after a repeated add, want 1", n)
		}
		id, secret, err := f.svc.ClientCredentials(ctx, false, "t-1", "app-1")
		if err != nil || id != "client-1" || secret != "s3cr3t-value" {
			t.Fatalf("ClientCredentials = %q %q %v", id, secret, err)
		}
		if n := f.count(`SELECT COUNT(*) FROM kit_apps WHERE client_secret LIKE $1`, "%s3cr3t%"); n != 0 {
			t.Fatal("client secret stored in plaintext")
		}
		for _, e := range f.events() {
			if strings.Contains(string(e.Data), "s3cr3t") || strings.Contains(string(e.Data), "clientSecret") {
				t.Fatalf("event leaks the secret: %s", e.Data)
			}
		}
		// Java's RSA/ECB/OAEPPadding (SHA-1/SHA-1) is accepted too
		ct, err := rsa.EncryptOAEP(crypto.SHA1.New(), rand.Reader, &testkeys.RSA3072(t).PublicKey, []byte("rotated-secret"), nil)
		if err != nil {
			t.Fatal(err)
		}
		b := appBody(t, FlagModify, "client-2", "x")
		b["clientSecret"] = base64.StdEncoding.EncodeToString(ct)
		f.ok(PathApplicationSync, b)
		if id, secret, _ = f.svc.ClientCredentials(ctx, false, "t-1", "app-1"); id != "client-2" || secret != "rotated-secret" {
			t.Fatalf("after modify: %q %q", id, secret)
		}
		if got := counterValue(t, f.svc.secretVariants.WithLabelValues(kg.OAEPSHA1)); got != 1 {
			t.Errorf("sha1 OAEP variant counted %v, want 1", got)
		}
		f.ok(PathApplicationSync, appBody(t, FlagDelete, "", ""))
		f.ok(PathApplicationSync, appBody(t, FlagDelete, "", ""))
		if _, _, err := f.svc.ClientCredentials(ctx, false, "t-1", "app-1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted app still has credentials: %v", err)
		}
		if n := f.countEvents(EventAppSynced); n != 3 {
			t.Fatalf("%d app.synced events, want 3 (add, modify, delete)", n)
		}
		// a secret encrypted under another key is a bad parameter naming clientSecret
		other, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		ct2, _ := kg.EncryptClientSecret(&other.PublicKey, "x", rand.Reader)
		b = appBody(t, FlagAdd, "client-3", "x")
		b["clientSecret"] = ct2
		r := f.code(kg.CodeBadParam, PathApplicationSync, mustJSON(t, b), signOpts{})
		if !strings.Contains(r.ResultMsg, "clientSecret") {
			t.Errorf("message %q does not name clientSecret", r.ResultMsg)
		}
	})
}

func TestAuthSync500Users(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		users := make([]map[string]any, MaxUsersPerSync)
		for i := range users {
			role := "user"
			if i == 0 {
				role = "admin"
			}
			users[i] = user(fmt.Sprintf("u%03d", i), role, "true")
		}
		f.ok(PathAuthSync, authBody(FlagAdd, "20260301160000000", users...))
		f.ok(PathAuthSync, authBody(FlagAdd, "20260301160000000", users...))
		if n := f.count(`SELECT COUNT(*) FROM kit_users WHERE state = 'authorized'`); n != MaxUsersPerSync {
			t.Fatalf("%d users, want %d", n, MaxUsersPerSync)
		}
		if n := f.countEvents(EventUserAuthorized); n != MaxUsersPerSync {
			t.Fatalf("%d user.authorized events, want %d (a repeat creates nothing)", n, MaxUsersPerSync)
		}
		u, err := f.svc.User(ctx, false, "t-1", "app-1", "u000")
		if err != nil || u.Role != "admin" || !u.Active() {
			t.Fatalf("u000 = %+v %v", u, err)
		}
		r := f.code(kg.CodeBadParam, PathAuthSync, mustJSON(t, authBody(FlagAdd, "20260301160000000", append(users, user("extra", "user", "true"))...)), signOpts{})
		if !strings.Contains(r.ResultMsg, "userList") {
			t.Errorf("501 users: message %q", r.ResultMsg)
		}
	})
}

func TestAuthSyncFlags(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		get := func(name string) *User {
			t.Helper()
			u, err := f.svc.User(ctx, false, "t-1", "app-1", name)
			if err != nil {
				t.Fatal(err)
			}
			return u
		}
		f.ok(PathAuthSync, authBody(FlagDelete, "20260301160000000", map[string]any{"userName": "ghost"})) // unknown: success
		f.ok(PathAuthSync, authBody(FlagAdd, "20260301160000000", user("alice", "admin", "true")))
		f.ok(PathAuthSync, authBody(FlagAdd, "20260301160000000", user("bob", "user", "true")))
		// modify: disable alice (enable as a JSON boolean is accepted)
		f.ok(PathAuthSync, authBody(FlagModify, "20260301160100000", map[string]any{"userName": "alice", "name": "Alice", "orgCode": "d2", "role": "user", "enable": false}))
		if a := get("alice"); a.Enabled || a.Active() || a.Role != "user" || a.OrgCode != "d2" || a.State != StateAuthorized {
			t.Fatalf("alice after modify: %+v", a)
		}
		// an out-of-order (older) update is ignored
		f.ok(PathAuthSync, authBody(FlagModify, "20260301160030000", user("alice", "admin", "true")))
		if a := get("alice"); a.Enabled {
			t.Fatal("stale authSync re-enabled alice")
		}
		// cancel bob's authorization, twice
		f.ok(PathAuthSync, authBody(FlagCancel, "20260301160200000", map[string]any{"userName": "bob"}))
		f.ok(PathAuthSync, authBody(FlagCancel, "20260301160200000", map[string]any{"userName": "bob"}))
		if b := get("bob"); b.State != StateCancelled || b.Active() {
			t.Fatalf("bob after cancel: %+v", b)
		}
		// a modify does not re-authorize bob; an add does
		renamed := user("bob", "user", "true")
		renamed["name"] = "Robert"
		f.ok(PathAuthSync, authBody(FlagModify, "20260301160300000", renamed))
		if b := get("bob"); b.State != StateCancelled || b.Name != "Robert" {
			t.Fatalf("modify re-authorized bob: %+v", b)
		}
		f.ok(PathAuthSync, authBody(FlagAdd, "20260301160400000", user("bob", "user", "true")))
		if b := get("bob"); !b.Active() {
			t.Fatalf("bob after re-add: %+v", b)
		}
		// delete alice, twice
		f.ok(PathAuthSync, authBody(FlagDelete, "20260301160500000", map[string]any{"userName": "alice"}))
		f.ok(PathAuthSync, authBody(FlagDelete, "20260301160500000", map[string]any{"userName": "alice"}))
		if a := get("alice"); a.State != StateDeleted {
			t.Fatalf("alice after delete: %+v", a)
		}
		var types []string
		for _, e := range eventsAs[UserEvent](f) {
			types = append(types, e.Type+":"+e.D.User.UserName)
		}
		want := []string{
			"user.authorized:alice", "user.authorized:bob", "user.updated:alice",
			"user.deauthorized:bob", "user.updated:bob", "user.authorized:bob", "user.deauthorized:alice",
		}
		if fmt.Sprint(types) != fmt.Sprint(want) {
			t.Fatalf("events\n%v\nwant\n%v", types, want)
		}
	})
}

func TestAuthSyncV1Shapes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		list := `[{"userName":"zhangsan01","name":"张三","position":"系统管理员","orgCode":"123456789","role":"admin","enable":"true","employeeCode":"","mobile":"","email":"","extension":{"entryDate":"2022-11-9","employeeType":"4","workPlace":"南京"}}]`
		body := mustJSON(t, map[string]any{"tenantId": "t-1", "appId": "app-1", "flag": "1", "testFlag": "0", "userList": list, "currentSyncTime": "20220413093539534", "timeStamp": "20220413093539534"})
		f.code(kg.CodeSuccess, PathAuthSync, body, signOpts{})
		u, err := f.svc.User(context.Background(), false, "t-1", "app-1", "zhangsan01")
		if err != nil {
			t.Fatal(err)
		}
		if u.Name != "张三" || u.EmployeeType != 4 || u.WorkPlace != "南京" || u.EntryDate != "2022-11-9" || u.Role != "admin" || !u.Enabled {
			t.Fatalf("user %+v", u)
		}
	})
}

func TestSingleOrgSync(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		org := func(flag int, code, name, parent string) map[string]any {
			return map[string]any{"instanceId": "i", "tenantId": "t-1", "orgCode": code, "orgName": name, "parentCode": parent, "flag": flag, "testFlag": 0, "timeStamp": "20220413093539534"}
		}
		f.ok(PathSingleOrgSync, org(FlagDelete, "nope", "", "")) // unknown: success
		f.ok(PathSingleOrgSync, org(FlagAdd, "10", "Root", ""))
		f.ok(PathSingleOrgSync, org(FlagAdd, "20", "Dev", "10"))
		f.ok(PathSingleOrgSync, org(FlagAdd, "20", "Dev", "10"))
		f.ok(PathSingleOrgSync, org(FlagAdd, "30", "Ops", "10"))
		f.ok(PathSingleOrgSync, org(FlagModify, "30", "Operations", "20")) // renamed and moved
		tree, err := f.svc.OrgTree(ctx, false, "t-1")
		if err != nil {
			t.Fatal(err)
		}
		if len(tree) != 1 || tree[0].OrgCode != "10" || len(tree[0].Children) != 1 || tree[0].Children[0].Children[0].OrgName != "Operations" {
			b, _ := json.Marshal(tree)
			t.Fatalf("tree %s", b)
		}
		f.ok(PathSingleOrgSync, org(FlagDelete, "30", "", ""))
		f.ok(PathSingleOrgSync, org(FlagDelete, "30", "", ""))
		if n := f.count(`SELECT COUNT(*) FROM kit_orgs`); n != 2 {
			t.Fatalf("%d departments, want 2", n)
		}
		if n := f.countEvents(EventOrgSynced); n != 5 {
			t.Fatalf("%d org.synced events, want 5", n)
		}
	})
}

// TestAllOrgSyncUpserts: a full sync adds and updates, and keeps departments
// it does not list (joint-kit.md §5.2: "upsert all, do not delete").
func TestAllOrgSyncUpserts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		full := func(list any) map[string]any {
			return map[string]any{"instanceId": "i", "tenantId": "t-1", "orgInfoList": list, "testFlag": 0, "timeStamp": "20220413093539534"}
		}
		// parents listed after children; the top's parent is not in the list
		f.ok(PathAllOrgSync, full([]OrgInfo{
			{OrgCode: "B", OrgName: "Dev", ParentCode: "A"},
			{OrgCode: "C", OrgName: "Ops", ParentCode: "A"},
			{OrgCode: "A", OrgName: "HQ", ParentCode: "265789314"},
		}))
		f.ok(PathAllOrgSync, full([]OrgInfo{{OrgCode: "A", OrgName: "HQ", ParentCode: "265789314"}, {OrgCode: "B", OrgName: "Dev", ParentCode: "A"}, {OrgCode: "C", OrgName: "Ops", ParentCode: "A"}}))
		if n := f.countEvents(EventOrgSynced); n != 1 {
			t.Fatalf("%d org.synced events after an identical full sync, want 1", n)
		}
		// V2 example shape: a string with unquoted keys; V1 "name"
		f.ok(PathAllOrgSync, full(`[{orgCode:"A", orgName:"HQ", parentCode:"265789314"},{orgCode:"B", name:"Development", parentCode:"A"},{orgCode:"D", orgName:"QA", parentCode:"B"}]`))
		flat, err := f.svc.Orgs(ctx, false, "t-1")
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, g := range flat {
			got += g.OrgCode + "=" + g.OrgName + "<" + g.ParentCode + " "
		}
		if want := "A=HQ<265789314 B=Development<A C=Ops<A D=QA<B "; got != want {
			t.Fatalf("departments %q, want %q", got, want)
		}
		ev := f.events()
		var d OrgEvent
		if err := json.Unmarshal(ev[len(ev)-1].Data, &d); err != nil {
			t.Fatal(err)
		}
		if d.Mode != "full" || len(d.Added) != 1 || d.Added[0].OrgCode != "D" || len(d.Modified) != 1 || d.Modified[0].OrgCode != "B" ||
			d.Total != 4 || strings.Contains(string(ev[len(ev)-1].Data), "removed") {
			t.Fatalf("event %s", ev[len(ev)-1].Data)
		}
		tree, _ := f.svc.OrgTree(ctx, false, "t-1")
		if len(tree) != 1 || tree[0].OrgCode != "A" || tree[0].Children[0].Children[0].OrgCode != "D" {
			b, _ := json.Marshal(tree)
			t.Fatalf("tree %s", b)
		}
	})
}

func TestReadAPI(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		f.ok(PathTenantSync, tenantBody(FlagAdd, "Acme", "https://acme.example.com"))
		f.ok(PathApplicationSync, appBody(t, FlagAdd, "client-1", "topsecret"))
		f.ok(PathAuthSync, authBody(FlagAdd, "20260301160000000", user("alice", "admin", "true"), user("bob", "user", "true")))
		f.ok(PathAllOrgSync, map[string]any{"tenantId": "t-1", "orgInfoList": []OrgInfo{{OrgCode: "d1", OrgName: "Dev"}}})
		get := func(path, token string, out any) int {
			req, _ := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if out != nil {
				if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
					t.Fatal(err)
				}
			}
			return resp.StatusCode
		}
		if c := get("/api/v1/tenants/t-1", "", nil); c != http.StatusUnauthorized {
			t.Fatalf("no token: %d", c)
		}
		if c := get("/api/v1/tenants/t-1", "wrong", nil); c != http.StatusUnauthorized {
			t.Fatalf("wrong token: %d", c)
		}
		var ten struct {
			Tenant Tenant
			Apps   []App
		}
		if c := get("/api/v1/tenants/t-1", "api-token", &ten); c != 200 || ten.Tenant.DomainName != "https://acme.example.com" || len(ten.Apps) != 1 || ten.Apps[0].ClientID != "client-1" {
			t.Fatalf("tenant: %d %+v", c, ten)
		}
		var us struct {
			Users []User
			Next  string
		}
		if c := get("/api/v1/tenants/t-1/users?limit=1", "api-token", &us); c != 200 || len(us.Users) != 1 || us.Users[0].UserName != "alice" || us.Next != "alice" {
			t.Fatalf("users page 1: %d %+v", c, us)
		}
		us.Next = ""
		if c := get("/api/v1/tenants/t-1/users?limit=1&after=alice", "api-token", &us); c != 200 || len(us.Users) != 1 || us.Users[0].UserName != "bob" {
			t.Fatalf("users page 2: %d %+v", c, us)
		}
		var orgs struct{ Orgs []Org }
		if c := get("/api/v1/tenants/t-1/orgs?tree=1", "api-token", &orgs); c != 200 || len(orgs.Orgs) != 1 {
			t.Fatalf("orgs: %d %+v", c, orgs)
		}
		if c := get("/api/v1/tenants/nope", "api-token", nil); c != http.StatusNotFound {
			t.Fatalf("unknown tenant: %d", c)
		}
		// The second token of a rotation ("api-token, next-api-token") is accepted too.
		if c := get("/api/v1/tenants/t-1", "next-api-token", nil); c != http.StatusOK {
			t.Fatalf("the rotated-in token: %d", c)
		}
		if c := get("/api/v1/tenants/t-1", "api-token, next-api-token", nil); c != http.StatusUnauthorized {
			t.Fatalf("the whole list as a token: %d", c)
		}
	})
}

func TestBuildTreeCycles(t *testing.T) {
	tree := BuildTree([]Org{{OrgCode: "a", ParentCode: "b"}, {OrgCode: "b", ParentCode: "a"}, {OrgCode: "c", ParentCode: "a"}, {OrgCode: "d"}})
	seen := map[string]bool{}
	var walk func([]*Org, int)
	walk = func(ns []*Org, depth int) {
		if depth > 10 {
			t.Fatal("cycle in tree")
		}
		for _, n := range ns {
			seen[n.OrgCode] = true
			walk(n.Children, depth+1)
		}
	}
	walk(tree, 0)
	if len(seen) != 4 {
		t.Fatalf("tree lost departments: %v", seen)
	}
}

// A kit call names, for the merchant's audit record, the instance and the
// tenant it is about (and the application, the department), never the body's
// secrets.
func TestKitCallsNoteTheirSubject(t *testing.T) {
	f := newFixture(t, dbtest.Backends()[0])
	h := f.svc.Handler()
	call := func(path string, body map[string]any) string {
		t.Helper()
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		ts := strconv.FormatInt(f.clk.Now().UnixMilli(), 10)
		nonce := "note-" + path
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(raw))
		req.Header.Set("x-sign", kg.KitSign(testKey, nonce, ts, raw))
		req.Header.Set("x-nonce", nonce)
		req.Header.Set("x-timestamp", ts)
		ctx, note := auditnote.With(req.Context())
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req.WithContext(ctx))
		if !strings.Contains(rec.Body.String(), `"000000"`) {
			t.Fatalf("%s: %s", path, rec.Body.String())
		}
		return note.InstanceID() + " " + note.String()
	}
	if got := call(PathTenantSync, tenantBody(FlagAdd, "Acme", "https://acme.example.com")); got != "inst-1 tenant=t-1" {
		t.Errorf("tenantSync note = %q", got)
	}
	org := map[string]any{"instanceId": "inst-1", "tenantId": "t-1", "orgCode": "d9", "orgName": "R&D", "parentCode": "", "flag": 1, "testFlag": 1,
		"timeStamp": "20260301160000000"}
	if got := call(PathSingleOrgSync, org); got != "inst-1 tenant=t-1 testFlag=1 org=d9" {
		t.Errorf("singleOrgSync note = %q", got)
	}
}

// A NUL character (JSON "\u0000") in any member is 000002 naming it, on both
// backends: it is valid JSON and UTF-8, but no PostgreSQL text can hold it
// (the sync was answered 000005).
func TestKitNULIsABadField(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		tb := tenantBody(FlagAdd, "Acme\x00Corp", "https://acme.example.com")
		r := f.code(kg.CodeBadParam, PathTenantSync, mustJSON(t, tb), signOpts{})
		if !strings.Contains(r.ResultMsg, "name") || !strings.Contains(r.ResultMsg, "NUL") {
			t.Errorf("tenantSync: %q does not name the field", r.ResultMsg)
		}
		f.code(kg.CodeSuccess, PathTenantSync, mustJSON(t, tenantBody(FlagAdd, "Acme", "https://acme.example.com")), signOpts{})
		ab := authBody(FlagAdd, "20260301160000000", user("bob\x00", "user", "true"))
		r = f.code(kg.CodeBadParam, PathAuthSync, mustJSON(t, ab), signOpts{})
		if !strings.Contains(r.ResultMsg, "userName") {
			t.Errorf("authSync: %q does not name userName", r.ResultMsg)
		}
	})
}

// TestResultMsgWithinDocumentedLength: resultMsg is String(255) (joint-kit.md
// §1), even when the message quotes what the caller sent (an x-timestamp of
// 300 digits appeared in full in the answer).
func TestResultMsgWithinDocumentedLength(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		r, _ := f.call(PathTenantSync, mustJSON(t, tenantBody(FlagAdd, "Acme", "https://acme.example.com")), signOpts{timestamp: strings.Repeat("9", 300)})
		if r.ResultCode != kg.CodeAuthFailed {
			t.Fatalf("resultCode %s, want %s", r.ResultCode, kg.CodeAuthFailed)
		}
		if n := utf8.RuneCountInString(r.ResultMsg); n > MaxResultMsg {
			t.Fatalf("resultMsg has %d characters, at most %d documented: %q", n, MaxResultMsg, r.ResultMsg)
		}
	})
}

// An enterprise that bought two of the merchant's products is bound to two
// instances; unbinding one (tenantSync delete naming it) keeps the tenant and
// its login domain for the other, and the last one deletes it (joint-kit.md
// §2: idempotent per instance and tenant).
func TestTenantBoundToTwoInstances(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		sync := func(flag int, instance string) {
			t.Helper()
			b := tenantBody(flag, "Acme", "https://acme.example.com")
			b["instanceId"] = instance
			f.ok(PathTenantSync, b)
		}
		sync(FlagAdd, "inst-1")
		sync(FlagAdd, "inst-2")
		sync(FlagAdd, "inst-2") // a repeated add binds nothing more
		if n := f.count(`SELECT COUNT(*) FROM kit_tenant_instances`); n != 2 {
			t.Fatalf("%d bindings, want 2", n)
		}
		// The row names inst-2, the last bound; unbinding it names inst-1.
		sync(FlagDelete, "inst-2")
		tn, err := f.svc.Tenant(ctx, false, "t-1")
		if err != nil || tn.Deleted || tn.DomainName != "https://acme.example.com" || tn.InstanceID != "inst-1" {
			t.Fatalf("after unbinding inst-2: %+v %v; want the tenant kept for inst-1", tn, err)
		}
		sync(FlagDelete, "inst-2") // repeated: a success, nothing changes
		sync(FlagDelete, "inst-9") // never bound: a success, nothing changes
		sync(FlagModify, "")       // a modify binds nothing
		if tn, _ = f.svc.Tenant(ctx, false, "t-1"); tn.Deleted {
			t.Fatal("tenant deleted while inst-1 is bound")
		}
		sync(FlagDelete, "inst-1")
		if tn, _ = f.svc.Tenant(ctx, false, "t-1"); !tn.Deleted {
			t.Fatal("tenant kept after its last instance was unbound")
		}
		// A delete naming no instance is of the tenant itself.
		sync(FlagAdd, "inst-1")
		sync(FlagAdd, "inst-2")
		sync(FlagDelete, "")
		if tn, _ = f.svc.Tenant(ctx, false, "t-1"); !tn.Deleted {
			t.Fatal("a delete without instanceId kept the tenant")
		}
		if n := f.count(`SELECT COUNT(*) FROM kit_tenant_instances`); n != 0 {
			t.Fatalf("%d bindings left after the tenant's delete", n)
		}
		var actions []string
		for _, e := range eventsAs[TenantEvent](f) {
			actions = append(actions, e.D.Action+":"+e.D.Tenant.InstanceID)
		}
		want := []string{"added:inst-1", "modified:inst-2", "modified:inst-1", "deleted:inst-1", "added:inst-1", "modified:inst-2", "deleted:inst-2"}
		if fmt.Sprint(actions) != fmt.Sprint(want) {
			t.Fatalf("events %v, want %v", actions, want)
		}
	})
}
