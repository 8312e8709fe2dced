package buyer_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/jobs"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/market/buyer"
	"github.com/soukhq/souk/market/buyer/buyertest"
	"github.com/soukhq/souk/market/idp"
	"github.com/soukhq/souk/merchant/handoff"
	"github.com/soukhq/souk/merchant/kit"
	"github.com/soukhq/souk/merchant/sso"
)

// joint is the market (buyer center + IdP) and a real merchant (kit + SSO),
// each with its own database, meeting only over HTTP, on one virtual clock.
type joint struct {
	clk      *clock.Virtual
	center   *buyer.Center
	market   *httptest.Server // the IdP origin (domainName)
	merchant *httptest.Server
	kit      *kit.Service
	ent      buyer.Enterprise
	binding  buyer.Binding
	members  map[string]string
}

func newJoint(t *testing.T, backend string) *joint {
	t.Helper()
	ctx := context.Background()
	clk := clock.NewVirtual(time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC))
	j := &joint{clk: clk, members: map[string]string{}}

	// The merchant.
	const kitKey = "e2e-kit-key-0123456789"
	priv := buyertest.RSAKey(t)
	mdb := dbtest.OpenMigrated(t, backend, jobs.Migrate, handoff.Migrate, kit.Migrate, sso.Migrate)
	j.kit = kit.New(kit.Config{Keys: []string{kitKey}, PrivateKey: priv}, kit.Deps{DB: mdb, Clock: clk, Logger: testLogger(t)})
	mmux := http.NewServeMux()
	j.merchant = httptest.NewServer(mmux)
	t.Cleanup(j.merchant.Close)
	ssoSvc, err := sso.New(sso.Config{BaseURL: j.merchant.URL, IdentityKeys: [][]byte{[]byte("e2e-identity-key-0123456789abcdef")}, InsecureCookies: true},
		sso.Deps{DB: mdb, Directory: j.kit, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	mmux.Handle("/produceAPI/v2/", j.kit.Handler())
	mmux.Handle("/sso/", ssoSvc.Handler())
	mmux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "vendor app home") })

	// The market.
	d := dbtest.OpenMigrated(t, backend, buyer.Migrate, idp.Migrate)
	pub, err := kg.PublicKeyBase64(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	cat := &buyertest.Catalog{}
	cat.Put(buyer.App{InstanceID: "inst-e2e", OrderID: "CS2603010800E2E01", SellerID: "seller-1", AppID: "app-e2e", Endpoint: j.merchant.URL,
		KitKey: kitKey, PublicKey: pub, RedirectURIs: []string{j.merchant.URL + "/sso/callback"}})
	// A second product of the same merchant (not bound here; see
	// TestUnbindingOneOfTwoProducts).
	cat.Put(buyer.App{InstanceID: "inst-e2e-2", OrderID: "CS2603010800E2E02", SellerID: "seller-1", AppID: "app-e2e-2", Endpoint: j.merchant.URL,
		KitKey: kitKey, PublicKey: pub, RedirectURIs: []string{j.merchant.URL + "/sso/callback"}})
	mux := http.NewServeMux()
	j.market = httptest.NewServer(mux)
	t.Cleanup(j.market.Close)
	j.center, err = buyer.New(buyer.Config{DB: d, Clock: clk, WireClock: clk, Catalog: cat, DomainName: j.market.URL, Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	p, err := idp.New(idp.Config{DB: d, Clock: clk, Directory: j.center.Directory(), Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	p.Register(mux)
	mux.Handle("/api/v1/buyer/", http.StripPrefix("/api/v1/buyer", j.center.Handler()))

	// The buyer's enterprise, bound and authorized.
	j.ent, err = j.center.CreateEnterprise(ctx, buyer.EnterpriseInput{Code: "acme", Name: "Acme Ltd"})
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range []buyer.DepartmentInput{{OrgCode: "100", OrgName: "Acme"}, {OrgCode: "110", OrgName: "Engineering", ParentCode: "100"},
		{OrgCode: "200", OrgName: "Contractors"}} {
		if _, _, err := j.center.CreateDepartment(ctx, j.ent.ID, dep); err != nil {
			t.Fatal(err)
		}
	}
	ms, _, err := j.center.CreateMembers(ctx, j.ent.ID, []buyer.MemberInput{
		{UserName: "alice", Name: "Alice", OrgCode: "110", Role: "admin", Password: "alice-password"},
		{UserName: "bob", Name: "Bob", OrgCode: "100", Password: "bob-password"},
		{UserName: "carol", Name: "Carol", OrgCode: "200", Password: "carol-password"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		j.members[m.UserName] = m.ID
	}
	var msgs []buyer.Message
	j.binding, msgs, err = j.center.BindApp(ctx, j.ent.ID, "inst-e2e")
	if err != nil {
		t.Fatal(err)
	}
	more, err := j.center.Authorize(ctx, j.ent.ID, j.binding.ID, buyer.Subjects{Departments: []string{"100"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range append(msgs, more...) {
		if m.State != buyer.StateSucceeded {
			t.Fatalf("%s to the real merchant: %s %s (%s)", m.Interface, m.State, m.LastCode, m.LastError)
		}
	}
	return j
}

// browser keeps cookies and follows every redirect, like a real one.
func browser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar}
}

// signIn walks a member through the real redirects: the merchant's
// /sso/login → the IdP's authorize → login form → back to the merchant.
// It returns the last response and its body.
func (j *joint) signIn(t *testing.T, cl *http.Client, user, password string) (*http.Response, string) {
	t.Helper()
	resp, page := buyertest.Get(t, cl, j.merchant.URL+"/sso/login?tenant="+url.QueryEscape(j.ent.ID))
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Request.URL.String(), j.market.URL+idp.PathAuthorize) {
		t.Fatalf("/sso/login ended at %s with %d, want the IdP's login form\n%s", resp.Request.URL, resp.StatusCode, page)
	}
	cs, co := csrfOf(t, page)
	form := url.Values{"csrf": {cs}, "continue": {co}, "tenant": {"acme"}, "username": {user}, "password": {password}}
	return buyertest.PostForm(t, cl, j.market.URL+idp.PathLoginForm, form)
}

func csrfOf(t *testing.T, page string) (csrf, cont string) {
	t.Helper()
	field := func(name string) string {
		i := strings.Index(page, `name="`+name+`" value="`)
		if i < 0 {
			t.Fatalf("no %s field in\n%s", name, page)
		}
		rest := page[i+len(`name="`+name+`" value="`):]
		v := rest[:strings.IndexByte(rest, '"')]
		return strings.ReplaceAll(v, "&amp;", "&")
	}
	return field("csrf"), field("continue")
}

func (j *joint) me(t *testing.T, cl *http.Client) (int, sso.Me) {
	t.Helper()
	resp, body := buyertest.Get(t, cl, j.merchant.URL+"/sso/me")
	var m sso.Me
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatalf("/sso/me: %v\n%s", err, body)
		}
	}
	return resp.StatusCode, m
}

func TestEndToEndJointOperation(t *testing.T) {
	for _, backend := range dbtest.Backends() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			j := newJoint(t, backend)

			// The merchant's directory matches the buyer center.
			tn, err := j.kit.Tenant(ctx, false, j.ent.ID)
			if err != nil || tn.TenantCode != "acme" || tn.DomainName != j.market.URL || tn.InstanceID != "inst-e2e" {
				t.Fatalf("merchant tenant %+v, %v", tn, err)
			}
			cid, secret, err := j.kit.ClientCredentials(ctx, false, j.ent.ID, "app-e2e")
			if err != nil || cid != j.binding.ClientID || secret == "" {
				t.Fatalf("merchant client credentials %q, %v", cid, err)
			}
			orgs, err := j.kit.Orgs(ctx, false, j.ent.ID)
			if err != nil || len(orgs) != 3 {
				t.Fatalf("merchant departments %+v, %v", orgs, err)
			}
			users, err := j.kit.Users(ctx, false, j.ent.ID, kit.UserFilter{AppID: "app-e2e"})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]*kit.User{}
			for i := range users {
				got[users[i].UserName] = &users[i]
			}
			if len(got) != 2 || got["alice"] == nil || got["bob"] == nil || !got["alice"].Active() || got["alice"].Role != "admin" || got["alice"].OrgCode != "110" || !got["bob"].Active() {
				t.Fatalf("merchant users %+v, want alice (admin) and bob", users)
			}

			// Alice signs in through the real redirects.
			cl := browser(t)
			resp, page := j.signIn(t, cl, "alice", "alice-password")
			if resp.StatusCode != http.StatusOK || resp.Request.URL.String() != j.merchant.URL+"/?"+resp.Request.URL.RawQuery || page != "vendor app home" {
				t.Fatalf("after login: %d at %s\n%s", resp.StatusCode, resp.Request.URL, page)
			}
			st, me := j.me(t, cl)
			if st != http.StatusOK || me.UserName != "alice" || me.Role != "admin" || me.Tenant != j.ent.ID || me.Department != "110" || me.AppID != "app-e2e" {
				t.Fatalf("/sso/me: %d %+v", st, me)
			}
			// Carol (not in an authorized department) is refused by the IdP.
			resp, page = j.signIn(t, browser(t), "carol", "carol-password")
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "Not authorized") {
				t.Fatalf("carol: %d\n%s", resp.StatusCode, page)
			}

			// Bob's session survives the access token's expiry through a refresh.
			bobCl := browser(t)
			if resp, page := j.signIn(t, bobCl, "bob", "bob-password"); resp.StatusCode != http.StatusOK {
				t.Fatalf("bob: %d\n%s", resp.StatusCode, page)
			}
			j.clk.Advance(2*time.Hour + 5*time.Minute)
			if st, me := j.me(t, bobCl); st != http.StatusOK || me.UserName != "bob" || me.Role != "user" {
				t.Fatalf("/sso/me after 2 h: %d %+v (the refresh must have worked)", st, me)
			}

			// Disabling alice reaches the merchant, ends her session there, and her next login fails.
			msgs, err := j.center.SetMembersEnabled(ctx, j.ent.ID, []string{j.members["alice"]}, false)
			if err != nil || len(msgs) != 1 || msgs[0].State != buyer.StateSucceeded {
				t.Fatalf("disable: %+v, %v", msgs, err)
			}
			u, err := j.kit.User(ctx, false, j.ent.ID, "app-e2e", "alice")
			if err != nil || u.Enabled {
				t.Fatalf("merchant alice after disable: %+v, %v", u, err)
			}
			if st, _ := j.me(t, cl); st == http.StatusOK {
				t.Errorf("/sso/me still answers for a disabled member")
			}
			resp, page = j.signIn(t, browser(t), "alice", "alice-password")
			if resp.StatusCode == http.StatusOK && strings.Contains(page, "vendor app home") {
				t.Fatalf("a disabled member signed in")
			}
			if !strings.Contains(page, "disabled") {
				t.Errorf("disabled member's login page does not say why:\n%s", page)
			}

			// Cancelling the department's authorization reaches the merchant too.
			if _, err := j.center.Deauthorize(ctx, j.ent.ID, j.binding.ID, buyer.Subjects{Departments: []string{"100"}}); err != nil {
				t.Fatal(err)
			}
			if u, err := j.kit.User(ctx, false, j.ent.ID, "app-e2e", "bob"); err != nil || u.Active() || u.State != kit.StateCancelled {
				t.Fatalf("merchant bob after cancel: %+v, %v", u, err)
			}
			if st, _ := j.me(t, bobCl); st == http.StatusOK {
				t.Errorf("/sso/me still answers after the authorization was cancelled")
			}
		})
	}
}

