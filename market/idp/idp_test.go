package idp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/market/buyer"
	"github.com/soukhq/souk/market/buyer/buyertest"
	"github.com/soukhq/souk/market/idp"
)

const callback = "https://app.example.test/sso/callback"

var testPassword = idp.PasswordParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

type env struct {
	db       *db.DB
	clk      *clock.Virtual
	c        *buyer.Center
	idp      *idp.IdP
	srv      *httptest.Server
	tenant   buyer.Enterprise
	binding  buyer.Binding
	secret   string
	members  map[string]string // userName → id
	merchant *buyertest.Merchant
	notes    *notes // what the IdP told Config.Note
}

// notes records Config.Note's calls; take merges those since the last take
// as market.Audit merges them into one record.
type notes struct {
	mu            sync.Mutex
	actor, result string
	targets       map[string]string
}

func (n *notes) note(_ context.Context, actor, result string, targets map[string]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if actor != "" {
		n.actor = actor
	}
	if result != "" {
		n.result = result
	}
	for k, v := range targets {
		if n.targets == nil {
			n.targets = map[string]string{}
		}
		n.targets[k] = v
	}
}

func (n *notes) take() (actor, result string, targets map[string]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	actor, result, targets = n.actor, n.result, n.targets
	n.actor, n.result, n.targets = "", "", nil
	return actor, result, targets
}

func setup(t *testing.T, backend string) *env {
	t.Helper()
	ctx := context.Background()
	d := dbtest.OpenMigrated(t, backend, buyer.Migrate, idp.Migrate)
	clk := clock.NewVirtual(time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC))
	m := buyertest.NewMerchant(t, clk, "kit-key")
	cat := &buyertest.Catalog{}
	cat.Put(buyer.App{InstanceID: "inst-1", OrderID: "CS1", AppID: "app-1", Endpoint: m.URL, KitKey: "kit-key", PublicKey: m.PublicKey(t),
		RedirectURIs: []string{callback, "https://app.example.test/other"}})
	e := &env{db: d, clk: clk, merchant: m, members: map[string]string{}, notes: &notes{}}
	mux := http.NewServeMux()
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	var err error
	e.c, err = buyer.New(buyer.Config{DB: d, Clock: clk, WireClock: clk, Catalog: cat, DomainName: e.srv.URL, Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	e.idp, err = idp.New(idp.Config{DB: d, Clock: clk, Directory: e.c.Directory(), Password: testPassword, Note: e.notes.note})
	if err != nil {
		t.Fatal(err)
	}
	e.idp.Register(mux)

	e.tenant, err = e.c.CreateEnterprise(ctx, buyer.EnterpriseInput{Code: "acme", Name: "Acme Ltd"})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []buyer.DepartmentInput{{OrgCode: "100", OrgName: "Acme"}, {OrgCode: "110", OrgName: "R&D", ParentCode: "100"}, {OrgCode: "900", OrgName: "Guests"}} {
		if _, _, err := e.c.CreateDepartment(ctx, e.tenant.ID, d); err != nil {
			t.Fatal(err)
		}
	}
	ms, _, err := e.c.CreateMembers(ctx, e.tenant.ID, []buyer.MemberInput{
		{UserName: "alice", Name: "Alice", OrgCode: "110", Role: "admin", Email: "alice@acme.test", Mobile: "13800000001", Password: "alice-password"},
		{UserName: "bob", Name: "Bob", OrgCode: "100", Password: "bob-password"},
		{UserName: "guest", Name: "Guest", OrgCode: "900", Password: "guest-password"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		e.members[m.UserName] = m.ID
	}
	e.binding, _, err = e.c.BindApp(ctx, e.tenant.ID, "inst-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, call := range m.Calls() {
		if call.Interface == buyer.IfaceApplicationSync {
			e.secret = call.Secret
		}
	}
	if e.secret == "" {
		t.Fatal("no client secret reached the merchant")
	}
	if _, err := e.c.Authorize(ctx, e.tenant.ID, e.binding.ID, buyer.Subjects{Departments: []string{"100"}}); err != nil {
		t.Fatal(err)
	}
	return e
}

func forEachBackend(t *testing.T, f func(t *testing.T, e *env)) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) { f(t, setup(t, b)) })
	}
}

// browser is an HTTP client that keeps cookies and follows redirects only
// within the IdP.
func (e *env) browser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	idpHost := strings.TrimPrefix(e.srv.URL, "http://")
	return &http.Client{Jar: jar, CheckRedirect: func(r *http.Request, via []*http.Request) error {
		if r.URL.Host != idpHost {
			return http.ErrUseLastResponse
		}
		return nil
	}}
}

