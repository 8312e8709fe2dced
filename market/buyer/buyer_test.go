package buyer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/market/buyer"
	"github.com/soukhq/souk/market/buyer/buyertest"
	"github.com/soukhq/souk/market/idp"
)

// cheap argon2id parameters for tests (production uses idp.DefaultPasswordParams).
var testPassword = idp.PasswordParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

type env struct {
	db  *db.DB
	clk *clock.Virtual
	c   *buyer.Center
	m   *buyertest.Merchant
	cat *buyertest.Catalog
	app buyer.App
}

const kitKey = "kit-key-0123456789abcdef"

func setup(t *testing.T, backend string) *env {
	t.Helper()
	d := dbtest.OpenMigrated(t, backend, buyer.Migrate, idp.Migrate)
	clk := clock.NewVirtual(time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC))
	m := buyertest.NewMerchant(t, clk, kitKey)
	cat := &buyertest.Catalog{}
	app := buyer.App{InstanceID: "inst-1", OrderID: "CS2603010800ABCDE", SellerID: "seller-1", CustomerID: "cust-1", AppID: "app-1",
		Endpoint: m.URL + "/", KitKey: kitKey, PublicKey: m.PublicKey(t), RedirectURIs: []string{"https://app.example.test/sso/callback"}}
	cat.Put(app)
	c, err := buyer.New(buyer.Config{DB: d, Clock: clk, Catalog: cat, DomainName: "https://idp.example.test", Password: testPassword,
		Timeout: 2 * time.Second, WireClock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return &env{db: d, clk: clk, c: c, m: m, cat: cat, app: app}
}

func forEachBackend(t *testing.T, f func(t *testing.T, e *env)) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) { f(t, setup(t, b)) })
	}
}

func must[T any](t *testing.T) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

type body map[string]any

func decodeBody(t *testing.T, b []byte) body {
	t.Helper()
	var v body
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("kit body %s: %v", b, err)
	}
	return v
}

// users returns the userNames of an authSync body and checks the common fields.
func users(t *testing.T, b body) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	list, ok := b["userList"].([]any)
	if !ok {
		t.Fatalf("userList is %T, want an array", b["userList"])
	}
	for _, x := range list {
		u := x.(map[string]any)
		out[u["userName"].(string)] = u
	}
	return out
}

func checkCalls(t *testing.T, calls []buyertest.Call, want ...string) {
	t.Helper()
	var got []string
	for _, c := range calls {
		if c.SignErr != nil {
			t.Errorf("%s: x-sign does not verify: %v", c.Interface, c.SignErr)
		}
		if c.Variant != kg.KitVariantRaw {
			t.Errorf("%s: x-sign matched the %q reading, want the raw body", c.Interface, c.Variant)
		}
		var b body
		_ = json.Unmarshal(c.Body, &b)
		flag := ""
		if f, ok := b["flag"]; ok {
			flag = fmt.Sprintf(":%v", f)
		}
		got = append(got, c.Interface+flag)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("kit calls = %v, want %v", got, want)
	}
}

