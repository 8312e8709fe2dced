package sso

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/merchant/auditnote"
	"github.com/soukhq/souk/merchant/kit"
)

// loginError is a failed login or session, shown as a page (or JSON) with
// its status. Msg is safe to show; Err (not shown) goes to the log.
type loginError struct {
	Status int
	Title  string
	Msg    string
	Err    error
}

func (e *loginError) Error() string {
	if e.Err != nil {
		return e.Title + ": " + e.Err.Error()
	}
	return e.Title
}

func (e *loginError) Unwrap() error { return e.Err }

func forbidden(title, msg string) *loginError {
	return &loginError{Status: http.StatusForbidden, Title: title, Msg: msg}
}

// errNoSession is an absent, expired or ended session.
var errNoSession = &loginError{Status: http.StatusUnauthorized, Title: "Not signed in", Msg: "Sign in through your organization's KooGallery portal."}

func (s *Service) fail(w http.ResponseWriter, r *http.Request, err error) {
	var le *loginError
	if !errors.As(err, &le) {
		le = &loginError{Status: http.StatusInternalServerError, Title: "Sign-in failed", Msg: "An internal error occurred. Please try again later.", Err: err}
	}
	auditnote.Add(r.Context(), "refused", le.Title)
	if le.Status >= 500 {
		s.log.Error("sso", "path", r.URL.Path, "status", le.Status, "err", err)
	} else {
		s.log.Info("sso refused", "path", r.URL.Path, "status", le.Status, "reason", le.Error())
	}
	w.Header().Set("Cache-Control", "no-store")
	if strings.Contains(r.Header.Get("Accept"), "application/json") || r.URL.Path == "/sso/me" || r.URL.Path == "/sso/identity" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(le.Status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": le.Title, "message": le.Msg})
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	pageHeaders(w.Header())
	w.WriteHeader(le.Status)
	fmt.Fprintf(w, `<!doctype html><html><head><meta charset="utf-8"><title>%s</title></head><body><h1>%s</h1><p>%s</p></body></html>`,
		html.EscapeString(le.Title), html.EscapeString(le.Title), html.EscapeString(le.Msg))
}

// pageHeaders are those of every page souk shows: no framing (clickjacking),
// no sniffing, no script, nothing sent elsewhere; forms post to souk only.
func pageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// tenantApp resolves the tenant and the app credential a login uses.
func (s *Service) tenantApp(ctx context.Context, tenantID string) (*kit.Tenant, *kit.App, error) {
	if len(tenantID) > 64 || strings.IndexByte(tenantID, 0) >= 0 { // no tenant id has one (%00), nor so many characters
		return nil, nil, &loginError{Status: http.StatusBadRequest, Title: "Unknown organization", Msg: "The sign-in link names no valid organization (tenant)."}
	}
	t, err := s.dir.LookupTenant(ctx, tenantID)
	if errors.Is(err, kit.ErrNotFound) || (err == nil && t.Deleted) {
		return nil, nil, forbidden("Organization not connected", "Your organization has not bound this application, or it was unbound. Ask your administrator to bind it in KooGallery.")
	}
	if err != nil {
		return nil, nil, err
	}
	apps, err := s.dir.Apps(ctx, t.TestFlag, t.TenantID)
	if err != nil {
		return nil, nil, err
	}
	var live []kit.App
	for _, a := range apps {
		if !a.Deleted && (s.cfg.AppID == "" || a.AppID == s.cfg.AppID) {
			live = append(live, a)
		}
	}
	switch len(live) {
	case 0:
		return nil, nil, forbidden("Application not connected", "No application credential has been synchronized for your organization yet. Ask your administrator to bind the application again.")
	case 1:
		return t, &live[0], nil
	}
	return nil, nil, fmt.Errorf("sso: tenant %q has %d app credentials; set the SSO app id to pick one", tenantID, len(live))
}

// tenantOAuth resolves tenantID's app (tenantApp) and its OAuth client
// configuration (oauthConfig).
func (s *Service) tenantOAuth(ctx context.Context, tenantID string) (*kit.Tenant, *kit.App, *oauth2.Config, error) {
	t, a, err := s.tenantApp(ctx, tenantID)
	if err != nil {
		return nil, nil, nil, err
	}
	conf, err := s.oauthConfig(ctx, t, a)
	if err != nil {
		return nil, nil, nil, err
	}
	return t, a, conf, nil
}

func (s *Service) oauthConfig(ctx context.Context, t *kit.Tenant, a *kit.App) (*oauth2.Config, error) {
	clientID, secret, err := s.dir.ClientCredentials(ctx, t.TestFlag, t.TenantID, a.AppID)
	if err != nil {
		return nil, err
	}
	base := strings.TrimRight(t.DomainName, "/")
	return &oauth2.Config{
		ClientID:     clientID,
		ClientSecret: secret,
		Endpoint: oauth2.Endpoint{
			AuthURL:   base + "/api/v1/oauth2/authorize",
			TokenURL:  base + "/api/v1/oauth2/token",
			AuthStyle: oauth2.AuthStyleInParams, // client_id/client_secret as form parameters (joint-kit.md §7.2)
		},
		RedirectURL: s.cfg.RedirectURL,
		Scopes:      []string{s.cfg.Scope},
	}, nil
}

func (s *Service) oauthCtx(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, s.httpc)
}