func (e *env) authorizeURL(redirect, state string) string {
	q := url.Values{"response_type": {"code"}, "client_id": {e.binding.ClientID}, "scope": {"get_user_info"}, "state": {state}}
	if redirect != "" {
		q.Set("redirect_uri", redirect)
	}
	return e.srv.URL + idp.PathAuthorize + "?" + q.Encode()
}

var (
	csrfRE     = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	continueRE = regexp.MustCompile(`name="continue" value="([^"]*)"`)
	tenantRE   = regexp.MustCompile(`name="tenant" value="([^"]*)"`)
)

// submitLogin fills in the login form on page.
func (e *env) submitLogin(t *testing.T, cl *http.Client, page, tenant, user, password string) (*http.Response, string) {
	t.Helper()
	cs := csrfRE.FindStringSubmatch(page)
	co := continueRE.FindStringSubmatch(page)
	if cs == nil || co == nil {
		t.Fatalf("no login form in:\n%s", page)
	}
	if tenant == "" {
		if m := tenantRE.FindStringSubmatch(page); m != nil {
			tenant = html.UnescapeString(m[1])
		}
	}
	form := url.Values{"csrf": {cs[1]}, "continue": {html.UnescapeString(co[1])}, "tenant": {tenant}, "username": {user}, "password": {password}}
	return buyertest.PostForm(t, cl, e.srv.URL+idp.PathLoginForm, form)
}

// login runs the browser part of the code flow and returns the code.
func (e *env) login(t *testing.T, cl *http.Client, user, password string) string {
	t.Helper()
	resp, page := buyertest.Get(t, cl, e.authorizeURL(callback, "st-1"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("authorize: %d\n%s", resp.StatusCode, page)
	}
	resp, page = e.submitLogin(t, cl, page, "", user, password)
	return codeFrom(t, resp, page, "st-1")
}

func codeFrom(t *testing.T, resp *http.Response, page, state string) string {
	t.Helper()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("want a redirect to the app, got %d\n%s", resp.StatusCode, page)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(loc.String(), callback+"?") {
		t.Fatalf("redirected to %s, want %s", loc, callback)
	}
	if loc.Query().Get("state") != state {
		t.Errorf("state %q, want %q", loc.Query().Get("state"), state)
	}
	code := loc.Query().Get("code")
	if len(code) < 40 {
		t.Fatalf("code %q too short", code)
	}
	return code
}

type tokenReply struct {
	Status int
	Body   map[string]any
}

func (e *env) token(t *testing.T, form url.Values) tokenReply {
	t.Helper()
	resp, err := http.PostForm(e.srv.URL+idp.PathToken, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r tokenReply
	r.Status = resp.StatusCode
	if err := json.NewDecoder(resp.Body).Decode(&r.Body); err != nil {
		t.Fatalf("token answer: %v", err)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("token answer Cache-Control %q, want no-store", cc)
	}
	return r
}

func (e *env) exchange(t *testing.T, code string) (access, refresh string) {
	t.Helper()
	r := e.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {e.binding.ClientID},
		"client_secret": {e.secret}, "redirect_uri": {callback}})
	if r.Status != http.StatusOK {
		t.Fatalf("token: %d %v", r.Status, r.Body)
	}
	return r.Body["access_token"].(string), r.Body["refresh_token"].(string)
}

func (e *env) refresh(t *testing.T, rt string) tokenReply {
	t.Helper()
	return e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {e.binding.ClientID}, "client_secret": {e.secret}})
}

func (e *env) userinfo(t *testing.T, access string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+idp.PathUserInfo, nil)
	req.Header.Set("Authorization", "Bearer "+access)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("userinfo answer: %v", err)
	}
	return resp.StatusCode, v
}

func wantGrantError(t *testing.T, r tokenReply, desc string) {
	t.Helper()
	if r.Status != http.StatusBadRequest || r.Body["error"] != "invalid_grant" || r.Body["error_description"] != desc {
		t.Errorf("got %d %v, want 400 invalid_grant %q", r.Status, r.Body, desc)
	}
}

func wantUnauthorized(t *testing.T, e *env, access string) {
	t.Helper()
	st, v := e.userinfo(t, access)
	if st != http.StatusUnauthorized || v["error"] != "unauthorized" || v["error_description"] != "Full authentication is required to access this resource" {
		t.Errorf("userinfo: %d %v, want the documented 401", st, v)
	}
}

