package idp

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/soukhq/souk/db"
)

// ---- authorize ----

func (p *IdP) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	p.noteClient(ctx, q.Get("client_id"))
	client, err := p.dir.Client(ctx, q.Get("client_id"))
	if errors.Is(err, ErrNotFound) || q.Get("client_id") == "" {
		p.errorPage(w, http.StatusBadRequest, "Unknown application", "The client_id is not registered.")
		return
	}
	if err != nil {
		p.internal(w, r, "authorize: client", err)
		return
	}
	redirectURI, ok := resolveRedirect(client, q.Get("redirect_uri"))
	if !ok {
		// Never redirect to an unregistered address (RFC 6749 §4.1.2.1).
		p.errorPage(w, http.StatusBadRequest, "Invalid redirect_uri", "The redirect_uri is not a registered login address of this application.")
		return
	}
	state := q.Get("state")
	if q.Get("response_type") != "code" {
		redirectWith(w, r, redirectURI, url.Values{"error": {"unsupported_response_type"}, "state": optional(state)})
		return
	}
	challenge, ok := pkceChallenge(q)
	if !ok {
		redirectWith(w, r, redirectURI, url.Values{"error": {"invalid_request"},
			"error_description": {"code_challenge must be an S256 challenge (code_challenge_method=S256)"}, "state": optional(state)})
		return
	}
	if !client.Enabled {
		redirectWith(w, r, redirectURI, url.Values{"error": {"access_denied"}, "error_description": {"the application is stopped"}, "state": optional(state)})
		return
	}
	sess, ok, err := p.currentSession(r)
	if err != nil {
		p.internal(w, r, "authorize: session", err)
		return
	}
	if !ok || sess.tenantID != client.TenantID {
		p.loginPage(w, r, http.StatusOK, loginView{TenantCode: client.TenantCode, TenantFixed: true, Continue: r.URL.RequestURI()})
		return
	}
	if _, err := p.dir.UserInfo(ctx, client.ID, sess.memberID); err != nil {
		if errors.Is(err, ErrNotAuthorized) {
			p.errorPage(w, http.StatusForbidden, "Not authorized", "Your account is not authorized to use this application, or it is disabled. Ask your enterprise administrator, or sign out and use another account.")
			return
		}
		p.internal(w, r, "authorize: userinfo", err)
		return
	}
	code, err := p.issueCode(ctx, client.ID, sess, redirectURI, challenge)
	if err != nil {
		p.internal(w, r, "authorize: code", err)
		return
	}
	redirectWith(w, r, redirectURI, url.Values{"code": {code}, "state": optional(state), "tenant": {client.TenantID}})
}

// pkceChallenge reads the PKCE parameters of an authorization request
// (RFC 7636 §4.3): none ("", true), or an S256 challenge (43 base64url
// characters). The plain method is refused: it protects nothing the S256
// one does not, and RFC 9700 §2.1.1 recommends against it.
func pkceChallenge(q url.Values) (string, bool) {
	c, m := q.Get("code_challenge"), q.Get("code_challenge_method")
	if c == "" && m == "" {
		return "", true
	}
	if m != "S256" || len(c) != 43 || !pkceChars(c) {
		return "", false
	}
	return c, true
}