// An enterprise bound to two of the merchant's products, one of them
// unbound: the merchant keeps the tenant and its login domain for the other
// (tenantSync is per instance and tenant), and its users still sign in.
func TestUnbindingOneOfTwoProducts(t *testing.T) {
	for _, backend := range dbtest.Backends() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			j := newJoint(t, backend)
			b2, msgs, err := j.center.BindApp(ctx, j.ent.ID, "inst-e2e-2")
			if err != nil {
				t.Fatal(err)
			}
			more, err := j.center.UnbindApp(ctx, j.ent.ID, b2.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range append(msgs, more...) {
				if m.State != buyer.StateSucceeded {
					t.Fatalf("%s to the real merchant: %s %s (%s)", m.Interface, m.State, m.LastCode, m.LastError)
				}
			}
			tn, err := j.kit.Tenant(ctx, false, j.ent.ID)
			if err != nil || tn.Deleted || tn.DomainName != j.market.URL || tn.InstanceID != "inst-e2e" {
				t.Fatalf("merchant tenant after the second product was unbound: %+v, %v", tn, err)
			}
			resp, page := j.signIn(t, browser(t), "alice", "alice-password")
			if resp.StatusCode != http.StatusOK || page != "vendor app home" {
				t.Fatalf("alice after the second product was unbound: %d at %s\n%s", resp.StatusCode, resp.Request.URL, page)
			}
			// Unbinding the first product too ends the tenant.
			if _, err := j.center.UnbindApp(ctx, j.ent.ID, j.binding.ID); err != nil {
				t.Fatal(err)
			}
			if tn, err := j.kit.Tenant(ctx, false, j.ent.ID); err != nil || !tn.Deleted {
				t.Fatalf("merchant tenant after both products were unbound: %+v, %v", tn, err)
			}
		})
	}
}

// testLogger logs warnings and errors through t.Log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