func TestCodeFlow(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		cl := e.browser(t)
		// Bad requests never redirect to an unregistered address.
		for name, u := range map[string]string{
			"wrong redirect_uri": e.authorizeURL("https://evil.example/cb", "s"),
			"unknown client":     strings.Replace(e.authorizeURL(callback, "s"), e.binding.ClientID, "nope", 1),
			"ambiguous default":  e.authorizeURL("", "s"), // two registered URIs, none named
		} {
			resp, _ := buyertest.Get(t, cl, u)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
				t.Errorf("%s: %d Location=%q, want 400 without redirect", name, resp.StatusCode, resp.Header.Get("Location"))
			}
		}

		resp, page := buyertest.Get(t, cl, e.authorizeURL(callback, "st-1"))
		if resp.StatusCode != http.StatusOK || !strings.Contains(page, `<form method="post"`) || !strings.Contains(page, `value="acme" required readonly`) {
			t.Fatalf("login page: %d\n%s", resp.StatusCode, page)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("CSP %q", csp)
		}
		// A wrong password shows the form again.
		resp, page2 := e.submitLogin(t, cl, page, "", "alice", "wrong-password")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(page2, "Wrong enterprise, user name or password") {
			t.Fatalf("wrong password: %d\n%s", resp.StatusCode, page2)
		}
		resp, page2 = e.submitLogin(t, cl, page2, "", "alice", "alice-password")
		code := codeFrom(t, resp, page2, "st-1")
		if loc, _ := url.Parse(resp.Header.Get("Location")); loc.Query().Get("tenant") != e.tenant.ID {
			t.Errorf("redirect tenant %q, want %q", loc.Query().Get("tenant"), e.tenant.ID)
		}

		// Client authentication and redirect_uri are checked before the code is spent.
		r := e.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {e.binding.ClientID}, "client_secret": {"wrong"}})
		if r.Status != http.StatusUnauthorized || r.Body["error"] != "invalid_client" {
			t.Errorf("wrong client secret: %d %v", r.Status, r.Body)
		}
		r = e.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {e.binding.ClientID}, "client_secret": {e.secret},
			"redirect_uri": {"https://app.example.test/other"}})
		wantGrantError(t, r, "Invalid authorization code")

		r = e.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {e.binding.ClientID}, "client_secret": {e.secret},
			"redirect_uri": {callback}})
		if r.Status != http.StatusOK || r.Body["token_type"] != "Bearer" || r.Body["expires_in"] != 7200.0 || r.Body["scope"] != "get_user_info" {
			t.Fatalf("token: %d %v", r.Status, r.Body)
		}
		access, refresh := r.Body["access_token"].(string), r.Body["refresh_token"].(string)
		if len(access) < 40 || len(refresh) < 40 || access == refresh {
			t.Fatalf("tokens %q %q", access, refresh)
		}
		st, info := e.userinfo(t, access)
		want := map[string]any{"id": e.members["alice"], "userId": e.members["alice"], "userName": "alice", "name": "Alice", "email": "alice@acme.test",
			"mobile": "13800000001", "role": "admin", "organizationName": "R&D", "organizationCode": "110", "projectName": "Acme Ltd", "tenant": e.tenant.ID}
		if st != http.StatusOK {
			t.Fatalf("userinfo %d %v", st, info)
		}
		for k, v := range want {
			if info[k] != v {
				t.Errorf("userinfo %s = %v, want %v", k, info[k], v)
			}
		}

		// A code is single-use; replaying it also revokes what it bought.
		r = e.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {e.binding.ClientID}, "client_secret": {e.secret}})
		wantGrantError(t, r, "Invalid authorization code")
		wantUnauthorized(t, e, access)
		wantGrantError(t, e.refresh(t, refresh), "Invalid refresh token")

		// The IdP session signs the member in without the form.
		resp, page = buyertest.Get(t, cl, e.authorizeURL(callback, "st-2"))
		access, refresh = e.exchange(t, codeFrom(t, resp, page, "st-2"))

		// After 2 h the access token expires; the refresh token renews it (and rotates).
		e.clk.Advance(2*time.Hour + time.Second)
		wantUnauthorized(t, e, access)
		r = e.refresh(t, refresh)
		if r.Status != http.StatusOK || r.Body["refresh_token"] == refresh || r.Body["expires_in"] != 7200.0 {
			t.Fatalf("refresh: %d %v", r.Status, r.Body)
		}
		access2, refresh2 := r.Body["access_token"].(string), r.Body["refresh_token"].(string)
		if st, info := e.userinfo(t, access2); st != http.StatusOK || info["userName"] != "alice" {
			t.Fatalf("userinfo after refresh: %d %v", st, info)
		}
		// Reusing the rotated-away refresh token revokes the family.
		wantGrantError(t, e.refresh(t, refresh), "Invalid refresh token")
		wantUnauthorized(t, e, access2)
		wantGrantError(t, e.refresh(t, refresh2), "Invalid refresh token")

		// A refresh token lasts 30 days.
		cl2 := e.browser(t)
		_, refresh = e.exchange(t, e.login(t, cl2, "bob", "bob-password"))
		e.clk.Advance(30*24*time.Hour - time.Minute)
		r = e.refresh(t, refresh)
		if r.Status != http.StatusOK {
			t.Fatalf("refresh before 30 d: %d %v", r.Status, r.Body)
		}
		refresh = r.Body["refresh_token"].(string)
		e.clk.Advance(30*24*time.Hour + time.Second)
		wantGrantError(t, e.refresh(t, refresh), "Invalid refresh token")

		// Codes expire too.
		code = e.login(t, cl2, "bob", "bob-password") // the 8 h IdP session is long over
		e.clk.Advance(10 * time.Minute)
		r = e.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {e.binding.ClientID}, "client_secret": {e.secret}})
		wantGrantError(t, r, "Invalid authorization code")

		for name, form := range map[string]url.Values{
			"unsupported grant": {"grant_type": {"password"}, "client_id": {e.binding.ClientID}, "client_secret": {e.secret}},
			"missing client":    {"grant_type": {"authorization_code"}, "code": {"x"}},
		} {
			r := e.token(t, form)
			if r.Status == http.StatusOK || r.Body["error"] == nil {
				t.Errorf("%s: %d %v", name, r.Status, r.Body)
			}
		}
	})
}