func TestBindAuthorizeAndChanges(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		ent := must[buyer.Enterprise](t)(e.c.CreateEnterprise(ctx, buyer.EnterpriseInput{Code: "acme", Name: "Acme 有限公司", CustomerID: "cust-1"}))
		root, _, err := e.c.CreateDepartment(ctx, ent.ID, buyer.DepartmentInput{OrgCode: "100", OrgName: "Acme"})
		if err != nil {
			t.Fatal(err)
		}
		dev, _, err := e.c.CreateDepartment(ctx, ent.ID, buyer.DepartmentInput{OrgCode: "110", OrgName: "开发部", ParentCode: root.OrgCode})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.c.CreateDepartment(ctx, ent.ID, buyer.DepartmentInput{OrgCode: "200", OrgName: "Sales"}); err != nil {
			t.Fatal(err)
		}
		if len(e.m.Calls()) != 0 {
			t.Fatalf("kit calls before any app is bound: %d", len(e.m.Calls()))
		}
		members, msgs, err := e.c.CreateMembers(ctx, ent.ID, []buyer.MemberInput{
			{UserName: "zhangsan", Name: "张三", OrgCode: "100", Role: "admin", Password: "correct horse"},
			{UserName: "lisi", Name: "李四", OrgCode: "110", Email: "lisi@acme.test", Mobile: "13800000000", EmployeeType: 4},
			{UserName: "wangwu", Name: "王五", OrgCode: "200"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 0 {
			t.Fatalf("messages before binding: %v", msgs)
		}
		id := map[string]string{}
		for _, m := range members {
			id[m.UserName] = m.ID
		}

		// Bind: tenantSync, applicationSync, allOrgSync.
		bnd, msgs, err := e.c.BindApp(ctx, ent.ID, e.app.InstanceID)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if m.State != buyer.StateSucceeded || m.Attempts != 1 {
				t.Fatalf("message %d %s: state %s attempts %d (%s)", m.ID, m.Interface, m.State, m.Attempts, m.LastError)
			}
		}
		calls := e.m.Calls()
		checkCalls(t, calls, "tenantSync:1", "applicationSync:1", "allOrgSync")
		for _, c := range calls {
			if c.Header.Get("x-timestamp") != fmt.Sprint(e.clk.Now().UnixMilli()) {
				t.Errorf("x-timestamp %q, want the clock's ms", c.Header.Get("x-timestamp"))
			}
			if len(c.Header.Get("x-nonce")) < 32 {
				t.Errorf("x-nonce %q too short", c.Header.Get("x-nonce"))
			}
		}
		ts := decodeBody(t, calls[0].Body)
		wantTenant := body{"instanceId": "inst-1", "orderId": "CS2603010800ABCDE", "tenantId": ent.ID, "tenantCode": "acme", "name": "Acme 有限公司",
			"domainName": "https://idp.example.test", "flag": 1.0, "testFlag": 0.0, "timeStamp": "20260301160000000"}
		if fmt.Sprint(ts) != fmt.Sprint(wantTenant) {
			t.Errorf("tenantSync body\n got %v\nwant %v", ts, wantTenant)
		}
		as := decodeBody(t, calls[1].Body)
		if as["clientId"] != bnd.ClientID || as["appId"] != "app-1" || as["tenantId"] != ent.ID || as["instanceId"] != "inst-1" {
			t.Errorf("applicationSync body %v", as)
		}
		if calls[1].SecretErr != nil || calls[1].Secret == "" {
			t.Fatalf("clientSecret does not decrypt: %v", calls[1].SecretErr)
		}
		cl, err := e.c.Directory().Client(ctx, bnd.ClientID)
		if err != nil || cl.SecretHash != idp.HashSecret(calls[1].Secret) || cl.TenantID != ent.ID {
			t.Fatalf("directory client %+v, %v: the decrypted secret must authenticate the client", cl, err)
		}
		orgs := decodeBody(t, calls[2].Body)["orgInfoList"].([]any)
		if len(orgs) != 3 || fmt.Sprint(orgs[1]) != fmt.Sprint(map[string]any{"orgCode": "110", "orgName": "开发部", "parentCode": "100"}) {
			t.Errorf("allOrgSync orgInfoList %v", orgs)
		}
		if _, _, err := e.c.BindApp(ctx, ent.ID, e.app.InstanceID); !isKind(err, "conflict") {
			t.Errorf("binding the same instance twice: %v, want conflict", err)
		}

		// Authorize department 100 (with 110 below it) and member wangwu.
		e.m.Reset()
		msgs, err = e.c.Authorize(ctx, ent.ID, bnd.ID, buyer.Subjects{Departments: []string{"100"}, Members: []string{id["wangwu"]}})
		if err != nil {
			t.Fatal(err)
		}
		calls = e.m.Calls()
		checkCalls(t, calls, "authSync:1")
		ab := decodeBody(t, calls[0].Body)
		us := users(t, ab)
		if len(us) != 3 || us["zhangsan"]["role"] != "admin" || us["lisi"]["orgCode"] != "110" || us["lisi"]["enable"] != "true" ||
			us["lisi"]["email"] != "lisi@acme.test" || us["lisi"]["employeeType"] != 4.0 {
			t.Errorf("authSync users %v", us)
		}
		if ab["appId"] != "app-1" || ab["currentSyncTime"] != "20260301160000000" {
			t.Errorf("authSync body %v", ab)
		}
		if len(msgs) != 1 || msgs[0].State != buyer.StateSucceeded {
			t.Errorf("messages %+v", msgs)
		}
		// Authorizing again changes nothing.
		e.m.Reset()
		if _, err := e.c.Authorize(ctx, ent.ID, bnd.ID, buyer.Subjects{Departments: []string{"110"}}); err != nil {
			t.Fatal(err)
		}
		checkCalls(t, e.m.Calls())

		// Disable, enable: authSync modify with enable "false"/"true".
		e.m.Reset()
		if _, err := e.c.SetMembersEnabled(ctx, ent.ID, []string{id["lisi"]}, false); err != nil {
			t.Fatal(err)
		}
		if _, err := e.c.SetMembersEnabled(ctx, ent.ID, []string{id["lisi"]}, true); err != nil {
			t.Fatal(err)
		}
		calls = e.m.Calls()
		checkCalls(t, calls, "authSync:2", "authSync:2")
		if u := users(t, decodeBody(t, calls[0].Body)); len(u) != 1 || u["lisi"]["enable"] != "false" {
			t.Errorf("disable: %v", u)
		}
		if u := users(t, decodeBody(t, calls[1].Body)); u["lisi"]["enable"] != "true" {
			t.Errorf("enable: %v", u)
		}

		// Department changes: singleOrgSync add, modify, delete.
		e.m.Reset()
		if _, _, err := e.c.CreateDepartment(ctx, ent.ID, buyer.DepartmentInput{OrgCode: "300", OrgName: "Ops", ParentCode: "100"}); err != nil {
			t.Fatal(err)
		}
		name := "Operations"
		if _, _, err := e.c.UpdateDepartment(ctx, ent.ID, "300", buyer.DepartmentPatch{OrgName: &name}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.c.DeleteDepartment(ctx, ent.ID, "300"); err != nil {
			t.Fatal(err)
		}
		calls = e.m.Calls()
		checkCalls(t, calls, "singleOrgSync:1", "singleOrgSync:2", "singleOrgSync:0")
		if b := decodeBody(t, calls[1].Body); b["orgName"] != "Operations" || b["parentCode"] != "100" || b["orgCode"] != "300" {
			t.Errorf("singleOrgSync modify %v", b)
		}
		if _, err := e.c.DeleteDepartment(ctx, ent.ID, dev.OrgCode); !isKind(err, "conflict") {
			t.Errorf("deleting a department with members: %v, want conflict", err)
		}

		// Moving lisi to Sales (not authorized as a department): she loses access (cancel).
		e.m.Reset()
		sales := "200"
		if _, _, err := e.c.UpdateMember(ctx, ent.ID, id["lisi"], buyer.MemberPatch{OrgCode: &sales}); err != nil {
			t.Fatal(err)
		}
		calls = e.m.Calls()
		checkCalls(t, calls, "authSync:3")
		if u := users(t, decodeBody(t, calls[0].Body)); len(u) != 1 || u["lisi"] == nil {
			t.Errorf("cancel on move: %v", u)
		}
		// Moving the Sales department under 100 brings lisi back (add).
		e.m.Reset()
		under := "100"
		if _, _, err := e.c.UpdateDepartment(ctx, ent.ID, "200", buyer.DepartmentPatch{ParentCode: &under}); err != nil {
			t.Fatal(err)
		}
		checkCalls(t, e.m.Calls(), "singleOrgSync:2", "authSync:1")
		// A department cannot move below itself.
		self := "110"
		if _, _, err := e.c.UpdateDepartment(ctx, ent.ID, "100", buyer.DepartmentPatch{ParentCode: &self}); !isKind(err, "invalid") {
			t.Errorf("cycle: %v, want invalid", err)
		}

		// Cancel the department grant: zhangsan, lisi lose access (flag 3); wangwu keeps it (direct grant).
		e.m.Reset()
		if _, err := e.c.Deauthorize(ctx, ent.ID, bnd.ID, buyer.Subjects{Departments: []string{"100", "110"}}); err != nil {
			t.Fatal(err)
		}
		calls = e.m.Calls()
		checkCalls(t, calls, "authSync:3")
		if u := users(t, decodeBody(t, calls[0].Body)); len(u) != 2 || u["zhangsan"] == nil || u["lisi"] == nil {
			t.Errorf("cancel: %v", u)
		}
		left := must[[]buyer.KitUser](t)(e.c.AppUsers(ctx, ent.ID, bnd.ID))
		if len(left) != 1 || left[0].UserName != "wangwu" {
			t.Errorf("authorized users %v, want wangwu", left)
		}

		// Deleting an authorized member: authSync delete.
		e.m.Reset()
		if _, err := e.c.DeleteMembers(ctx, ent.ID, []string{id["wangwu"]}); err != nil {
			t.Fatal(err)
		}
		calls = e.m.Calls()
		checkCalls(t, calls, "authSync:0")
		if u := users(t, decodeBody(t, calls[0].Body)); len(u) != 1 || u["wangwu"] == nil {
			t.Errorf("delete: %v", u)
		}

		// Renaming the enterprise: tenantSync modify.
		e.m.Reset()
		if _, _, err := e.c.RenameEnterprise(ctx, ent.ID, "Acme Group"); err != nil {
			t.Fatal(err)
		}
		calls = e.m.Calls()
		checkCalls(t, calls, "tenantSync:2")
		if b := decodeBody(t, calls[0].Body); b["name"] != "Acme Group" {
			t.Errorf("tenantSync modify %v", b)
		}

		// Unbinding: authSync delete of the remaining users (none), applicationSync and tenantSync delete.
		e.m.Reset()
		if _, err := e.c.Authorize(ctx, ent.ID, bnd.ID, buyer.Subjects{Members: []string{id["zhangsan"]}}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.c.UnbindApp(ctx, ent.ID, bnd.ID); err != nil {
			t.Fatal(err)
		}
		checkCalls(t, e.m.Calls(), "authSync:1", "authSync:0", "applicationSync:0", "tenantSync:0")
		if _, err := e.c.Directory().Client(ctx, bnd.ClientID); err != idp.ErrNotFound {
			t.Errorf("client after unbind: %v, want ErrNotFound", err)
		}
		// The log kept every call.
		all := must[[]buyer.Message](t)(e.c.Messages(ctx, ent.ID, buyer.MessageFilter{Limit: 1000}))
		if len(all) != 19 {
			t.Errorf("message log has %d messages, want 19", len(all))
		}
	})
}

func isKind(err error, kind string) bool {
	e, ok := err.(*buyer.Error)
	return ok && e.Kind == kind
}

func TestAuthSyncBatchesOf500(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		ent := must[buyer.Enterprise](t)(e.c.CreateEnterprise(ctx, buyer.EnterpriseInput{Name: "Big"}))
		if _, _, err := e.c.CreateDepartment(ctx, ent.ID, buyer.DepartmentInput{OrgCode: "1", OrgName: "All"}); err != nil {
			t.Fatal(err)
		}
		bnd, _, err := e.c.BindApp(ctx, ent.ID, e.app.InstanceID)
		if err != nil {
			t.Fatal(err)
		}
		var in []buyer.MemberInput
		for i := range 1000 {
			in = append(in, buyer.MemberInput{UserName: fmt.Sprintf("u%04d", i), Name: fmt.Sprintf("User %d", i), OrgCode: "1"})
		}
		if _, _, err := e.c.CreateMembers(ctx, ent.ID, in); err != nil {
			t.Fatal(err)
		}
		in = in[:0]
		for i := 1000; i < 1201; i++ {
			in = append(in, buyer.MemberInput{UserName: fmt.Sprintf("u%04d", i), Name: fmt.Sprintf("User %d", i), OrgCode: "1"})
		}
		if _, _, err := e.c.CreateMembers(ctx, ent.ID, in); err != nil {
			t.Fatal(err)
		}
		e.m.Reset()
		if _, err := e.c.Authorize(ctx, ent.ID, bnd.ID, buyer.Subjects{Departments: []string{"1"}}); err != nil {
			t.Fatal(err)
		}
		calls := e.m.Calls()
		checkCalls(t, calls, "authSync:1", "authSync:1", "authSync:1")
		seen := map[string]bool{}
		for i, want := range []int{500, 500, 201} {
			us := users(t, decodeBody(t, calls[i].Body))
			if len(us) != want {
				t.Errorf("call %d has %d users, want %d", i, len(us), want)
			}
			for u := range us {
				if seen[u] {
					t.Errorf("%s sent twice", u)
				}
				seen[u] = true
			}
		}
		// A member joining an authorized department is authorized at once.
		e.m.Reset()
		if _, _, err := e.c.CreateMembers(ctx, ent.ID, []buyer.MemberInput{{UserName: "late", Name: "Late", OrgCode: "1"}}); err != nil {
			t.Fatal(err)
		}
		checkCalls(t, e.m.Calls(), "authSync:1")
	})
}

