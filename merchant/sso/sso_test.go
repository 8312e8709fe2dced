package sso

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/internal/testkeys"
	"github.com/soukhq/souk/jobs"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/merchant/auditnote"
	"github.com/soukhq/souk/merchant/handoff"
	"github.com/soukhq/souk/merchant/kit"
)

var identityKey = []byte("0123456789abcdef0123456789abcdef-identity")

const (
	tenantID     = "tenant-68cbc868"
	clientID     = "client-abc"
	clientSecret = "the-plaintext-client-secret"
)

type fixture struct {
	t    *testing.T
	db   *db.DB
	clk  *clock.Virtual
	kit  *kit.Service
	sso  *Service
	idp  *fakeIdP
	srv  *httptest.Server
	ts   int // authSync currentSyncTime counter
	seen []*Identity
	mu   sync.Mutex
	cfg  Config
	aud  string // the identity tokens' audience
	// handler serves f.srv
	handler atomic.Pointer[http.ServeMux]
	// notes: "path note" of each call, as the merchant's audit decorator
	// would record them (auditnote)
	notes []string
}

// notesOf returns the audit notes of the calls of path so far.
func (f *fixture) notesOf(path string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, n := range f.notes {
		if p, note, _ := strings.Cut(n, " "); p == path {
			out = append(out, note)
		}
	}
	return out
}

func newFixture(t *testing.T, backend string, mutate func(*Config)) *fixture {
	t.Helper()
	ctx := context.Background()
	d := dbtest.OpenMigrated(t, backend, jobs.Migrate, handoff.Migrate, kit.Migrate, Migrate)
	f := &fixture{t: t, db: d, clk: clock.NewVirtual(time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC))}
	f.kit = kit.New(kit.Config{Keys: []string{"k"}, PrivateKey: testkeys.RSA3072(t)}, kit.Deps{DB: d, Clock: f.clk})
	f.idp = newFakeIdP(t, f.clk, tenantID, clientID, clientSecret)

	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, note := auditnote.With(r.Context()) // as the merchant's audit decorator does
		f.handler.Load().ServeHTTP(w, r.WithContext(ctx))
		f.mu.Lock()
		f.notes = append(f.notes, r.URL.Path+" "+note.String())
		f.mu.Unlock()
	}))
	t.Cleanup(f.srv.Close)
	cfg := Config{BaseURL: f.srv.URL, AppURL: f.srv.URL + "/app", PostLogoutURL: f.srv.URL + "/bye",
		IdentityKeys: [][]byte{identityKey}, InsecureCookies: true}
	if mutate != nil {
		mutate(&cfg)
	}
	f.cfg = cfg
	svc, err := New(cfg, Deps{DB: d, Directory: f.kit, Clock: f.clk})
	if err != nil {
		t.Fatal(err)
	}
	f.aud = svc.cfg.Audience
	f.serve(svc)

	// the directory, as the kit interfaces would build it
	now := f.clk.Now()
	if err := f.kit.ApplyTenantSync(ctx, &kit.TenantSync{Common: kit.Common{TenantID: tenantID}, TenantCode: "acme", Name: "Acme Ltd",
		DomainName: f.idp.srv.URL, Flag: kit.FlagAdd}, now); err != nil {
		t.Fatal(err)
	}
	ct, err := kg.EncryptClientSecret(&testkeys.RSA3072(t).PublicKey, clientSecret, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.kit.ApplyApplicationSync(ctx, &kit.ApplicationSync{Common: kit.Common{TenantID: tenantID}, AppID: "app-1",
		ClientID: clientID, ClientSecret: ct, Flag: kit.FlagAdd}, now); err != nil {
		t.Fatal(err)
	}
	if err := f.kit.ApplyAllOrgSync(ctx, &kit.AllOrgSync{Common: kit.Common{TenantID: tenantID},
		Orgs: []kit.OrgInfo{{OrgCode: "d1", OrgName: "Engineering"}}}, now); err != nil {
		t.Fatal(err)
	}
	f.authSync(kit.FlagAdd, kit.SyncUser{UserName: "alice", Name: "Alice", OrgCode: "d1", Role: "admin", Enabled: true})
	f.authSync(kit.FlagAdd, kit.SyncUser{UserName: "bob", Name: "Bob", OrgCode: "d1", Role: "user", Enabled: false})
	f.authSync(kit.FlagAdd, kit.SyncUser{UserName: "carol", Name: "Carol", OrgCode: "d1", Role: "user", Enabled: true})
	f.authSync(kit.FlagCancel, kit.SyncUser{UserName: "carol"})
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		f.idp.addUser(idpUser{UserName: u, Name: strings.ToUpper(u[:1]) + u[1:], Role: "user", Org: "d1"})
	}
	return f
}