func TestBasicClientAuthentication(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		code := e.login(t, e.browser(t), "alice", "alice-password")
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+idp.PathToken, strings.NewReader(url.Values{"grant_type": {"authorization_code"}, "code": {code}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(e.binding.ClientID, e.secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("HTTP Basic client authentication: %d", resp.StatusCode)
		}
	})
}

func TestDisabledMemberAndStoppedApp(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		cl := e.browser(t)
		access, refresh := e.exchange(t, e.login(t, cl, "bob", "bob-password"))
		if _, err := e.c.SetMembersEnabled(ctx, e.tenant.ID, []string{e.members["bob"]}, false); err != nil {
			t.Fatal(err)
		}
		wantUnauthorized(t, e, access)
		wantGrantError(t, e.refresh(t, refresh), "Invalid refresh token")
		// The IdP session no longer counts, and the form refuses him.
		resp, page := buyertest.Get(t, cl, e.authorizeURL(callback, "s"))
		if resp.StatusCode != http.StatusOK || !strings.Contains(page, "<form") {
			t.Fatalf("authorize for a disabled member: %d\n%s", resp.StatusCode, page)
		}
		resp, page = e.submitLogin(t, cl, page, "", "bob", "bob-password")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(page, "disabled") {
			t.Fatalf("disabled member login: %d\n%s", resp.StatusCode, page)
		}
		// Enabled again, he is back.
		if _, err := e.c.SetMembersEnabled(ctx, e.tenant.ID, []string{e.members["bob"]}, true); err != nil {
			t.Fatal(err)
		}
		// … but what was issued before the disable stays void.
		wantUnauthorized(t, e, access)
		wantGrantError(t, e.refresh(t, refresh), "Invalid refresh token")
		access, _ = e.exchange(t, e.login(t, e.browser(t), "bob", "bob-password"))
		if st, _ := e.userinfo(t, access); st != http.StatusOK {
			t.Fatalf("re-enabled member userinfo %d", st)
		}

		// A member not authorized for the app signs in to the IdP but gets no code.
		resp, page = buyertest.Get(t, cl, e.authorizeURL(callback, "s"))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("login form for the unauthorized member: %d\n%s", resp.StatusCode, page)
		}
		resp, page = e.submitLogin(t, cl, page, "", "guest", "guest-password")
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "Not authorized") {
			t.Fatalf("unauthorized member: %d\n%s", resp.StatusCode, page)
		}
		// Cancelling authorization stops existing tokens.
		if _, err := e.c.Deauthorize(ctx, e.tenant.ID, e.binding.ID, buyer.Subjects{Departments: []string{"100"}}); err != nil {
			t.Fatal(err)
		}
		wantUnauthorized(t, e, access)
		if _, err := e.c.Authorize(ctx, e.tenant.ID, e.binding.ID, buyer.Subjects{Departments: []string{"100"}}); err != nil {
			t.Fatal(err)
		}

		// A stopped app: no codes, tokens stop working; started again, it works.
		access, refresh = e.exchange(t, e.login(t, e.browser(t), "alice", "alice-password"))
		if _, err := e.c.SetAppEnabled(ctx, e.tenant.ID, e.binding.ID, false); err != nil {
			t.Fatal(err)
		}
		wantUnauthorized(t, e, access)
		wantGrantError(t, e.refresh(t, refresh), "Invalid refresh token")
		resp, _ = buyertest.Get(t, e.browser(t), e.authorizeURL(callback, "s"))
		if loc, _ := url.Parse(resp.Header.Get("Location")); resp.StatusCode != http.StatusFound || loc.Query().Get("error") != "access_denied" {
			t.Errorf("authorize on a stopped app: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		if _, err := e.c.SetAppEnabled(ctx, e.tenant.ID, e.binding.ID, true); err != nil {
			t.Fatal(err)
		}
		e.exchange(t, e.login(t, e.browser(t), "alice", "alice-password"))

		// A deleted member cannot sign in.
		if _, err := e.c.DeleteMembers(ctx, e.tenant.ID, []string{e.members["alice"]}); err != nil {
			t.Fatal(err)
		}
		cl = e.browser(t)
		_, page = buyertest.Get(t, cl, e.authorizeURL(callback, "s"))
		resp, page = e.submitLogin(t, cl, page, "", "alice", "alice-password")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(page, "Wrong enterprise, user name or password") {
			t.Fatalf("deleted member login: %d\n%s", resp.StatusCode, page)
		}
	})
}