func TestNoAutomaticRetryAndManualRetry(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		ent := must[buyer.Enterprise](t)(e.c.CreateEnterprise(ctx, buyer.EnterpriseInput{Name: "Retry"}))
		var failing atomic.Bool
		failing.Store(true)
		e.m.Respond(func(iface string, n int) buyertest.Reply {
			switch {
			case iface == buyer.IfaceTenantSync && failing.Load():
				return buyertest.Reply{Body: `{"resultCode":"000005","resultMsg":"database down"}`}
			case iface == buyer.IfaceAllOrgSync && failing.Load():
				return buyertest.Reply{Status: 503, Body: "busy"}
			}
			return buyertest.Reply{}
		})
		_, msgs, err := e.c.BindApp(ctx, ent.ID, e.app.InstanceID)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 3 || msgs[0].State != buyer.StateFailed || msgs[1].State != buyer.StateSucceeded || msgs[2].State != buyer.StateFailed {
			t.Fatalf("messages %+v", msgs)
		}
		if msgs[0].LastCode != "000005" || !strings.Contains(msgs[0].LastError, "database down") {
			t.Errorf("tenantSync failure recorded as %q %q", msgs[0].LastCode, msgs[0].LastError)
		}
		if !strings.Contains(msgs[2].LastError, "503") {
			t.Errorf("allOrgSync failure recorded as %q", msgs[2].LastError)
		}
		// Time passes, pending work is delivered: nothing is retried automatically.
		e.clk.Advance(24 * time.Hour)
		if n, err := e.c.DeliverPending(ctx); err != nil || n != 0 {
			t.Fatalf("DeliverPending = %d, %v; want 0 (failed calls are not retried)", n, err)
		}
		time.Sleep(50 * time.Millisecond)
		if got := len(e.m.Calls()); got != 3 {
			t.Fatalf("merchant received %d calls, want 3 (no automatic retry)", got)
		}
		failed := must[[]buyer.Message](t)(e.c.Messages(ctx, ent.ID, buyer.MessageFilter{State: buyer.StateFailed}))
		if len(failed) != 2 {
			t.Fatalf("failed messages %d, want 2", len(failed))
		}
		// The buyer retries from the log.
		failing.Store(false)
		m, err := e.c.Retry(ctx, ent.ID, msgs[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		if m.State != buyer.StateSucceeded || m.Attempts != 2 || len(m.AttemptLog) != 2 || m.AttemptLog[0].Manual || !m.AttemptLog[1].Manual {
			t.Fatalf("after retry: %+v", m)
		}
		if m.AttemptLog[0].ResultCode != "000005" || m.AttemptLog[1].ResultCode != "000000" || m.AttemptLog[1].HTTPStatus != 200 {
			t.Errorf("attempt log %+v", m.AttemptLog)
		}
		calls := e.m.Calls()
		checkCalls(t, calls, "tenantSync:1", "applicationSync:1", "allOrgSync", "tenantSync:1")
		if string(calls[3].Body) != string(calls[0].Body) {
			t.Errorf("the retry sent a different body:\n%s\n%s", calls[3].Body, calls[0].Body)
		}
		if calls[3].Header.Get("x-nonce") == calls[0].Header.Get("x-nonce") {
			t.Errorf("the retry reused the nonce")
		}
		// A succeeded message cannot be retried; another enterprise cannot see it.
		if _, err := e.c.Retry(ctx, ent.ID, msgs[1].ID); !isKind(err, "conflict") {
			t.Errorf("retrying a succeeded message: %v, want conflict", err)
		}
		other := must[buyer.Enterprise](t)(e.c.CreateEnterprise(ctx, buyer.EnterpriseInput{Name: "Other"}))
		if _, err := e.c.Retry(ctx, other.ID, msgs[2].ID); !isKind(err, "not_found") {
			t.Errorf("retrying another enterprise's message: %v, want not_found", err)
		}
	})
}