// serve makes svc the SSO service behind the fixture's server (a restart,
// e.g. with other keys, on the same database).
func (f *fixture) serve(svc *Service) {
	f.sso = svc
	mux := http.NewServeMux()
	mux.Handle("/sso/", svc.Handler())
	// the vendor app: verifies the assertion it is redirected with
	mux.HandleFunc("/app/", f.app)
	mux.HandleFunc("/app", f.app)
	mux.Handle("/protected/", svc.Protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := VerifyIdentityFor([][]byte{identityKey}, r.Header.Get(IdentityHeader), f.aud, f.clk.Now())
		ctxID, ok := IdentityFromContext(r.Context())
		if err != nil || !ok || ctxID.UserName != id.UserName {
			http.Error(w, "bad identity header", http.StatusTeapot)
			return
		}
		_ = json.NewEncoder(w).Encode(id)
	})))
	mux.HandleFunc("/bye", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "signed out") })
	f.handler.Store(mux)
}

func (f *fixture) authSync(flag int, u kit.SyncUser) {
	f.t.Helper()
	f.ts++
	st := "2026030116000" + string(rune('0'+f.ts/10)) + string(rune('0'+f.ts%10)) + "00"
	if err := f.kit.ApplyAuthSync(context.Background(), &kit.AuthSync{Common: kit.Common{TenantID: tenantID}, AppID: "app-1",
		Users: []kit.SyncUser{u}, CurrentSyncTime: st, Flag: flag}, f.clk.Now()); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) app(w http.ResponseWriter, r *http.Request) {
	id, err := VerifyIdentityFor([][]byte{identityKey}, r.URL.Query().Get(IdentityParam), f.aud, f.clk.Now())
	if err != nil {
		http.Error(w, "vendor app: "+err.Error(), http.StatusUnauthorized)
		return
	}
	f.mu.Lock()
	f.seen = append(f.seen, id)
	f.mu.Unlock()
	_ = json.NewEncoder(w).Encode(id)
}

func forEachBackend(t *testing.T, mutate func(*Config), fn func(t *testing.T, f *fixture)) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) { fn(t, newFixture(t, b, mutate)) })
	}
}

// browser is a cookie-keeping HTTP client that follows redirects.
func (f *fixture) browser() *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, u string) (int, string, *http.Response) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp
}

// login runs the whole flow for userName in browser c and returns the
// final status and body.
func (f *fixture) login(c *http.Client, userName string) (int, string) {
	f.t.Helper()
	f.idp.signInAs(userName)
	code, body, _ := get(f.t, c, f.srv.URL+"/sso/login?tenant="+tenantID+"&return_to=/app/reports?q=1")
	return code, body
}

func (f *fixture) me(c *http.Client) (int, Me) {
	f.t.Helper()
	code, body, _ := get(f.t, c, f.srv.URL+"/sso/me")
	var m Me
	if code == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			f.t.Fatalf("me: %v %s", err, body)
		}
	}
	return code, m
}