func TestLoginFormCSRF(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		cl := e.browser(t)
		_, page := buyertest.Get(t, cl, e.authorizeURL(callback, "s"))
		cs := csrfRE.FindStringSubmatch(page)[1]
		post := func(cl *http.Client, csrf, origin string) int {
			form := url.Values{"csrf": {csrf}, "continue": {"/unified-login/"}, "tenant": {"acme"}, "username": {"alice"}, "password": {"alice-password"}}
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+idp.PathLoginForm, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if origin != "" {
				req.Header.Set("Origin", origin)
			}
			resp, err := cl.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if st := post(cl, "", ""); st != http.StatusForbidden {
			t.Errorf("no token: %d", st)
		}
		if st := post(cl, cs+"x", ""); st != http.StatusForbidden {
			t.Errorf("wrong token: %d", st)
		}
		if st := post(e.browser(t), cs, ""); st != http.StatusForbidden {
			t.Errorf("token without its cookie (another browser): %d", st)
		}
		if st := post(cl, cs, "https://evil.example"); st != http.StatusForbidden {
			t.Errorf("cross-origin post: %d", st)
		}
		if st := post(cl, cs, e.srv.URL); st != http.StatusOK { // 303 → signed-in page
			t.Errorf("valid post: %d", st)
		}
	})
}

func TestUnifiedLoginAndLogout(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		cl := e.browser(t)
		resp, page := buyertest.Get(t, cl, e.srv.URL+idp.PathPortalLogin+"?ind=UNOP&appId=app-1")
		if resp.StatusCode != http.StatusOK || strings.Contains(page, "required readonly") {
			t.Fatalf("unified login page: %d\n%s", resp.StatusCode, page)
		}
		resp, page = e.submitLogin(t, cl, page, "acme", "alice", "alice-password")
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("unified login: %d\n%s", resp.StatusCode, page)
		}
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if !strings.HasPrefix(loc.String(), callback+"?") || loc.Query().Get("tenant") != e.tenant.ID {
			t.Fatalf("redirected to %s, want the app's login address with code and tenant", loc)
		}
		// The merchant exchanges the code without naming redirect_uri (documented as optional).
		r := e.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "client_id": {e.binding.ClientID}, "client_secret": {e.secret}})
		if r.Status != http.StatusOK {
			t.Fatalf("token: %d %v", r.Status, r.Body)
		}
		// The hash-route page carries its script.
		_, page = buyertest.Get(t, cl, e.srv.URL+idp.PathUnified)
		if !strings.Contains(page, "signed in as <b>alice</b>") || !strings.Contains(page, "#/portal-login") {
			t.Errorf("unified page:\n%s", page)
		}

		// Logout to a registered origin redirects there; the session is over.
		resp, _ = buyertest.Get(t, cl, e.srv.URL+idp.PathLogout+"?redirect_url="+url.QueryEscape("https://app.example.test/bye"))
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://app.example.test/bye" {
			t.Fatalf("logout: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		resp, page = buyertest.Get(t, cl, e.authorizeURL(callback, "s"))
		if resp.StatusCode != http.StatusOK || !strings.Contains(page, "<form") {
			t.Errorf("after logout authorize shows %d, want the login form", resp.StatusCode)
		}
		// Logout never redirects to a foreign origin.
		noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, _ = buyertest.Get(t, noFollow, e.srv.URL+idp.PathLogout+"?redirect_url="+url.QueryEscape("https://evil.example/"))
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != idp.PathUnified {
			t.Errorf("logout to a foreign origin: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
}

func TestLoginLockout(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		cl := e.browser(t)
		_, page := buyertest.Get(t, cl, e.authorizeURL(callback, "s"))
		for i := range 10 {
			resp, p := e.submitLogin(t, cl, page, "", "alice", "guess-"+string(rune('a'+i)))
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("guess %d: %d", i, resp.StatusCode)
			}
			page = p
		}
		// Locked: even the right password is refused, without checking it.
		resp, p := e.submitLogin(t, cl, page, "", "alice", "alice-password")
		if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(p, "Too many failed sign-ins") {
			t.Fatalf("after 10 failures: %d\n%s", resp.StatusCode, p)
		}
		// Another member is not affected; unknown names are throttled the same way.
		if code := e.login(t, e.browser(t), "bob", "bob-password"); code == "" {
			t.Fatal("bob")
		}
		e.clk.Advance(15*time.Minute + time.Second)
		resp, p = e.submitLogin(t, cl, p, "", "alice", "alice-password")
		codeFrom(t, resp, p, "s")
	})
}