// pkceChars reports whether s is made of the unreserved characters RFC 7636
// allows in a code_verifier (and an S256 challenge uses a subset of).
func pkceChars(s string) bool {
	for _, c := range []byte(s) {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// pkceOK checks a token request's code_verifier against the code's
// challenge: required (43 to 128 characters) when the code has one, and
// refused when it has none (a PKCE downgrade, RFC 9700 §4.8.2).
func pkceOK(challenge, verifier string) bool {
	if challenge == "" {
		return verifier == ""
	}
	if len(verifier) < 43 || len(verifier) > 128 || !pkceChars(verifier) {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) == 1
}

// resolveRedirect returns the redirect URI to use: the requested one if it is
// registered (exact match), or the only registered one if none was requested.
func resolveRedirect(c Client, requested string) (string, bool) {
	if requested == "" {
		if len(c.RedirectURIs) == 1 {
			return c.RedirectURIs[0], true
		}
		return "", false
	}
	if slices.Contains(c.RedirectURIs, requested) {
		return requested, true
	}
	return "", false
}

func optional(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// redirectWith redirects (302) to base with params added to its query.
func redirectWith(w http.ResponseWriter, r *http.Request, base string, params url.Values) {
	u, err := url.Parse(base)
	if err != nil {
		http.Error(w, "bad redirect address", http.StatusInternalServerError)
		return
	}
	q := u.Query()
	for k, vs := range params {
		for _, v := range vs {
			q.Set(k, v)
		}
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// ---- unified login ----

// handleUnified serves the unified login page. With ?appId=… (the documented
// #/portal-login?ind=UNOP&appId=… fragment is turned into a query by the
// page's script) a signed-in member is sent to the app's login address with
// ?code=…&tenant=…; otherwise the login form is shown.
func (p *IdP) handleUnified(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	appID := r.URL.Query().Get("appId")
	sess, ok, err := p.currentSession(r)
	if err != nil {
		p.internal(w, r, "unified: session", err)
		return
	}
	if !ok {
		p.loginPage(w, r, http.StatusOK, loginView{Continue: r.URL.RequestURI(), AppID: appID, Fragment: appID == "" && r.URL.Path == PathUnified})
		return
	}
	p.noteAudit(ctx, "", "", map[string]string{"member": sess.memberID, "tenant": sess.tenantID})
	if appID == "" {
		acc, err := p.dir.AccountByID(ctx, sess.memberID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			p.internal(w, r, "unified: account", err)
			return
		}
		p.render(w, http.StatusOK, "signedin", signedInView{UserName: acc.UserName, Name: acc.Name, Fragment: r.URL.Path == PathUnified})
		return
	}
	client, err := p.dir.ClientForApp(ctx, sess.tenantID, appID)
	if errors.Is(err, ErrNotFound) {
		p.errorPage(w, http.StatusNotFound, "Application not bound", "This application is not bound to your enterprise.")
		return
	}
	if err != nil {
		p.internal(w, r, "unified: client", err)
		return
	}
	if !client.Enabled || len(client.RedirectURIs) == 0 {
		p.errorPage(w, http.StatusForbidden, "Application unavailable", "The application is stopped or has no login address.")
		return
	}
	if _, err := p.dir.UserInfo(ctx, client.ID, sess.memberID); err != nil {
		if errors.Is(err, ErrNotAuthorized) {
			p.errorPage(w, http.StatusForbidden, "Not authorized", "Your account is not authorized to use this application, or it is disabled.")
			return
		}
		p.internal(w, r, "unified: userinfo", err)
		return
	}
	target := client.RedirectURIs[0]
	code, err := p.issueCode(ctx, client.ID, sess, target, "")
	if err != nil {
		p.internal(w, r, "unified: code", err)
		return
	}
	redirectWith(w, r, target, url.Values{"code": {code}, "tenant": {client.TenantID}})
}

// handleLogin checks the login form and starts an IdP session.
func (p *IdP) handleLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBodyBytes)
	if err := r.ParseForm(); err != nil {
		p.errorPage(w, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return
	}
	if !p.csrfOK(r) {
		p.errorPage(w, http.StatusForbidden, "Form expired", "The login form expired or was not sent by this site. Go back and try again.")
		return
	}
	cont := safeContinue(r.PostForm.Get("continue"))
	view := loginView{
		Continue:    cont,
		TenantCode:  r.PostForm.Get("tenant"),
		TenantFixed: r.PostForm.Get("tenant_fixed") == "1",
		UserName:    r.PostForm.Get("username"),
		AppID:       r.PostForm.Get("appId"),
	}
	password := r.PostForm.Get("password")
	fail := func(result, msg string) {
		p.noteAudit(ctx, "", result, nil)
		view.Error = msg
		p.loginPage(w, r, http.StatusUnauthorized, view)
	}
	if view.TenantCode == "" || view.UserName == "" || password == "" {
		fail("missing_field", "Enter the enterprise, the user name and the password.")
		return
	}
	// Enterprise codes and user names are at most 64 characters (buyer
	// center); longer values are not looked up, counted, logged or shown.
	if len(view.TenantCode) > maxNameLen || len(view.UserName) > maxNameLen || len(view.AppID) > maxNameLen || len(password) > maxPasswordLen {
		p.errorPage(w, http.StatusBadRequest, "Bad request", "A field of the form is too long.")
		return
	}
	p.noteAudit(ctx, "user:"+view.TenantCode+"/"+view.UserName, "", nil)
	// Counted as a failure until it succeeds: see countAttempt.
	if until, err := p.countAttempt(ctx, view.TenantCode, view.UserName); err != nil {
		p.internal(w, r, "login: lockout", err)
		return
	} else if !until.IsZero() {
		p.log.WarnContext(ctx, "idp: login locked", "tenant", view.TenantCode, "user", view.UserName)
		p.noteAudit(ctx, "", "locked", nil)
		view.Error = fmt.Sprintf("Too many failed sign-ins. Try again after %s.", until.UTC().Format("15:04 UTC"))
		p.loginPage(w, r, http.StatusTooManyRequests, view)
		return
	}
	tenantID, err := p.dir.TenantByCode(ctx, view.TenantCode)
	if err != nil && !errors.Is(err, ErrNotFound) {
		p.internal(w, r, "login: tenant", err)
		return
	}
	var acc Account
	if err == nil {
		acc, err = p.dir.Account(ctx, tenantID, view.UserName)
		if err != nil && !errors.Is(err, ErrNotFound) {
			p.internal(w, r, "login: account", err)
			return
		}
	}
	if err != nil || acc.PasswordHash == "" {
		if err := p.checkPassword(ctx, p.dummyHash, password); ctx.Err() != nil { // same cost as a real check
			p.internal(w, r, "login: password check", err)
			return
		}
		p.log.InfoContext(ctx, "idp: login failed", "tenant", view.TenantCode, "user", view.UserName, "reason", "unknown user")
		fail("wrong_credentials", "Wrong enterprise, user name or password.")
		return
	}
	if err := p.checkPassword(ctx, acc.PasswordHash, password); err != nil {
		if ctx.Err() != nil {
			p.internal(w, r, "login: password check", err)
			return
		}
		if !errors.Is(err, ErrPasswordMismatch) {
			p.log.ErrorContext(ctx, "idp: unusable password hash", "member", acc.ID, "err", err)
		}
		p.log.InfoContext(ctx, "idp: login failed", "tenant", view.TenantCode, "user", view.UserName, "reason", "password")
		fail("wrong_credentials", "Wrong enterprise, user name or password.")
		return
	}
	if !acc.Enabled {
		p.log.InfoContext(ctx, "idp: login refused", "tenant", view.TenantCode, "user", view.UserName, "reason", "disabled")
		fail("disabled", "This account is disabled. Ask your enterprise administrator.")
		return
	}
	if err := p.clearFailures(ctx, view.TenantCode, view.UserName); err != nil {
		p.internal(w, r, "login: clear failures", err)
		return
	}
	// the session this browser had (another member, another enterprise) ends
	// server-side, not only by losing its cookie
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
		if err := p.revokeSession(ctx, HashSecret(c.Value)); err != nil {
			p.internal(w, r, "login: end previous session", err)
			return
		}
	}
	tok, err := p.createSession(ctx, acc.TenantID, acc.ID, acc.Epoch)
	if err != nil {
		p.internal(w, r, "login: session", err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: tok, Path: "/", HttpOnly: true, Secure: p.secure,
		SameSite: http.SameSiteLaxMode, MaxAge: int(p.sessionTTL.Seconds())})
	p.log.InfoContext(ctx, "idp: login", "tenant", view.TenantCode, "user", view.UserName)
	p.noteAudit(ctx, "", "ok", map[string]string{"member": acc.ID, "tenant": acc.TenantID})
	if cont == "" {
		cont = PathUnified
	}
	http.Redirect(w, r, cont, http.StatusSeeOther)
}

// safeContinue keeps only local continuation paths of the IdP itself, so the
// login form cannot be turned into an open redirect.
func safeContinue(c string) string {
	if c == "" || strings.HasPrefix(c, "//") || strings.Contains(c, "\\") {
		return ""
	}
	u, err := url.Parse(c)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return ""
	}
	switch u.Path {
	case PathAuthorize, PathUnified, PathPortalLogin:
		return u.RequestURI()
	}
	return ""
}

// csrfOK checks the double-submitted CSRF token, and the Origin header when
// the browser sends one.
func (p *IdP) csrfOK(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	c, err := r.Cookie(csrfCookie)
	if err != nil || len(c.Value) < 32 {
		return false
	}
	f := r.PostForm.Get("csrf")
	return subtle.ConstantTimeCompare([]byte(c.Value), []byte(f)) == 1
}

func (p *IdP) currentSession(r *http.Request) (session, bool, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, false, nil
	}
	s, ok, err := p.lookupSession(r.Context(), c.Value)
	if err != nil || !ok {
		return session{}, false, err
	}
	acc, err := p.dir.AccountByID(r.Context(), s.memberID)
	if errors.Is(err, ErrNotFound) {
		return session{}, false, nil
	}
	if err != nil {
		return session{}, false, err
	}
	if !acc.valid(s.epoch) {
		return session{}, false, nil
	}
	return s, true, nil
}

// ---- logout ----

func (p *IdP) handleLogout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
		if err := p.revokeSession(ctx, HashSecret(c.Value)); err != nil {
			p.internal(w, r, "logout", err)
			return
		}
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true, Secure: p.secure, SameSite: http.SameSiteLaxMode, MaxAge: -1})
	target := PathUnified
	if ru := r.URL.Query().Get("redirect_url"); ru != "" {
		if u, err := url.Parse(ru); err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" {
			ok, err := p.dir.LogoutRedirectAllowed(ctx, u)
			if err != nil {
				p.internal(w, r, "logout: redirect", err)
				return
			}
			if ok {
				target = u.String()
			}
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusFound)
}