// The audit record of a sign-in names the tenant and the user, and a refused
// one why; never a code, a token or a secret.
func TestLoginAuditNotes(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, f *fixture) {
		if code, body := f.login(f.browser(), "alice"); code != http.StatusOK {
			t.Fatalf("login: %d %s", code, body)
		}
		if got := f.notesOf("/sso/login"); len(got) != 1 || got[0] != "tenant="+tenantID {
			t.Errorf("login notes = %q", got)
		}
		if got := f.notesOf("/sso/callback"); len(got) != 1 || got[0] != "tenant="+tenantID+" user=alice" {
			t.Errorf("callback notes = %q", got)
		}
		f.mu.Lock()
		f.notes = nil
		f.mu.Unlock()
		if code, _ := f.login(f.browser(), "carol"); code != http.StatusForbidden {
			t.Fatalf("carol's login: %d", code)
		}
		got := f.notesOf("/sso/callback")
		if len(got) != 1 || !strings.HasPrefix(got[0], "tenant="+tenantID+" user=carol refused=") {
			t.Errorf("refused callback notes = %q", got)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, n := range f.notes {
			if strings.Contains(n, clientSecret) || strings.Contains(n, "code=") || strings.Contains(n, "token") {
				t.Errorf("a note carries a secret: %q", n)
			}
		}
	})
}