func TestPurge(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, refresh := e.exchange(t, e.login(t, e.browser(t), "alice", "alice-password"))
		if n, err := e.idp.Purge(ctx, 0); err != nil || n != 0 {
			t.Fatalf("purge of live rows: %d, %v", n, err)
		}
		e.clk.Advance(31 * 24 * time.Hour)
		// session, code, access and refresh token
		if n, err := e.idp.Purge(ctx, 0); err != nil || n != 4 {
			t.Fatalf("purge: %d, %v; want 4", n, err)
		}
		wantGrantError(t, e.refresh(t, refresh), "Invalid refresh token")
	})
}

// gatedDirectory holds every Account lookup until n lookups wait or the
// deadline passes, so that concurrent sign-ins overlap for certain.
type gatedDirectory struct {
	idp.Directory
	mu      sync.Mutex
	waiting int
	n       int
	all     chan struct{}
}

func (g *gatedDirectory) Account(ctx context.Context, tenantID, userName string) (idp.Account, error) {
	g.mu.Lock()
	g.waiting++
	if g.waiting == g.n {
		close(g.all)
	}
	g.mu.Unlock()
	select {
	case <-g.all:
	case <-time.After(time.Second):
	}
	return g.Directory.Account(ctx, tenantID, userName)
}

// TestLoginLockoutConcurrent: guesses sent at once are counted before any
// password is checked, so no more than MaxLoginFailures are checked per
// window however many arrive together.
func TestLoginLockoutConcurrent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		const guesses = 16
		gd := &gatedDirectory{Directory: e.c.Directory(), n: guesses, all: make(chan struct{})}
		p, err := idp.New(idp.Config{DB: e.db, Clock: e.clk, Directory: gd, Password: testPassword, MaxLoginFailures: 5})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		p.Register(mux)
		srv := httptest.NewServer(mux)
		defer srv.Close()
		e2 := *e
		e2.srv = srv
		cl := e2.browser(t)
		_, page := buyertest.Get(t, cl, e2.authorizeURL(callback, "s"))
		statuses := make(chan int, guesses)
		var wg sync.WaitGroup
		for i := range guesses {
			wg.Go(func() {
				resp, _ := e2.submitLogin(t, cl, page, "", "alice", fmt.Sprintf("guess-%d", i))
				statuses <- resp.StatusCode
			})
		}
		wg.Wait()
		close(statuses)
		got := map[int]int{}
		for s := range statuses {
			got[s]++
		}
		if got[http.StatusUnauthorized] != 5 || got[http.StatusTooManyRequests] != guesses-5 {
			t.Errorf("concurrent guesses answered %v; want 5 checked (401) and %d refused (429)", got, guesses-5)
		}
	})
}

// TestPurgeLoginFailures: the failure counts of windows that ended are
// purged too; every user name tried (existing or not) leaves one.
func TestPurgeLoginFailures(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		cl := e.browser(t)
		_, page := buyertest.Get(t, cl, e.authorizeURL(callback, "s"))
		for _, user := range []string{"alice", "no-such-user"} {
			if resp, _ := e.submitLogin(t, cl, page, "", user, "wrong"); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("%s: %d", user, resp.StatusCode)
			}
		}
		count := func() int {
			var n int
			if err := e.db.QueryRow(ctx, `SELECT COUNT(*) FROM idp_login_failures`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		if n, err := e.idp.Purge(ctx, 0); err != nil || n != 0 || count() != 2 {
			t.Fatalf("purge within the window: %d, %v; %d rows left, want 2", n, err, count())
		}
		e.clk.Advance(15*time.Minute + time.Second)
		if n, err := e.idp.Purge(ctx, 0); err != nil || n != 2 || count() != 0 {
			t.Fatalf("purge after the window: %d, %v; %d rows left, want 0", n, err, count())
		}
	})
}