// ---- token ----

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

func (p *IdP) handleToken(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBodyBytes)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "The request body is not a form")
		return
	}
	form := r.PostForm
	clientID, secret := form.Get("client_id"), form.Get("client_secret")
	basic := false
	if u, pw, ok := r.BasicAuth(); ok {
		// RFC 6749 §2.3.1; KooGallery documents form parameters, both are accepted.
		u, _ = url.QueryUnescape(u)
		pw, _ = url.QueryUnescape(pw)
		if (clientID != "" && clientID != u) || (secret != "" && secret != pw) {
			oauthError(w, http.StatusBadRequest, "invalid_request", "Conflicting client credentials")
			return
		}
		clientID, secret, basic = u, pw, true
	}
	p.noteClient(ctx, clientID)
	client, ok, err := p.authenticateClient(ctx, clientID, secret)
	if err != nil {
		p.internalJSON(w, r, "token: client", err)
		return
	}
	if !ok {
		if basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="souk"`)
		}
		oauthError(w, http.StatusUnauthorized, "invalid_client", "Bad client credentials")
		return
	}
	switch form.Get("grant_type") {
	case "authorization_code":
		p.grantCode(w, r, client, form)
	case "refresh_token":
		p.grantRefresh(w, r, client, form)
	case "":
		oauthError(w, http.StatusBadRequest, "invalid_request", "Missing grant type")
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant type: "+form.Get("grant_type"))
	}
}

func (p *IdP) authenticateClient(ctx context.Context, id, secret string) (Client, bool, error) {
	if id == "" || secret == "" {
		return Client{}, false, nil
	}
	c, err := p.dir.Client(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return Client{}, false, nil
	}
	if err != nil {
		return Client{}, false, err
	}
	if subtle.ConstantTimeCompare([]byte(HashSecret(secret)), []byte(c.SecretHash)) != 1 {
		return Client{}, false, nil
	}
	return c, true, nil
}

func (p *IdP) grantCode(w http.ResponseWriter, r *http.Request, client Client, form url.Values) {
	ctx := r.Context()
	bad := func() { oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid authorization code") }
	code := form.Get("code")
	if code == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "Missing code")
		return
	}
	c, found, err := p.loadCode(ctx, code)
	if err != nil {
		p.internalJSON(w, r, "token: code", err)
		return
	}
	now := p.clock.Now()
	if !found || c.clientID != client.ID {
		bad()
		return
	}
	if c.usedAt != 0 {
		// A replayed code: revoke what it was exchanged for (RFC 6749 §4.1.2).
		if err := p.revokeGrant(ctx, c.hash); err != nil {
			p.internalJSON(w, r, "token: revoke", err)
			return
		}
		p.log.WarnContext(ctx, "idp: authorization code replayed; its tokens are revoked", "client", client.ID, "member", c.memberID)
		bad()
		return
	}
	if c.expiresAt <= db.Millis(now) {
		bad()
		return
	}
	if ru := form.Get("redirect_uri"); ru != "" && ru != c.redirectURI {
		bad()
		return
	}
	// checked before the code is spent: whoever intercepted it cannot use
	// it, nor burn it for the client that holds the verifier
	if !pkceOK(c.challenge, form.Get("code_verifier")) {
		bad()
		return
	}
	if ok, err := p.memberValid(ctx, c.memberID, c.epoch); err != nil {
		p.internalJSON(w, r, "token: account", err)
		return
	} else if !ok || !client.Enabled {
		bad()
		return
	}
	if _, err := p.dir.UserInfo(ctx, client.ID, c.memberID); err != nil {
		if errors.Is(err, ErrNotAuthorized) {
			bad()
			return
		}
		p.internalJSON(w, r, "token: userinfo", err)
		return
	}
	var tp tokenPair
	replayed := false
	err = p.db.Tx(ctx, func(tx *db.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE idp_codes SET used_at = $1 WHERE code_hash = $2 AND used_at = 0`, db.Millis(now), c.hash)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			replayed = true
			return nil
		}
		tp, err = p.insertTokens(ctx, tx, now, client.ID, c.memberID, c.scope, c.hash, c.epoch)
		return err
	})
	if err != nil {
		p.internalJSON(w, r, "token: issue", err)
		return
	}
	if replayed {
		if err := p.revokeGrant(ctx, c.hash); err != nil {
			p.internalJSON(w, r, "token: revoke", err)
			return
		}
		bad()
		return
	}
	p.writeTokens(w, tp, c.scope)
}