func TestTimeoutIsAFailedAttempt(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		c, err := buyer.New(buyer.Config{DB: e.db, Clock: e.clk, WireClock: e.clk, Catalog: e.cat, DomainName: "https://idp.example.test", Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ent := must[buyer.Enterprise](t)(c.CreateEnterprise(ctx, buyer.EnterpriseInput{Name: "Slow"}))
		e.m.Respond(func(iface string, n int) buyertest.Reply {
			if iface == buyer.IfaceApplicationSync && n == 1 {
				return buyertest.Reply{Delay: 5 * time.Second}
			}
			return buyertest.Reply{}
		})
		start := time.Now()
		_, msgs, err := c.BindApp(ctx, ent.ID, e.app.InstanceID)
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(start) > 4*time.Second {
			t.Errorf("bind took %s; the timeout is 1s", time.Since(start))
		}
		if msgs[1].State != buyer.StateFailed || !strings.Contains(msgs[1].LastError, "timeout") {
			t.Fatalf("applicationSync %+v, want a failed timeout", msgs[1])
		}
		if msgs[2].State != buyer.StateSucceeded {
			t.Errorf("allOrgSync %+v: later calls are still sent", msgs[2])
		}
		m, err := c.Retry(ctx, ent.ID, msgs[1].ID)
		if err != nil || m.State != buyer.StateSucceeded {
			t.Fatalf("retry: %+v, %v", m, err)
		}
	})
}