// TestPasswordChecksBounded: sign-ins of many names at once do not run more
// argon2id checks at a time than MaxPasswordChecks (each takes the hash's
// memory, 64 MiB by default).
func TestPasswordChecksBounded(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		p, err := idp.New(idp.Config{DB: e.db, Clock: e.clk, Directory: e.c.Directory(), Password: testPassword, MaxPasswordChecks: 2})
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		running, peak := 0, 0
		idp.SetVerifyPassword(p, func(hash, password string) error {
			mu.Lock()
			running++
			peak = max(peak, running)
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
			mu.Lock()
			running--
			mu.Unlock()
			return idp.VerifyPassword(hash, password)
		})
		mux := http.NewServeMux()
		p.Register(mux)
		srv := httptest.NewServer(mux)
		defer srv.Close()
		e2 := *e
		e2.srv = srv
		cl := e2.browser(t)
		_, page := buyertest.Get(t, cl, e2.authorizeURL(callback, "s"))
		var wg sync.WaitGroup
		for i := range 12 {
			wg.Go(func() {
				if resp, _ := e2.submitLogin(t, cl, page, "", fmt.Sprintf("user-%d", i), "guess"); resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("user-%d: %d", i, resp.StatusCode)
				}
			})
		}
		wg.Wait()
		if peak > 2 || peak == 0 {
			t.Errorf("%d password checks ran at once, want at most 2", peak)
		}
	})
}

// TestLoginEndsPreviousSession: signing in again in a browser ends the IdP
// session that browser had, server-side, not only by replacing the cookie.
func TestLoginEndsPreviousSession(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		cl := e.browser(t)
		e.login(t, cl, "alice", "alice-password")
		u, _ := url.Parse(e.srv.URL + "/")
		var old *http.Cookie
		for _, c := range cl.Jar.Cookies(u) {
			if c.Name == "souk_idp_session" {
				old = c
			}
		}
		if old == nil {
			t.Fatal("no IdP session cookie")
		}
		// bob signs in in the same browser (its form, CSRF cookie and all)
		lu, _ := url.Parse(e.srv.URL + idp.PathLoginForm)
		csrf := ""
		for _, c := range cl.Jar.Cookies(lu) {
			if c.Name == "souk_idp_csrf" {
				csrf = c.Value
			}
		}
		resp, page := buyertest.PostForm(t, cl, lu.String(), url.Values{"csrf": {csrf}, "tenant": {"acme"}, "username": {"bob"}, "password": {"bob-password"}})
		if resp.StatusCode != http.StatusOK || !strings.Contains(page, "bob") {
			t.Fatalf("bob's sign-in: %d\n%s", resp.StatusCode, page)
		}
		// alice's old cookie no longer signs anyone in
		stale := e.browser(t)
		stale.Jar.SetCookies(u, []*http.Cookie{{Name: old.Name, Value: old.Value, Path: "/"}})
		resp, page = buyertest.Get(t, stale, e.authorizeURL(callback, "s3"))
		if resp.StatusCode != http.StatusOK || !strings.Contains(page, "<form") {
			t.Fatalf("the replaced session still signs in: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
}

// TestLoginFieldLengths: over-long form fields are refused before anything
// is looked up, counted, logged or shown again.
func TestLoginFieldLengths(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		long := strings.Repeat("x", 300)
		for name, tc := range map[string]struct{ tenant, user, password string }{
			"user name":  {"acme", long, "p"},
			"enterprise": {long, "alice", "p"},
			"password":   {"acme", "alice", strings.Repeat("p", 1025)},
		} {
			cl := e.browser(t)
			_, page := buyertest.Get(t, cl, e.authorizeURL(callback, "s"))
			resp, body := e.submitLogin(t, cl, page, tc.tenant, tc.user, tc.password)
			if resp.StatusCode != http.StatusBadRequest || strings.Contains(body, long) {
				t.Errorf("%s: %d, want 400 without the value shown", name, resp.StatusCode)
			}
		}
		var n int
		if err := e.db.QueryRow(context.Background(), `SELECT COUNT(*) FROM idp_login_failures`).Scan(&n); err != nil || n != 0 {
			t.Errorf("%d failure rows (%v), want none", n, err)
		}
	})
}

