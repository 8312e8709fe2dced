package sso

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
)

// fakeIdP is a tenant identity provider as joint-kit.md §7 describes it:
// authorize (302 to redirect_uri with code, state and tenant), token
// (authorization_code and refresh_token grants, client credentials as form
// parameters, 2 h access tokens, rotating refresh tokens), userinfo (Bearer)
// and logout (302 to redirect_url). Its time is the test's virtual clock.
type fakeIdP struct {
	t        *testing.T
	clk      *clock.Virtual
	srv      *httptest.Server
	tenant   string
	clientID string
	secret   string

	mu           sync.Mutex
	loginAs      string // userName the next authorize signs in
	users        map[string]idpUser
	codes        map[string]codeGrant
	access       map[string]tokenGrant
	refresh      map[string]string // refresh token → userName
	used         map[string]string // rotated-away refresh token → userName
	reuses       int
	refreshCalls int
	exchanges    int
	logouts      []string // redirect_url of each logout
	badAuthStyle int      // token calls with HTTP Basic instead of form parameters
	pkce         int      // codes exchanged with a verified PKCE code_verifier
}

type idpUser struct {
	UserName, Name, Role, Org string
}

type codeGrant struct {
	user, redirectURI string
	challenge         string // PKCE S256 code_challenge, "" = none
	expires           time.Time
}

type tokenGrant struct {
	user    string
	expires time.Time
}

func newFakeIdP(t *testing.T, clk *clock.Virtual, tenant, clientID, secret string) *fakeIdP {
	f := &fakeIdP{t: t, clk: clk, tenant: tenant, clientID: clientID, secret: secret,
		users: map[string]idpUser{}, codes: map[string]codeGrant{}, access: map[string]tokenGrant{}, refresh: map[string]string{}, used: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/oauth2/authorize", f.authorize)
	mux.HandleFunc("POST /api/v1/oauth2/token", f.token)
	mux.HandleFunc("GET /api/v1/oauth2/userinfo", f.userinfo)
	mux.HandleFunc("GET /api/v1/logout", f.logout)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func randHex() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (f *fakeIdP) addUser(u idpUser) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.users[u.UserName] = u
}

func (f *fakeIdP) signInAs(userName string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loginAs = userName
}

func (f *fakeIdP) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("response_type") != "code" || q.Get("client_id") != f.clientID || q.Get("redirect_uri") == "" {
		http.Error(w, "bad authorize request", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	code := randHex()
	if q.Get("code_challenge") != "" && q.Get("code_challenge_method") != "S256" {
		f.mu.Unlock()
		http.Error(w, "bad code_challenge_method", http.StatusBadRequest)
		return
	}
	f.codes[code] = codeGrant{user: f.loginAs, redirectURI: q.Get("redirect_uri"), challenge: q.Get("code_challenge"), expires: f.clk.Now().Add(5 * time.Minute)}
	f.mu.Unlock()
	u, _ := url.Parse(q.Get("redirect_uri"))
	rq := u.Query()
	rq.Set("code", code)
	rq.Set("state", q.Get("state"))
	rq.Set("tenant", f.tenant)
	u.RawQuery = rq.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func oauthErr(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func (f *fakeIdP) issue(w http.ResponseWriter, user string) {
	access, refresh := randHex(), randHex()
	f.access[access] = tokenGrant{user: user, expires: f.clk.Now().Add(2 * time.Hour)}
	f.refresh[refresh] = user
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": access, "token_type": "Bearer", "expires_in": 7200,
		"scope": "get_user_info", "refresh_token": refresh})
}

func (f *fakeIdP) token(w http.ResponseWriter, r *http.Request) {
	if _, _, basic := r.BasicAuth(); basic {
		f.mu.Lock()
		f.badAuthStyle++
		f.mu.Unlock()
	}
	if err := r.ParseForm(); err != nil || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		oauthErr(w, http.StatusBadRequest, "invalid_request", "form expected")
		return
	}
	if r.PostForm.Get("client_id") != f.clientID || r.PostForm.Get("client_secret") != f.secret {
		oauthErr(w, http.StatusUnauthorized, "invalid_client", "Bad client credentials")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		g, ok := f.codes[r.PostForm.Get("code")]
		delete(f.codes, r.PostForm.Get("code")) // single use
		if !ok || !f.clk.Now().Before(g.expires) || r.PostForm.Get("redirect_uri") != g.redirectURI {
			oauthErr(w, http.StatusBadRequest, "invalid_grant", "Invalid authorization code")
			return
		}
		if g.challenge != "" || r.PostForm.Get("code_verifier") != "" {
			sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
			if base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
				oauthErr(w, http.StatusBadRequest, "invalid_grant", "Invalid authorization code")
				return
			}
			f.pkce++
		}
		f.exchanges++
		f.issue(w, g.user)
	case "refresh_token":
		rt := r.PostForm.Get("refresh_token")
		user, ok := f.refresh[rt]
		delete(f.refresh, rt) // rotated
		if !ok && f.used[rt] != "" {
			// reuse of a rotated-away token revokes the whole family (RFC 9700 §4.14)
			f.reuses++
			for k, u := range f.refresh {
				if u == f.used[rt] {
					delete(f.refresh, k)
				}
			}
		}
		if ok {
			f.used[rt] = user
		}
		if !ok {
			oauthErr(w, http.StatusBadRequest, "invalid_grant", "Invalid refresh token")
			return
		}
		f.refreshCalls++
		f.issue(w, user)
	default:
		oauthErr(w, http.StatusBadRequest, "unsupported_grant_type", "")
	}
}

func (f *fakeIdP) userinfo(w http.ResponseWriter, r *http.Request) {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	g, ok := f.access[tok]
	u := f.users[g.user]
	f.mu.Unlock()
	if !ok || !f.clk.Now().Before(g.expires) {
		oauthErr(w, http.StatusUnauthorized, "unauthorized", "Full authentication is required to access this resource")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"id": "id-" + u.UserName, "userId": "uid-" + u.UserName, "userName": u.UserName,
		"name": u.Name, "role": u.Role, "organizationCode": u.Org, "tenant": f.tenant, "email": u.UserName + "@example.com", "mobile": ""})
}

func (f *fakeIdP) logout(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.logouts = append(f.logouts, r.URL.Query().Get("redirect_url"))
	f.mu.Unlock()
	http.Redirect(w, r, r.URL.Query().Get("redirect_url"), http.StatusFound)
}

// revokeRefreshTokens makes every outstanding refresh token invalid.
func (f *fakeIdP) revokeRefreshTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refresh = map[string]string{}
}

func (f *fakeIdP) pkceExchanges() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pkce
}

func (f *fakeIdP) stats() (exchanges, refreshes, badAuth int, logouts []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.exchanges, f.refreshCalls, f.badAuthStyle, append([]string(nil), f.logouts...)
}