func TestValidation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		ent := must[buyer.Enterprise](t)(e.c.CreateEnterprise(ctx, buyer.EnterpriseInput{Code: "v", Name: "V"}))
		if _, err := e.c.CreateEnterprise(ctx, buyer.EnterpriseInput{Code: "v", Name: "again"}); !isKind(err, "conflict") {
			t.Errorf("duplicate code: %v", err)
		}
		if _, _, err := e.c.CreateDepartment(ctx, ent.ID, buyer.DepartmentInput{OrgCode: "1", OrgName: "A"}); err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name  string
			in    []buyer.MemberInput
			field string
			kind  string
		}{
			{"bad user name", []buyer.MemberInput{{UserName: "a b", Name: "x", OrgCode: "1"}}, "members[0].userName", "invalid"},
			{"missing name", []buyer.MemberInput{{UserName: "a", OrgCode: "1"}}, "members[0].name", "invalid"},
			{"unknown department", []buyer.MemberInput{{UserName: "a", Name: "x", OrgCode: "9"}}, "members[0].orgCode", "invalid"},
			{"bad role", []buyer.MemberInput{{UserName: "a", Name: "x", OrgCode: "1", Role: "root"}}, "members[0].role", "invalid"},
			{"short password", []buyer.MemberInput{{UserName: "a", Name: "x", OrgCode: "1", Password: "short"}}, "members[0].password", "invalid"},
			{"duplicate in batch", []buyer.MemberInput{{UserName: "a", Name: "x", OrgCode: "1"}, {UserName: "a", Name: "y", OrgCode: "1"}}, "members[1].userName", "invalid"},
		}
		for _, tc := range cases {
			_, _, err := e.c.CreateMembers(ctx, ent.ID, tc.in)
			be, ok := err.(*buyer.Error)
			if !ok || be.Kind != tc.kind || be.Field != tc.field {
				t.Errorf("%s: %v, want %s on %s", tc.name, err, tc.kind, tc.field)
			}
		}
		// A batch is all or nothing.
		if _, _, err := e.c.CreateMembers(ctx, ent.ID, []buyer.MemberInput{{UserName: "ok", Name: "x", OrgCode: "1"}}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.c.CreateMembers(ctx, ent.ID, []buyer.MemberInput{{UserName: "new", Name: "x", OrgCode: "1"}, {UserName: "ok", Name: "x", OrgCode: "1"}}); !isKind(err, "conflict") {
			t.Errorf("taken user name: %v", err)
		}
		if ms := must[[]buyer.Member](t)(e.c.Members(ctx, ent.ID)); len(ms) != 1 {
			t.Errorf("members after a failed batch: %d, want 1", len(ms))
		}
		if _, err := e.c.SetMembersEnabled(ctx, ent.ID, []string{"nope"}, false); !isKind(err, "not_found") {
			t.Errorf("unknown member: %v", err)
		}
		if _, _, err := e.c.BindApp(ctx, ent.ID, "no-such-instance"); !isKind(err, "invalid") {
			t.Errorf("unknown instance: %v", err)
		}
		// The instance belongs to cust-1; an enterprise of another customer cannot bind it.
		other := must[buyer.Enterprise](t)(e.c.CreateEnterprise(ctx, buyer.EnterpriseInput{Name: "Other", CustomerID: "cust-2"}))
		if _, _, err := e.c.BindApp(ctx, other.ID, e.app.InstanceID); !isKind(err, "invalid") {
			t.Errorf("another customer's instance: %v", err)
		}
	})
}