func (p *IdP) grantRefresh(w http.ResponseWriter, r *http.Request, client Client, form url.Values) {
	ctx := r.Context()
	bad := func() { oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid refresh token") }
	rt := form.Get("refresh_token")
	if rt == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "Missing refresh_token")
		return
	}
	t, found, err := p.loadToken(ctx, p.db, rt)
	if err != nil {
		p.internalJSON(w, r, "refresh: token", err)
		return
	}
	now := p.clock.Now()
	if !found || t.kind != "refresh" || t.clientID != client.ID || t.expiresAt <= db.Millis(now) {
		bad()
		return
	}
	if t.revokedAt != 0 {
		// A rotated-away refresh token used again: someone holds a copy.
		// Revoke the family (RFC 9700 §4.14.2).
		if err := p.revokeGrant(ctx, t.grantID); err != nil {
			p.internalJSON(w, r, "refresh: revoke", err)
			return
		}
		p.log.WarnContext(ctx, "idp: refresh token reused; its grant is revoked", "client", client.ID, "member", t.memberID)
		bad()
		return
	}
	if ok, err := p.memberValid(ctx, t.memberID, t.epoch); err != nil {
		p.internalJSON(w, r, "refresh: account", err)
		return
	} else if !ok || !client.Enabled {
		bad()
		return
	}
	if _, err := p.dir.UserInfo(ctx, client.ID, t.memberID); err != nil {
		if errors.Is(err, ErrNotAuthorized) {
			bad()
			return
		}
		p.internalJSON(w, r, "refresh: userinfo", err)
		return
	}
	var tp tokenPair
	reused := false
	err = p.db.Tx(ctx, func(tx *db.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE idp_tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at = 0`, db.Millis(now), t.hash)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			reused = true
			return nil
		}
		tp, err = p.insertTokens(ctx, tx, now, client.ID, t.memberID, t.scope, t.grantID, t.epoch)
		return err
	})
	if err != nil {
		p.internalJSON(w, r, "refresh: issue", err)
		return
	}
	if reused {
		if err := p.revokeGrant(ctx, t.grantID); err != nil {
			p.internalJSON(w, r, "refresh: revoke", err)
			return
		}
		bad()
		return
	}
	p.writeTokens(w, tp, t.scope)
}

func (p *IdP) writeTokens(w http.ResponseWriter, tp tokenPair, scope string) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken: tp.access, TokenType: "Bearer", ExpiresIn: int64(p.accessTTL.Seconds()),
		Scope: scope, RefreshToken: tp.refresh,
	})
}

// ---- userinfo ----

func (p *IdP) handleUserInfo(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	unauthorized := func() {
		w.Header().Set("WWW-Authenticate", `Bearer realm="souk", error="invalid_token"`)
		oauthError(w, http.StatusUnauthorized, "unauthorized", "Full authentication is required to access this resource")
	}
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		unauthorized()
		return
	}
	t, found, err := p.loadToken(ctx, p.db, strings.TrimSpace(tok))
	if err != nil {
		p.internalJSON(w, r, "userinfo: token", err)
		return
	}
	if !found || t.kind != "access" || t.revokedAt != 0 || t.expiresAt <= db.Millis(p.clock.Now()) {
		unauthorized()
		return
	}
	if ok, err := p.memberValid(ctx, t.memberID, t.epoch); err != nil {
		p.internalJSON(w, r, "userinfo: account", err)
		return
	} else if !ok {
		unauthorized()
		return
	}
	p.noteClient(ctx, t.clientID)
	p.noteAudit(ctx, "", "", map[string]string{"member": t.memberID})
	info, err := p.dir.UserInfo(ctx, t.clientID, t.memberID)
	if errors.Is(err, ErrNotAuthorized) || errors.Is(err, ErrNotFound) {
		unauthorized()
		return
	}
	if err != nil {
		p.internalJSON(w, r, "userinfo", err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, info)
}

// ---- helpers ----

// memberValid reports whether the member exists, is enabled and is still in
// the epoch something was issued under.
func (p *IdP) memberValid(ctx context.Context, memberID string, epoch int64) (bool, error) {
	acc, err := p.dir.AccountByID(ctx, memberID)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return acc.valid(epoch), nil
}

// noteAudit tells Config.Note, when set, what the request's audit record
// should say.
func (p *IdP) noteAudit(ctx context.Context, actor, result string, targets map[string]string) {
	if p.note != nil {
		p.note(ctx, actor, result, targets)
	}
}

// noteClient names the OAuth client a request comes from (or is for) as its
// audit record's actor; an id too long for any client is cut.
func (p *IdP) noteClient(ctx context.Context, id string) {
	if id == "" {
		return
	}
	if len(id) > maxNameLen {
		id = id[:maxNameLen]
	}
	p.noteAudit(ctx, "client:"+id, "", map[string]string{"client": id})
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (p *IdP) internal(w http.ResponseWriter, r *http.Request, what string, err error) {
	p.log.ErrorContext(r.Context(), "idp: "+what, "err", err)
	p.errorPage(w, http.StatusInternalServerError, "Something went wrong", "The identity provider could not complete the request. Try again later.")
}

func (p *IdP) internalJSON(w http.ResponseWriter, r *http.Request, what string, err error) {
	p.log.ErrorContext(r.Context(), "idp: "+what, "err", err)
	oauthError(w, http.StatusInternalServerError, "server_error", "Internal error")
}