// GET /sso/login?tenant=…[&return_to=/path]
func (s *Service) login(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	tenantID := r.URL.Query().Get("tenant")
	auditnote.Add(ctx, "tenant", tenantID)
	if tenantID == "" || len(tenantID) > 64 {
		s.fail(w, r, &loginError{Status: http.StatusBadRequest, Title: "Missing organization", Msg: "The sign-in link must name your organization (tenant)."})
		return
	}
	_, _, conf, err := s.tenantOAuth(ctx, tenantID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	id, err := s.randomToken()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	state, err := s.randomToken()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// PKCE: the verifier stays with the login (sealed), in the database, so
	// that the callback may reach another replica
	var verifier, verifierSealed string
	var opts []oauth2.AuthCodeOption
	if !s.cfg.DisablePKCE {
		if verifier, err = s.randomToken(); err != nil { // 43 base64url characters (RFC 7636 §4.1)
			s.fail(w, r, err)
			return
		}
		if verifierSealed, err = s.seal(verifier, hashToken(id)); err != nil {
			s.fail(w, r, err)
			return
		}
		opts = append(opts, oauth2.S256ChallengeOption(verifier))
	}
	now := s.clk.Now()
	exp := now.Add(s.cfg.LoginTTL)
	if _, err := s.db.Exec(ctx, `INSERT INTO sso_logins (id_hash, state, tenant_id, return_to, created_at, expires_at, code_verifier) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		hashToken(id), state, tenantID, safeReturnTo(r.URL.Query().Get("return_to")), now.UnixMilli(), exp.UnixMilli(), verifierSealed); err != nil {
		s.fail(w, r, fmt.Errorf("sso: store login: %w", err))
		return
	}
	if _, err := s.db.Exec(ctx, `DELETE FROM sso_logins WHERE expires_at < $1`, now.UnixMilli()); err != nil {
		s.log.Warn("sso: prune logins", "err", err)
	}
	s.setCookie(w, loginCookie, id, "/sso/", exp)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, conf.AuthCodeURL(state, opts...), http.StatusFound)
}

// pendingLogin is a row of sso_logins.
type pendingLogin struct {
	state, tenantID, returnTo string
	verifier                  string // PKCE code_verifier, "" = none
	expiresAt                 time.Time
}

// takeLogin consumes the login bound to the pre-login cookie (single use).
func (s *Service) takeLogin(ctx context.Context, r *http.Request) (*pendingLogin, error) {
	c, err := r.Cookie(loginCookie)
	if err != nil || c.Value == "" {
		return nil, nil
	}
	var p pendingLogin
	var exp int64
	var sealed string
	h := hashToken(c.Value)
	err = s.db.QueryRow(ctx, `DELETE FROM sso_logins WHERE id_hash = $1 RETURNING state, tenant_id, return_to, expires_at, code_verifier`, h).
		Scan(&p.state, &p.tenantID, &p.returnTo, &exp, &sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sso: read login: %w", err)
	}
	if p.verifier, err = s.open(sealed, h); err != nil {
		return nil, err
	}
	p.expiresAt = time.UnixMilli(exp)
	return &p, nil
}

var errLoginExpired = &loginError{Status: http.StatusBadRequest, Title: "Sign-in expired", Msg: "This sign-in attempt is no longer valid. Start again from your organization's portal."}

// userInfo is the tenant IdP's userinfo answer (joint-kit.md §7.3).
type userInfo struct {
	ID               string `json:"id"`
	UserID           string `json:"userId"`
	UserName         string `json:"userName"`
	Name             string `json:"name"`
	Email            string `json:"email"`
	Mobile           string `json:"mobile"`
	Role             string `json:"role"`
	OrganizationCode string `json:"organizationCode"`
	Tenant           string `json:"tenant"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

func (s *Service) fetchUserInfo(ctx context.Context, domain, accessToken string) (*userInfo, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(domain, "/")+"/api/v1/oauth2/userinfo", nil)
	if err != nil {
		return nil, fmt.Errorf("sso: userinfo: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json")
	resp, err := s.httpc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sso: userinfo: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("sso: userinfo: %w", err)
	}
	var ui userInfo
	jerr := json.Unmarshal(body, &ui)
	if resp.StatusCode != http.StatusOK || ui.Error != "" {
		return nil, fmt.Errorf("sso: userinfo: HTTP %d %s", resp.StatusCode, ui.Error)
	}
	if jerr != nil {
		return nil, fmt.Errorf("sso: userinfo: %w", jerr)
	}
	if ui.UserName == "" {
		return nil, errors.New("sso: userinfo has no userName")
	}
	if ui.UserID == "" {
		ui.UserID = ui.ID
	}
	return &ui, nil
}

// checkMember applies the directory at login and on every use of a session:
// only members authSync authorized, not cancelled or deleted, and enabled.
func (s *Service) checkMember(ctx context.Context, t *kit.Tenant, appID, userName string) (*kit.User, error) {
	if t.Deleted {
		return nil, forbidden("Organization not connected", "Your organization has unbound this application.")
	}
	u, err := s.dir.User(ctx, t.TestFlag, t.TenantID, appID, userName)
	if errors.Is(err, kit.ErrNotFound) {
		return nil, forbidden("Not authorized", "Your administrator has not authorized your account to use this application. Ask them to grant you access in KooGallery.")
	}
	if err != nil {
		return nil, err
	}
	switch {
	case u.State == kit.StateCancelled:
		return nil, forbidden("Access withdrawn", "Your authorization for this application was cancelled by your administrator.")
	case u.State != kit.StateAuthorized:
		return nil, forbidden("Not authorized", "Your account is no longer authorized to use this application.")
	case !u.Enabled:
		return nil, forbidden("Account disabled", "Your account has been disabled by your organization's administrator.")
	}
	return u, nil
}

// GET /sso/callback?code=…&state=…&tenant=…
func (s *Service) callback(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w}
	s.serveCallback(rec, r)
	switch {
	case rec.status == http.StatusFound:
		s.logins.WithLabelValues("ok").Inc()
	case rec.status >= 500:
		s.logins.WithLabelValues("failed").Inc()
	default:
		s.logins.WithLabelValues("refused").Inc()
	}
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (s *Service) serveCallback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	pending, err := s.takeLogin(ctx, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.setCookie(w, loginCookie, "", "/sso/", time.Time{})
	now := s.clk.Now()
	tenantID := q.Get("tenant")
	returnTo := ""
	switch {
	case !s.cfg.RequireState && q.Get("state") == "" && tenantID != "":
		// KooGallery's unified login page redirects with code and tenant
		// only (joint-kit.md §7.1); a login started here, if any, is dropped.
	case pending != nil:
		if !now.Before(pending.expiresAt) {
			s.fail(w, r, errLoginExpired)
			return
		}
		if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(pending.state)) != 1 {
			s.fail(w, r, &loginError{Status: http.StatusBadRequest, Title: "Sign-in rejected", Msg: "The sign-in response does not belong to this browser's sign-in attempt (state mismatch). Start again."})
			return
		}
		if tenantID != "" && tenantID != pending.tenantID {
			s.fail(w, r, &loginError{Status: http.StatusBadRequest, Title: "Sign-in rejected", Msg: "The sign-in response names another organization than the one you started with."})
			return
		}
		tenantID, returnTo = pending.tenantID, pending.returnTo
	default:
		s.fail(w, r, errLoginExpired)
		return
	}
	if e := q.Get("error"); e != "" {
		s.fail(w, r, &loginError{Status: http.StatusForbidden, Title: "Sign-in cancelled", Msg: "Your organization's sign-in did not complete (" + truncate(e, 64) + ")."})
		return
	}
	code := q.Get("code")
	if code == "" {
		s.fail(w, r, &loginError{Status: http.StatusBadRequest, Title: "Sign-in rejected", Msg: "The sign-in response carries no authorization code."})
		return
	}
	auditnote.Add(ctx, "tenant", tenantID)
	t, a, conf, err := s.tenantOAuth(ctx, tenantID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var opts []oauth2.AuthCodeOption
	if pending != nil && pending.verifier != "" {
		opts = append(opts, oauth2.VerifierOption(pending.verifier))
	}
	tok, err := conf.Exchange(s.oauthCtx(ctx), code, opts...)
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			s.fail(w, r, &loginError{Status: http.StatusBadRequest, Title: "Sign-in expired", Msg: "The authorization code was rejected or already used. Start again.", Err: err})
			return
		}
		s.fail(w, r, &loginError{Status: http.StatusBadGateway, Title: "Identity provider unavailable", Msg: "Your organization's identity provider could not complete the sign-in. Try again later.", Err: err})
		return
	}
	ui, err := s.fetchUserInfo(ctx, t.DomainName, tok.AccessToken)
	if err != nil {
		s.fail(w, r, &loginError{Status: http.StatusBadGateway, Title: "Identity provider unavailable", Msg: "Your organization's identity provider did not return your profile. Try again later.", Err: err})
		return
	}
	if ui.Tenant != "" && ui.Tenant != t.TenantID {
		s.fail(w, r, forbidden("Sign-in rejected", "The identity provider signed you in to another organization."))
		return
	}
	auditnote.Add(ctx, "user", ui.UserName)
	u, err := s.checkMember(ctx, t, a.AppID, ui.UserName)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sessID, err := s.startSession(ctx, r, t, a.AppID, ui, tok, now)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.setCookie(w, s.cfg.CookieName, sessID, "/", now.Add(s.cfg.SessionTTL))
	s.log.Info("sso login", "tenant", t.TenantID, "user", u.UserName, "test", t.TestFlag)
	ident, err := s.identityFor(ctx, t, u, ui, hashToken(sessID), now)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	target, err := s.appTarget(returnTo, ident)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, target, http.StatusFound)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// appTarget is AppURL (or the local path the login started from, resolved