// Two buyers retrying the same failed message at once: one attempt is made.
func TestConcurrentRetrySendsOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		ent := must[buyer.Enterprise](t)(e.c.CreateEnterprise(ctx, buyer.EnterpriseInput{Name: "Race"}))
		var fail atomic.Bool
		fail.Store(true)
		e.m.Respond(func(iface string, n int) buyertest.Reply {
			if iface == buyer.IfaceTenantSync && fail.Load() {
				return buyertest.Reply{Body: `{"resultCode":"000005"}`}
			}
			return buyertest.Reply{Delay: 100 * time.Millisecond}
		})
		_, msgs, err := e.c.BindApp(ctx, ent.ID, e.app.InstanceID)
		if err != nil {
			t.Fatal(err)
		}
		fail.Store(false)
		e.m.Reset()
		errs := make(chan error, 8)
		for range 8 {
			go func() {
				_, err := e.c.Retry(ctx, ent.ID, msgs[0].ID)
				errs <- err
			}()
		}
		ok := 0
		for range 8 {
			if err := <-errs; err == nil {
				ok++
			} else if !isKind(err, "conflict") {
				t.Errorf("retry: %v", err)
			}
		}
		if ok != 1 || len(e.m.Calls()) != 1 {
			t.Errorf("%d retries succeeded and the merchant got %d calls; want exactly one of each", ok, len(e.m.Calls()))
		}
	})
}