func TestLoginEndToEnd(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, f *fixture) {
		c := f.browser()
		code, body := f.login(c, "alice")
		if code != http.StatusOK {
			t.Fatalf("login: %d %s", code, body)
		}
		var id Identity
		if err := json.Unmarshal([]byte(body), &id); err != nil {
			t.Fatal(err)
		}
		if id.UserName != "alice" || id.Role != "admin" || id.TenantID != tenantID || id.TenantCode != "acme" || id.Department != "d1" ||
			id.DepartmentName != "Engineering" || id.UserID != "uid-alice" || !id.Enabled || id.Test || id.Audience != f.srv.URL+"/app" {
			t.Fatalf("identity handed to the app: %+v", id)
		}
		code, m := f.me(c)
		if code != http.StatusOK || m.UserName != "alice" || m.Role != "admin" || m.Tenant != tenantID || m.Department != "d1" ||
			m.DepartmentName != "Engineering" || !m.Enabled || m.Name != "Alice" || m.AppID != "app-1" {
			t.Fatalf("/sso/me: %d %+v", code, m)
		}
		// the proxy mode hands a verified Souk-Identity header to the app
		req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/protected/x", nil)
		req.Header.Set(IdentityHeader, "forged")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"userName":"alice"`) {
			t.Fatalf("protected: %d %s", resp.StatusCode, b)
		}
		// the exchange used form parameters, never HTTP Basic
		if ex, _, basic, _ := f.idp.stats(); ex != 1 || basic != 0 {
			t.Fatalf("exchanges %d, basic-auth token calls %d", ex, basic)
		}
		// the browser secret is not in the database, nor the tokens in clear
		u, _ := url.Parse(f.srv.URL)
		var sessCookie string
		for _, ck := range c.Jar.Cookies(u) {
			if ck.Name == "souk_session" {
				sessCookie = ck.Value
			}
		}
		if sessCookie == "" {
			t.Fatal("no session cookie")
		}
		var idHash, storedAccess, storedRefresh string
		if err := f.db.QueryRow(context.Background(), `SELECT id_hash, access_token, refresh_token FROM sso_sessions`).Scan(&idHash, &storedAccess, &storedRefresh); err != nil {
			t.Fatal(err)
		}
		f.idp.mu.Lock()
		_, clearAccess := f.idp.access[storedAccess]
		_, clearRefresh := f.idp.refresh[storedRefresh]
		f.idp.mu.Unlock()
		if idHash == sessCookie || clearAccess || clearRefresh || storedRefresh == "" {
			t.Fatal("session id or tokens stored in clear")
		}
		// a second browser without the cookie is not signed in
		if code, _ := f.me(f.browser()); code != http.StatusUnauthorized {
			t.Fatalf("anonymous /sso/me: %d", code)
		}
	})
}

func TestLoginRefused(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, f *fixture) {
		for _, tc := range []struct{ user, want string }{
			{"dave", "not authorized"}, // authSync never authorized him
			{"bob", "disabled"},        // enable "false"
			{"carol", "cancelled"},     // authSync flag 3
		} {
			c := f.browser()
			code, body := f.login(c, tc.user)
			if code != http.StatusForbidden || !strings.Contains(strings.ToLower(body), tc.want) {
				t.Errorf("%s: %d %s", tc.user, code, body)
			}
			if code, _ := f.me(c); code != http.StatusUnauthorized {
				t.Errorf("%s got a session: %d", tc.user, code)
			}
		}
		var n int
		if err := f.db.QueryRow(context.Background(), `SELECT COUNT(*) FROM sso_sessions`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("%d sessions after refused logins (%v)", n, err)
		}
		// an unknown tenant is refused before any redirect
		code, body, _ := get(t, f.browser(), f.srv.URL+"/sso/login?tenant=nobody")
		if code != http.StatusForbidden || !strings.Contains(body, "not bound") {
			t.Errorf("unknown tenant: %d %s", code, body)
		}
	})
}

func TestDisableEndsSession(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, f *fixture) {
		c := f.browser()
		if code, body := f.login(c, "alice"); code != http.StatusOK {
			t.Fatalf("login: %d %s", code, body)
		}
		// the administrator disables alice (authSync modify, enable "false")
		f.authSync(kit.FlagModify, kit.SyncUser{UserName: "alice", Name: "Alice", OrgCode: "d1", Role: "admin", Enabled: false})
		if code, _ := f.me(c); code != http.StatusForbidden {
			t.Fatalf("disabled member's session still works: %d", code)
		}
		if code, _ := f.me(c); code != http.StatusUnauthorized {
			t.Fatalf("session not ended: %d", code)
		}
		if code, body := f.login(c, "alice"); code != http.StatusForbidden || !strings.Contains(body, "disabled") {
			t.Fatalf("disabled member logged in: %d %s", code, body)
		}
		// re-enabled, she signs in again, now as a plain user
		f.authSync(kit.FlagModify, kit.SyncUser{UserName: "alice", Name: "Alice", OrgCode: "d1", Role: "user", Enabled: true})
		if code, body := f.login(c, "alice"); code != http.StatusOK {
			t.Fatalf("re-enabled: %d %s", code, body)
		}
		if _, m := f.me(c); m.Role != "user" {
			t.Fatalf("role %q after the change", m.Role)
		}
	})
}

func TestUnbindEndsSession(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		c := f.browser()
		if code, body := f.login(c, "alice"); code != http.StatusOK {
			t.Fatalf("login: %d %s", code, body)
		}
		// applicationSync delete: the app credential is gone
		if err := f.kit.ApplyApplicationSync(ctx, &kit.ApplicationSync{Common: kit.Common{TenantID: tenantID}, AppID: "app-1", Flag: kit.FlagDelete}, f.clk.Now()); err != nil {
			t.Fatal(err)
		}
		if code, _ := f.me(c); code != http.StatusForbidden {
			t.Fatalf("after the app was unbound: %d", code)
		}
		if code, body := f.login(c, "alice"); code != http.StatusForbidden {
			t.Fatalf("login without an app credential: %d %s", code, body)
		}
		// tenantSync delete: the organization is gone
		if err := f.kit.ApplyTenantSync(ctx, &kit.TenantSync{Common: kit.Common{TenantID: tenantID}, Flag: kit.FlagDelete}, f.clk.Now()); err != nil {
			t.Fatal(err)
		}
		if code, body := f.login(c, "alice"); code != http.StatusForbidden || !strings.Contains(body, "not connected") {
			t.Fatalf("login to a deleted tenant: %d %s", code, body)
		}
		if got := counterValue(t, f.sso.logins.WithLabelValues("ok")); got != 1 {
			t.Errorf("ok logins counted %v, want 1", got)
		}
	})
}

func TestAccessTokenRefresh(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		c := f.browser()
		if code, body := f.login(c, "alice"); code != http.StatusOK {
			t.Fatalf("login: %d %s", code, body)
		}
		accessOf := func() (string, int) {
			var tok string
			var n int
			if err := f.db.QueryRow(ctx, `SELECT access_token, refreshes FROM sso_sessions`).Scan(&tok, &n); err != nil {
				t.Fatal(err)
			}
			return tok, n
		}
		before, _ := accessOf()
		f.clk.Advance(time.Hour)
		if code, _ := f.me(c); code != http.StatusOK {
			t.Fatalf("after 1 h: %d", code)
		}
		if _, r, _, _ := f.idp.stats(); r != 0 {
			t.Fatalf("refreshed a valid token (%d)", r)
		}
		f.clk.Advance(time.Hour) // the 2 h access token is (about to be) expired
		if code, _ := f.me(c); code != http.StatusOK {
			t.Fatalf("after 2 h: %d", code)
		}
		after, n := accessOf()
		if _, r, _, _ := f.idp.stats(); r != 1 || n != 1 || after == before {
			t.Fatalf("refreshes at the IdP %d, in the session %d, token changed %v", r, n, after != before)
		}
		// the refreshed token works at the IdP (userinfo checks the fake clock)
		var sess *session
		if err := func() error {
			var err error
			var h string
			if err = f.db.QueryRow(ctx, `SELECT id_hash FROM sso_sessions`).Scan(&h); err != nil {
				return err
			}
			sess, err = f.sso.readSession(ctx, h)
			return err
		}(); err != nil {
			t.Fatal(err)
		}
		at, err := f.sso.open(sess.accessSealed, sess.idHash)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.sso.fetchUserInfo(ctx, f.idp.srv.URL, at); err != nil {
			t.Fatalf("refreshed token rejected by the IdP: %v", err)
		}
		// a refresh token the IdP no longer honours ends the session
		f.idp.revokeRefreshTokens()
		f.clk.Advance(2 * time.Hour)
		if code, _ := f.me(c); code != http.StatusUnauthorized {
			t.Fatalf("revoked refresh token: %d", code)
		}
	})
}

func TestConcurrentRefresh(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, f *fixture) {
		c := f.browser()
		if code, body := f.login(c, "alice"); code != http.StatusOK {
			t.Fatalf("login: %d %s", code, body)
		}
		f.clk.Advance(2 * time.Hour)
		var wg sync.WaitGroup
		codes := make([]int, 8)
		for i := range codes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := c.Get(f.srv.URL + "/sso/me")
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				codes[i] = resp.StatusCode
			}()
		}
		wg.Wait()
		for i, code := range codes {
			if code != http.StatusOK {
				t.Fatalf("request %d: %d", i, code)
			}
		}
		f.idp.mu.Lock()
		refreshes, reuses := f.idp.refreshCalls, f.idp.reuses
		f.idp.mu.Unlock()
		if refreshes != 1 || reuses != 0 {
			t.Fatalf("refreshes %d, refresh-token reuses %d; want 1 and 0", refreshes, reuses)
		}
		// the rotated refresh token still works two hours later
		f.clk.Advance(2 * time.Hour)
		if code, _ := f.me(c); code != http.StatusOK {
			t.Fatalf("second refresh: %d", code)
		}
	})
}

func TestSessionLifetime(t *testing.T) {
	forEachBackend(t, func(c *Config) { c.IdleTimeout = 30 * time.Minute }, func(t *testing.T, f *fixture) {
		c := f.browser()
		if code, body := f.login(c, "alice"); code != http.StatusOK {
			t.Fatalf("login: %d %s", code, body)
		}
		f.clk.Advance(29 * time.Minute)
		if code, _ := f.me(c); code != http.StatusOK {
			t.Fatalf("active session: %d", code)
		}
		f.clk.Advance(31 * time.Minute)
		if code, _ := f.me(c); code != http.StatusUnauthorized {
			t.Fatalf("idle session: %d", code)
		}
	})
}

func TestLogout(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, f *fixture) {
		c := f.browser()
		if code, body := f.login(c, "alice"); code != http.StatusOK {
			t.Fatalf("login: %d %s", code, body)
		}
		code, body, resp := get(t, c, f.srv.URL+"/sso/logout")
		if code != http.StatusOK || body != "signed out" || resp.Request.URL.Path != "/bye" {
			t.Fatalf("logout ended at %s: %d %s", resp.Request.URL, code, body)
		}
		if _, _, _, logouts := f.idp.stats(); len(logouts) != 1 || logouts[0] != f.srv.URL+"/bye" {
			t.Fatalf("IdP logouts %v", logouts)
		}
		if code, _ := f.me(c); code != http.StatusUnauthorized {
			t.Fatalf("after logout: %d", code)
		}
		var n int
		if err := f.db.QueryRow(context.Background(), `SELECT COUNT(*) FROM sso_sessions`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("%d sessions after logout", n)
		}
		// logout without a session just goes to the post-logout page
		code, _, resp = get(t, f.browser(), f.srv.URL+"/sso/logout")
		if code != http.StatusOK || resp.Request.URL.Path != "/bye" {
			t.Fatalf("anonymous logout: %d %s", code, resp.Request.URL)
		}
	})
}

// A navigation from another site to /sso/logout does not end the session
// (logout CSRF): it asks to confirm with a POST, which ends it.
func TestLogoutCrossSite(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, f *fixture) {
		c := f.browser()
		if code, body := f.login(c, "alice"); code != http.StatusOK {
			t.Fatalf("login: %d %s", code, body)
		}
		req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/sso/logout", nil)
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), `method="post" action="/sso/logout"`) {
			t.Fatalf("cross-site logout: %d %s", resp.StatusCode, page)
		}
		if code, _ := f.me(c); code != http.StatusOK {
			t.Fatalf("a cross-site GET ended the session: %d", code)
		}
		resp, err = c.Post(f.srv.URL+"/sso/logout", "application/x-www-form-urlencoded", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/bye" || resp.Request.Method != http.MethodGet {
			t.Fatalf("confirmed logout ended at %s %s: %d", resp.Request.Method, resp.Request.URL, resp.StatusCode)
		}
		if code, _ := f.me(c); code != http.StatusUnauthorized {
			t.Fatalf("after the confirmed logout: %d", code)
		}
	})
}

func TestCallbackRejections(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, f *fixture) {
		noFollow := f.browser()
		noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		f.idp.signInAs("alice")
		// start a login, but stop at the IdP's redirect back
		_, _, resp := get(t, noFollow, f.srv.URL+"/sso/login?tenant="+tenantID)
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("login: %d", resp.StatusCode)
		}
		for _, ck := range resp.Cookies() {
			if ck.Name == loginCookie && (!ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode) {
				t.Fatalf("pre-login cookie attributes: %+v", ck)
			}
		}
		authz, _ := url.Parse(resp.Header.Get("Location"))
		q := authz.Query()
		if authz.Path != "/api/v1/oauth2/authorize" || q.Get("client_id") != clientID || q.Get("response_type") != "code" ||
			q.Get("redirect_uri") != f.srv.URL+"/sso/callback" || q.Get("state") == "" || q.Get("scope") != "get_user_info" {
			t.Fatalf("authorize URL %s", authz)
		}
		_, _, resp = get(t, noFollow, authz.String())
		back, _ := url.Parse(resp.Header.Get("Location"))
		// a forged state is refused
		forged := *back
		fq := forged.Query()
		fq.Set("state", "forged")
		forged.RawQuery = fq.Encode()
		if code, body, _ := get(t, noFollow, forged.String()); code != http.StatusBadRequest || !strings.Contains(body, "state") {
			t.Fatalf("forged state: %d %s", code, body)
		}
		// the pre-login was consumed: the genuine answer now finds no login in progress
		if code, body, _ := get(t, noFollow, back.String()); code != http.StatusBadRequest || !strings.Contains(body, "expired") {
			t.Fatalf("replayed callback: %d %s", code, body)
		}
		// a callback in another browser (no pre-login cookie) is refused
		if code, _, _ := get(t, f.browser(), back.String()); code != http.StatusBadRequest {
			t.Fatalf("callback without pre-login: %d", code)
		}
		// a login left pending past its lifetime is refused
		_, _, resp = get(t, noFollow, f.srv.URL+"/sso/login?tenant="+tenantID)
		authz, _ = url.Parse(resp.Header.Get("Location"))
		_, _, resp = get(t, noFollow, authz.String())
		back, _ = url.Parse(resp.Header.Get("Location"))
		f.clk.Advance(11 * time.Minute)
		if code, body, _ := get(t, noFollow, back.String()); code != http.StatusBadRequest || !strings.Contains(body, "expired") {
			t.Fatalf("stale login: %d %s", code, body)
		}
	})
}

// TestUnsolicitedLogin: KooGallery's unified login page, the documented
// sign-in (joint-kit.md §7.1), redirects to the login address with code and
// tenant only; by default such a callback signs in (README policy: a real
// request never fails on our side), and RequireState refuses it.
func TestUnsolicitedLogin(t *testing.T) {
	unsolicited := func(t *testing.T, f *fixture) (int, string) {
		f.idp.signInAs("alice")
		noFollow := f.browser()
		noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		_, _, resp := get(t, noFollow, f.idp.srv.URL+"/api/v1/oauth2/authorize?response_type=code&client_id="+clientID+"&redirect_uri="+url.QueryEscape(f.srv.URL+"/sso/callback"))
		back, _ := url.Parse(resp.Header.Get("Location"))
		bq := back.Query()
		bq.Del("state")
		back.RawQuery = bq.Encode()
		code, body, _ := get(t, f.browser(), back.String())
		return code, body
	}
	forEachBackend(t, nil, func(t *testing.T, f *fixture) {
		if code, body := unsolicited(t, f); code != http.StatusOK || !strings.Contains(body, `"userName":"alice"`) {
			t.Fatalf("unsolicited login: %d %s", code, body)
		}
	})
	forEachBackend(t, func(c *Config) { c.RequireState = true }, func(t *testing.T, f *fixture) {
		if code, body := unsolicited(t, f); code != http.StatusBadRequest || strings.Contains(body, `"userName":"alice"`) {
			t.Fatalf("unsolicited login with RequireState: %d %s", code, body)
		}
	})
}

func TestSecureCookieAttributes(t *testing.T) {
	f := &Service{cfg: Config{}, clk: clock.NewVirtual(time.Unix(1e9, 0))}
	rec := httptest.NewRecorder()
	f.setCookie(rec, "souk_session", "v", "/", time.Unix(1e9, 0).Add(time.Hour))
	ck := rec.Result().Cookies()[0]
	if !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.MaxAge != 3600 {
		t.Fatalf("cookie %+v", ck)
	}
}

// The cookies are Secure when the public URL is https, and not when it is
// http (a browser would drop them, and the login could never complete).
func TestCookiesSecureFollowsBaseURL(t *testing.T) {
	f := newFixture(t, dbtest.Backends()[0], func(c *Config) { c.InsecureCookies = false })
	for _, c := range []struct {
		base   string
		secure bool
	}{{"https://merchant.example.com", true}, {"http://devbox.lan:8080", false}} {
		svc, err := New(Config{BaseURL: c.base, IdentityKeys: [][]byte{identityKey}}, Deps{DB: f.db, Directory: f.kit, Clock: f.clk})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		svc.setCookie(rec, "souk_session", "v", "/", f.clk.Now().Add(time.Hour))
		if ck := rec.Result().Cookies()[0]; ck.Secure != c.secure {
			t.Errorf("%s: cookie Secure = %v, want %v", c.base, ck.Secure, c.secure)
		}
	}
}

func TestSafeReturnTo(t *testing.T) {
	for in, want := range map[string]string{
		"/app/x?y=1":          "/app/x?y=1",
		"//evil.example.com":  "",
		"/\\evil.example.com": "",
		"https://evil.com/":   "",
		"relative":            "",
		"/a\r\nSet-Cookie: x": "",
	} {
		if got := safeReturnTo(in); got != want {
			t.Errorf("safeReturnTo(%q) = %q, want %q", in, got, want)
		}
	}
}

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestIdentityKeyRotation: rotating the identity key (SOUK_IDENTITY_KEY=new,old)
// keeps the sessions: tokens sealed under the old key are still opened, and
// new ones are sealed under the new key.
func TestIdentityKeyRotation(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, f *fixture) {
		c := f.browser()
		if code, body := f.login(c, "alice"); code != http.StatusOK {
			t.Fatalf("login: %d %s", code, body)
		}
		newKey := []byte("a-new-identity-key-0123456789abcdef")
		cfg := f.cfg
		cfg.IdentityKeys = [][]byte{newKey, identityKey}
		svc, err := New(cfg, Deps{DB: f.db, Directory: f.kit, Clock: f.clk})
		if err != nil {
			t.Fatal(err)
		}
		f.serve(svc)
		f.clk.Advance(2 * time.Hour) // the access token is refreshed with the sealed refresh token
		if code, _ := f.me(c); code != http.StatusOK {
			t.Fatalf("after rotating the identity key: %d, want the session kept", code)
		}
		if _, r, _, _ := f.idp.stats(); r != 1 {
			t.Fatalf("refreshes at the IdP %d, want 1", r)
		}
		// the refreshed tokens are sealed under the new key alone
		cfg.IdentityKeys = [][]byte{newKey}
		if svc, err = New(cfg, Deps{DB: f.db, Directory: f.kit, Clock: f.clk}); err != nil {
			t.Fatal(err)
		}
		f.serve(svc)
		f.clk.Advance(2 * time.Hour)
		if code, _ := f.me(c); code != http.StatusOK {
			t.Fatalf("after dropping the old key: %d", code)
		}
	})
}

// TestPKCE: the login sends an S256 code_challenge and exchanges the code
// with its verifier, kept with the login in the database, so the callback
// completes on another replica than the one the login started on (every
// request of this test goes to the next of two services sharing the DB).
func TestPKCE(t *testing.T) {
	for _, disable := range []bool{false, true} {
		forEachBackend(t, func(c *Config) { c.DisablePKCE = disable }, func(t *testing.T, f *fixture) {
			other, err := New(f.cfg, Deps{DB: f.db, Directory: f.kit, Clock: f.clk})
			if err != nil {
				t.Fatal(err)
			}
			replicas := []*Service{f.sso, other}
			var next atomic.Int64
			mux := http.NewServeMux()
			mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
				replicas[next.Add(1)%2].Handler().ServeHTTP(w, r)
			})
			app := http.NewServeMux()
			app.HandleFunc("/app/", f.app)
			mux.Handle("/app/", app)
			f.handler.Store(mux)
			c := f.browser()
			if code, body := f.login(c, "alice"); code != http.StatusOK {
				t.Fatalf("login across replicas: %d %s", code, body)
			}
			if n := next.Load(); n != 2 {
				t.Fatalf("%d requests reached the replicas, want 2 (login, callback)", n)
			}
			want := 1
			if disable {
				want = 0
			}
			if got := f.idp.pkceExchanges(); got != want {
				t.Errorf("PKCE exchanges %d, want %d", got, want)
			}
		})
	}
}

// TestPageHeaders: the pages souk shows (errors, the sign-out confirmation)
// cannot be framed, sniffed or cached.
func TestPageHeaders(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, f *fixture) {
		for name, req := range map[string]func() *http.Request{
			"error page": func() *http.Request {
				r, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/sso/callback?state=x&code=y", nil)
				return r
			},
			"missing tenant": func() *http.Request {
				r, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/sso/login", nil)
				return r
			},
			"sign-out confirmation": func() *http.Request {
				r, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/sso/logout", nil)
				r.Header.Set("Sec-Fetch-Site", "cross-site")
				return r
			},
		} {
			resp, err := f.browser().Do(req())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			h := resp.Header
			if !strings.HasPrefix(h.Get("Content-Type"), "text/html") || h.Get("X-Frame-Options") != "DENY" ||
				!strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") || h.Get("X-Content-Type-Options") != "nosniff" ||
				h.Get("Cache-Control") != "no-store" {
				t.Errorf("%s: %d headers %v", name, resp.StatusCode, h)
			}
		}
	})
}

// A tenant id with NUL (%00) or over 64 characters, at the login or the
// callback, is a 400 page, not an internal error (PostgreSQL refuses NUL).
func TestLoginBadTenantID(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, f *fixture) {
		for _, u := range []string{"/sso/login?tenant=t%00x", "/sso/login?tenant=" + strings.Repeat("t", 65)} {
			if code, body, _ := get(t, f.browser(), f.srv.URL+u); code != http.StatusBadRequest {
				t.Errorf("%s: %d %s", u, code, body)
			}
		}
	})
}