// against it) with the signed identity appended.
func (s *Service) appTarget(returnTo, ident string) (string, error) {
	u, err := url.Parse(s.cfg.AppURL)
	if err != nil {
		return "", fmt.Errorf("sso: AppURL: %w", err)
	}
	if returnTo != "" {
		ref, err := url.Parse(returnTo)
		if err == nil {
			u = u.ResolveReference(ref)
		}
	}
	q := u.Query()
	q.Set(IdentityParam, ident)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func (s *Service) startSession(ctx context.Context, r *http.Request, t *kit.Tenant, appID string, ui *userInfo, tok *oauth2.Token, now time.Time) (string, error) {
	id, err := s.randomToken()
	if err != nil {
		return "", err
	}
	h := hashToken(id)
	access, err := s.seal(tok.AccessToken, h)
	if err != nil {
		return "", err
	}
	refresh, err := s.seal(tok.RefreshToken, h)
	if err != nil {
		return "", err
	}
	accessExp, refreshExp := tokenExpiries(tok, now)
	// a new id at every login; the session the browser had before ends
	if old, err := r.Cookie(s.cfg.CookieName); err == nil && old.Value != "" {
		if _, err := s.db.Exec(ctx, `DELETE FROM sso_sessions WHERE id_hash = $1`, hashToken(old.Value)); err != nil {
			return "", fmt.Errorf("sso: end previous session: %w", err)
		}
	}
	if _, err := s.db.Exec(ctx, `INSERT INTO sso_sessions (id_hash, tenant_id, test_flag, app_id, user_name, user_id, access_token, refresh_token,
		access_expires_at, refresh_expires_at, refreshes, created_at, last_seen_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11, $11, $12)`,
		h, t.TenantID, db.Bool(t.TestFlag), appID, ui.UserName, ui.UserID, access, refresh,
		accessExp.UnixMilli(), refreshExp.UnixMilli(), now.UnixMilli(), now.Add(s.cfg.SessionTTL).UnixMilli()); err != nil {
		return "", fmt.Errorf("sso: store session: %w", err)
	}
	if _, err := s.db.Exec(ctx, `DELETE FROM sso_sessions WHERE expires_at < $1`, now.UnixMilli()); err != nil {
		s.log.Warn("sso: prune sessions", "err", err)
	}
	return id, nil
}

// tokenExpiries computes the access and refresh expiries from the injected
// clock: expires_in (default 2 h) and the documented 30-day refresh lifetime.
func tokenExpiries(tok *oauth2.Token, now time.Time) (access, refresh time.Time) {
	in := time.Duration(tok.ExpiresIn) * time.Second
	if in <= 0 {
		in = DefaultAccessTTL
	}
	access = now.Add(in)
	if tok.RefreshToken != "" {
		refresh = now.Add(DefaultRefreshTTL)
	} else {
		refresh = access // nothing to refresh with
	}
	return access, refresh
}