// A change committed by a process that stopped before sending its calls:
// DeliverPending makes their first attempt, once.
func TestDeliverPendingAfterCrash(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		ent := must[buyer.Enterprise](t)(e.c.CreateEnterprise(ctx, buyer.EnterpriseInput{Name: "Crash"}))
		if err := buyer.QueueWithoutSending(ctx, e.c, ent, e.app.InstanceID, e.app.AppID); err != nil {
			t.Fatal(err)
		}
		if len(e.m.Calls()) != 0 {
			t.Fatal("calls sent before DeliverPending")
		}
		if n, err := e.c.DeliverPending(ctx); err != nil || n != 2 {
			t.Fatalf("DeliverPending = %d, %v; want 2", n, err)
		}
		if n, err := e.c.DeliverPending(ctx); err != nil || n != 0 {
			t.Fatalf("second DeliverPending = %d, %v; want 0", n, err)
		}
		checkCalls(t, e.m.Calls(), "tenantSync:1", "singleOrgSync:1")
		if ms := must[[]buyer.Message](t)(e.c.Messages(ctx, ent.ID, buyer.MessageFilter{State: buyer.StateSucceeded})); len(ms) != 2 {
			t.Fatalf("succeeded messages %d", len(ms))
		}
	})
}

func TestSellerDebugCalls(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.cat.PutProduct("prod-1", buyer.App{SellerID: "seller-1", AppID: "app-1", Endpoint: e.m.URL, KitKey: kitKey, PublicKey: e.m.PublicKey(t), TestFlag: true})
		if _, _, err := e.c.DebugAppCredential(ctx, "seller-1", "prod-1", buyer.DebugInput{}); !isKind(err, "not_found") {
			t.Errorf("debugging without an app credential: %v", err)
		}
		if _, err := e.c.SetAppCredential(ctx, buyer.AppCredential{ProductID: "prod-1", SellerID: "seller-1", AppID: "app-1", PublicKey: e.m.PublicKey(t),
			LoginURLs: []string{"https://app.example.test/sso/callback"}}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.c.DebugAppCredential(ctx, "seller-2", "prod-1", buyer.DebugInput{}); !isKind(err, "not_found") {
			t.Errorf("another seller's product: %v", err)
		}
		var failOrg atomic.Bool
		failOrg.Store(true)
		e.m.Respond(func(iface string, n int) buyertest.Reply {
			if iface == buyer.IfaceAllOrgSync && failOrg.Load() {
				return buyertest.Reply{Body: `{"resultCode":"000002","resultMsg":"orgInfoList"}`}
			}
			return buyertest.Reply{}
		})
		secret, msgs, err := e.c.DebugAppCredential(ctx, "seller-1", "prod-1", buyer.DebugInput{ClientSecret: "seller-chosen-secret", TestAccount: true})
		if err != nil {
			t.Fatal(err)
		}
		if secret != "seller-chosen-secret" || len(msgs) != 4 || msgs[2].State != buyer.StateFailed || msgs[3].State != buyer.StateSucceeded {
			t.Fatalf("debug: %q %+v", secret, msgs)
		}
		calls := e.m.Calls()
		checkCalls(t, calls, "tenantSync:1", "applicationSync:1", "allOrgSync", "authSync:1")
		for _, c := range calls {
			b := decodeBody(t, c.Body)
			if b["instanceId"] != "" || b["testFlag"] != 1.0 || b["tenantId"] != buyer.DebugTenantID {
				t.Errorf("%s: debugging body %v", c.Interface, b)
			}
		}
		if calls[1].Secret != "seller-chosen-secret" {
			t.Errorf("decrypted secret %q", calls[1].Secret)
		}
		if u := users(t, decodeBody(t, calls[3].Body)); u[buyer.DebugUserName] == nil {
			t.Errorf("test account: %v", u)
		}
		// The seller sees and retries its calls.
		srv := httptest.NewServer(e.c.SellerHandler())
		defer srv.Close()
		a := apiClient{t: t, base: srv.URL}
		failed := a.ok("GET", "/sellers/seller-1/kit-messages?state=failed", nil, 200)["messages"].([]any)
		if len(failed) != 1 || failed[0].(map[string]any)["productId"] != "prod-1" {
			t.Fatalf("seller's failed messages %v", failed)
		}
		failOrg.Store(false)
		id := fmt.Sprint(int64(failed[0].(map[string]any)["id"].(float64)))
		a.ok("POST", "/sellers/seller-2/kit-messages/"+id+"/retry", nil, 404)
		if m := a.ok("POST", "/sellers/seller-1/kit-messages/"+id+"/retry", nil, 200); m["state"] != "succeeded" {
			t.Errorf("seller retry: %v", m)
		}
		out := a.ok("POST", "/sellers/seller-1/products/prod-1/app-credential/debug", map[string]any{}, 200)
		if s, _ := out["clientSecret"].(string); len(s) < 40 || len(out["messages"].([]any)) != 3 {
			t.Errorf("debug via API: %v", out)
		}
	})
}