// TestPKCE: a code issued for a code_challenge (S256) is exchanged only with
// its code_verifier; one issued without is not exchanged with a verifier
// (downgrade, RFC 9700 §4.8.2); plain and unknown methods are refused.
func TestPKCE(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk" // RFC 7636 appendix B
		const challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
		cl := e.browser(t)
		e.login(t, cl, "alice", "alice-password") // signed in: authorize answers with a code
		authorize := func(extra url.Values) *http.Response {
			u, _ := url.Parse(e.authorizeURL(callback, "s"))
			q := u.Query()
			for k, v := range extra {
				q[k] = v
			}
			u.RawQuery = q.Encode()
			resp, _ := buyertest.Get(t, cl, u.String())
			return resp
		}
		code := func(extra url.Values) string {
			resp := authorize(extra)
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusFound || loc.Query().Get("code") == "" {
				t.Fatalf("authorize %v: %d %s", extra, resp.StatusCode, loc)
			}
			return loc.Query().Get("code")
		}
		exchange := func(code, verifier string) tokenReply {
			form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {e.binding.ClientID},
				"client_secret": {e.secret}, "redirect_uri": {callback}}
			if verifier != "" {
				form.Set("code_verifier", verifier)
			}
			return e.token(t, form)
		}
		s256 := url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}}
		for name, tc := range map[string]struct {
			authorize url.Values
			verifier  string
			ok        bool
		}{
			"S256":                 {s256, verifier, true},
			"no verifier":          {s256, "", false},
			"wrong verifier":       {s256, strings.Repeat("a", 43), false},
			"the challenge itself": {s256, challenge, false},
			"downgrade":            {nil, verifier, false},
			"no PKCE":              {nil, "", true},
		} {
			r := exchange(code(tc.authorize), tc.verifier)
			if tc.ok && r.Status != http.StatusOK {
				t.Errorf("%s: %d %v", name, r.Status, r.Body)
			}
			if !tc.ok {
				if r.Status != http.StatusBadRequest || r.Body["error"] != "invalid_grant" {
					t.Errorf("%s: %d %v, want invalid_grant", name, r.Status, r.Body)
				}
			}
		}
		// a failed verifier does not spend the code: its client may still
		// complete, an attacker who intercepted it cannot
		c := code(s256)
		wantGrantError(t, exchange(c, strings.Repeat("b", 43)), "Invalid authorization code")
		if r := exchange(c, verifier); r.Status != http.StatusOK {
			t.Errorf("right verifier after a wrong one: %d %v", r.Status, r.Body)
		}
		for name, extra := range map[string]url.Values{
			"plain":           {"code_challenge": {verifier}, "code_challenge_method": {"plain"}},
			"no method":       {"code_challenge": {challenge}},
			"unknown method":  {"code_challenge": {challenge}, "code_challenge_method": {"S512"}},
			"short challenge": {"code_challenge": {"abc"}, "code_challenge_method": {"S256"}},
			"method alone":    {"code_challenge_method": {"S256"}},
		} {
			resp := authorize(extra)
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusFound || loc.Query().Get("error") != "invalid_request" || loc.Query().Get("code") != "" {
				t.Errorf("%s: %d %s, want invalid_request", name, resp.StatusCode, loc)
			}
		}
	})
}

// TestAuditNotes: the IdP names, for the market's audit record of each call,
// the OAuth client or the user signing in, the outcome of a sign-in and the
// member concerned.
func TestAuditNotes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		cl := e.browser(t)
		client := "client:" + e.binding.ClientID
		want := func(step, actor, result string, targets map[string]string) {
			t.Helper()
			a, r, tg := e.notes.take()
			if a != actor || r != result {
				t.Errorf("%s: noted actor %q result %q, want %q %q", step, a, r, actor, result)
			}
			for k, v := range targets {
				if tg[k] != v {
					t.Errorf("%s: noted targets %v, want %s=%s", step, tg, k, v)
				}
			}
		}
		resp, page := buyertest.Get(t, cl, e.authorizeURL(callback, "st-1"))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("authorize: %d", resp.StatusCode)
		}
		want("authorize", client, "", map[string]string{"client": e.binding.ClientID})
		_, page = e.submitLogin(t, cl, page, "", "alice", "wrong-password")
		want("wrong password", "user:acme/alice", "wrong_credentials", nil)
		_, page = e.submitLogin(t, cl, page, "", "nobody", "a-password")
		want("unknown user", "user:acme/nobody", "wrong_credentials", nil)
		resp, page = e.submitLogin(t, cl, page, "", "alice", "alice-password")
		code := codeFrom(t, resp, page, "st-1")
		// The redirect after the sign-in went back to authorize, which the
		// browser followed: the last actor noted is the client's.
		want("sign-in", client, "ok", map[string]string{"member": e.members["alice"], "tenant": e.tenant.ID})
		access, _ := e.exchange(t, code)
		want("token", client, "", map[string]string{"client": e.binding.ClientID})
		if st, _ := e.userinfo(t, access); st != http.StatusOK {
			t.Fatalf("userinfo: %d", st)
		}
		want("userinfo", client, "", map[string]string{"member": e.members["alice"]})
		if _, err := e.c.SetMembersEnabled(context.Background(), e.tenant.ID, []string{e.members["bob"]}, false); err != nil {
			t.Fatal(err)
		}
		cl2 := e.browser(t)
		_, page = buyertest.Get(t, cl2, e.authorizeURL(callback, "st-2"))
		e.notes.take()
		e.submitLogin(t, cl2, page, "", "bob", "bob-password")
		want("disabled", "user:acme/bob", "disabled", nil)
	})
}