// Concurrent changes of one enterprise: each reconciles against the state the
// previous one left (no double add, no lost cancel), and the merchant receives
// the calls in commit order, so its last word matches the buyer center.
func TestConcurrentChangesStayOrdered(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		ent := must[buyer.Enterprise](t)(e.c.CreateEnterprise(ctx, buyer.EnterpriseInput{Name: "Busy"}))
		if _, _, err := e.c.CreateDepartment(ctx, ent.ID, buyer.DepartmentInput{OrgCode: "1", OrgName: "HQ"}); err != nil {
			t.Fatal(err)
		}
		ms, _, err := e.c.CreateMembers(ctx, ent.ID, []buyer.MemberInput{{UserName: "amy", Name: "Amy", OrgCode: "1"}})
		if err != nil {
			t.Fatal(err)
		}
		bnd, _, err := e.c.BindApp(ctx, ent.ID, e.app.InstanceID)
		if err != nil {
			t.Fatal(err)
		}
		e.m.Reset()
		e.m.Respond(func(string, int) buyertest.Reply { return buyertest.Reply{Delay: 5 * time.Millisecond} })
		subj := buyer.Subjects{Members: []string{ms[0].ID}}
		errs := make(chan error, 16)
		for i := range 16 {
			go func() {
				var err error
				if i%2 == 0 {
					_, err = e.c.Authorize(ctx, ent.ID, bnd.ID, subj)
				} else {
					_, err = e.c.Deauthorize(ctx, ent.ID, bnd.ID, subj)
				}
				errs <- err
			}()
		}
		for range 16 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		var flags []float64
		for _, c := range e.m.Calls() {
			flags = append(flags, decodeBody(t, c.Body)["flag"].(float64))
		}
		for i := 1; i < len(flags); i++ {
			if flags[i] == flags[i-1] {
				t.Fatalf("the merchant received %v: two identical calls in a row", flags)
			}
		}
		authorized := len(must[[]buyer.KitUser](t)(e.c.AppUsers(ctx, ent.ID, bnd.ID))) == 1
		if len(flags) == 0 {
			t.Fatal("no calls")
		}
		if last := flags[len(flags)-1]; (last == buyer.FlagAdd) != authorized {
			t.Fatalf("merchant's last call %v, buyer center authorized=%v (calls %v)", last, authorized, flags)
		}
		// And in id order.
		all := must[[]buyer.Message](t)(e.c.Messages(ctx, ent.ID, buyer.MessageFilter{Interface: buyer.IfaceAuthSync, Limit: 1000}))
		if len(all) != len(flags) {
			t.Fatalf("%d messages, %d calls", len(all), len(flags))
		}
		for i, m := range all { // newest first
			if f := float64(m.Flag); f != flags[len(flags)-1-i] || m.State != buyer.StateSucceeded {
				t.Fatalf("message %d (flag %d, %s) vs call %d (flag %v)", m.ID, m.Flag, m.State, len(flags)-1-i, flags[len(flags)-1-i])
			}
		}
	})
}
