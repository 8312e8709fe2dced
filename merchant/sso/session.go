package sso

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/soukhq/souk/merchant/auditnote"
	"github.com/soukhq/souk/merchant/kit"
)

// session is a row of sso_sessions.
type session struct {
	idHash, tenantID            string
	testFlag                    bool
	appID, userName, userID     string
	accessSealed, refreshSealed string
	accessExp, refreshExp       time.Time
	createdAt, lastSeen, expiry time.Time
	refreshes                   int
}

const sessionCols = `id_hash, tenant_id, test_flag, app_id, user_name, user_id, access_token, refresh_token, access_expires_at, refresh_expires_at, refreshes, created_at, last_seen_at, expires_at`

func (s *Service) readSession(ctx context.Context, idHash string) (*session, error) {
	var x session
	var tf int
	var ae, re, c, l, e int64
	err := s.db.QueryRow(ctx, `SELECT `+sessionCols+` FROM sso_sessions WHERE id_hash = $1`, idHash).
		Scan(&x.idHash, &x.tenantID, &tf, &x.appID, &x.userName, &x.userID, &x.accessSealed, &x.refreshSealed, &ae, &re, &x.refreshes, &c, &l, &e)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sso: read session: %w", err)
	}
	x.testFlag = tf == 1
	x.accessExp, x.refreshExp, x.createdAt, x.lastSeen, x.expiry = time.UnixMilli(ae), time.UnixMilli(re), time.UnixMilli(c), time.UnixMilli(l), time.UnixMilli(e)
	return &x, nil
}

func (s *Service) endSession(ctx context.Context, idHash string) error {
	if _, err := s.db.Exec(ctx, `DELETE FROM sso_sessions WHERE id_hash = $1`, idHash); err != nil {
		return fmt.Errorf("sso: end session: %w", err)
	}
	return nil
}

// active is a live session with the directory entries it stands for.
type active struct {
	sess   *session
	tenant *kit.Tenant
	user   *kit.User
}

// current loads the request's session and re-checks it: lifetime, idle
// time, the directory (tenant bound, member authorized and enabled) and the
// access token, refreshed when it is about to expire. A session that fails
// is ended.
func (s *Service) current(ctx context.Context, r *http.Request) (*active, error) {
	c, err := r.Cookie(s.cfg.CookieName)
	if err != nil || c.Value == "" {
		return nil, errNoSession
	}
	sess, err := s.readSession(ctx, hashToken(c.Value))
	if err != nil {
		return nil, err
	}
	if sess == nil {
		return nil, errNoSession
	}
	now := s.clk.Now()
	if !now.Before(sess.expiry) || now.Sub(sess.lastSeen) >= s.cfg.IdleTimeout {
		return nil, errors.Join(errNoSession, s.endSession(ctx, sess.idHash))
	}
	t, err := s.dir.Tenant(ctx, sess.testFlag, sess.tenantID)
	if errors.Is(err, kit.ErrNotFound) {
		return nil, errors.Join(forbidden("Organization not connected", "Your organization has unbound this application."), s.endSession(ctx, sess.idHash))
	}
	if err != nil {
		return nil, err
	}
	if app, err := s.dir.App(ctx, sess.testFlag, sess.tenantID, sess.appID); errors.Is(err, kit.ErrNotFound) || (err == nil && app.Deleted) {
		return nil, errors.Join(forbidden("Application not connected", "The application credential of your organization was removed."), s.endSession(ctx, sess.idHash))
	} else if err != nil {
		return nil, err
	}
	u, err := s.checkMember(ctx, t, sess.appID, sess.userName)
	if err != nil {
		var le *loginError
		if errors.As(err, &le) {
			return nil, errors.Join(err, s.endSession(ctx, sess.idHash))
		}
		return nil, err
	}
	if !now.Before(sess.accessExp.Add(-refreshLeeway)) {
		if sess, err = s.refresh(ctx, t, sess, now); err != nil {
			return nil, err
		}
	}
	if now.Sub(sess.lastSeen) >= time.Minute {
		if _, err := s.db.Exec(ctx, `UPDATE sso_sessions SET last_seen_at = $1 WHERE id_hash = $2`, now.UnixMilli(), sess.idHash); err != nil {
			return nil, fmt.Errorf("sso: touch session: %w", err)
		}
		sess.lastSeen = now
	}
	return &active{sess: sess, tenant: t, user: u}, nil
}

// refresh renews the session's access token with its refresh token
// (grant_type=refresh_token, joint-kit.md §7.2).
func (s *Service) refresh(ctx context.Context, t *kit.Tenant, sess *session, now time.Time) (*session, error) {
	if sess.refreshSealed == "" || !now.Before(sess.refreshExp) {
		return nil, errors.Join(errNoSession, s.endSession(ctx, sess.idHash))
	}
	rt, err := s.open(sess.refreshSealed, sess.idHash)
	if err != nil {
		return nil, errors.Join(errNoSession, err, s.endSession(ctx, sess.idHash))
	}
	app := &kit.App{TenantID: t.TenantID, AppID: sess.appID}
	conf, err := s.oauthConfig(ctx, t, app)
	if errors.Is(err, kit.ErrNotFound) {
		return nil, errors.Join(forbidden("Application not connected", "The application credential of your organization was removed."), s.endSession(ctx, sess.idHash))
	}
	if err != nil {
		return nil, err
	}
	// one refresh at a time per session, across requests and replicas
	claimed, err := s.claimRefresh(ctx, sess.idHash, now)
	if err != nil {
		return nil, err
	}
	if !claimed {
		return s.awaitRefresh(ctx, sess, now)
	}
	defer s.releaseRefresh(sess.idHash)
	// another request may have refreshed between our read and our claim
	fresh, err := s.readSession(ctx, sess.idHash)
	if err != nil {
		return nil, err
	}
	if fresh == nil {
		return nil, errNoSession
	}
	if now.Before(fresh.accessExp.Add(-refreshLeeway)) {
		return fresh, nil
	}
	if fresh.refreshSealed != sess.refreshSealed {
		sess = fresh
		if rt, err = s.open(sess.refreshSealed, sess.idHash); err != nil {
			return nil, errors.Join(errNoSession, err, s.endSession(ctx, sess.idHash))
		}
	}
	tok, err := conf.TokenSource(s.oauthCtx(ctx), &oauth2.Token{RefreshToken: rt}).Token()
	if err != nil {
		// a concurrent request may have refreshed (and rotated) first
		if again, rerr := s.readSession(ctx, sess.idHash); rerr == nil && again != nil && now.Before(again.accessExp.Add(-refreshLeeway)) {
			return again, nil
		}
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode >= 400 && re.Response.StatusCode < 500 {
			s.refreshes.WithLabelValues("rejected").Inc()
			s.log.Info("sso: refresh token rejected; session ended", "tenant", t.TenantID, "user", sess.userName, "error", re.ErrorCode)
			return nil, errors.Join(errNoSession, s.endSession(ctx, sess.idHash))
		}
		s.refreshes.WithLabelValues("failed").Inc()
		if now.Before(sess.accessExp) {
			s.log.Warn("sso: refresh failed; access token still valid", "tenant", t.TenantID, "err", err)
			return sess, nil
		}
		return nil, &loginError{Status: http.StatusBadGateway, Title: "Identity provider unavailable", Msg: "Your session could not be renewed. Try again later.", Err: err}
	}
	access, err := s.seal(tok.AccessToken, sess.idHash)
	if err != nil {
		return nil, err
	}
	// the refresh token, new or kept, is sealed again: under the current
	// identity key, so that an old key can be dropped after a rotation
	refreshExp := sess.refreshExp
	newRT := rt
	if tok.RefreshToken != "" && tok.RefreshToken != rt {
		newRT = tok.RefreshToken
		refreshExp = now.Add(DefaultRefreshTTL)
	}
	refreshSealed, err := s.seal(newRT, sess.idHash)
	if err != nil {
		return nil, err
	}
	accessExp, _ := tokenExpiries(tok, now)
	res, err := s.db.Exec(ctx, `UPDATE sso_sessions SET access_token = $1, refresh_token = $2, access_expires_at = $3, refresh_expires_at = $4,
		refreshes = refreshes + 1 WHERE id_hash = $5 AND refresh_token = $6`,
		access, refreshSealed, accessExp.UnixMilli(), refreshExp.UnixMilli(), sess.idHash, sess.refreshSealed)
	if err != nil {
		return nil, fmt.Errorf("sso: store refreshed token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 { // someone else stored theirs first
		again, err := s.readSession(ctx, sess.idHash)
		if err != nil || again == nil {
			return nil, errors.Join(errNoSession, err)
		}
		return again, nil
	}
	s.refreshes.WithLabelValues("ok").Inc()
	s.log.Debug("sso: access token refreshed", "tenant", t.TenantID, "user", sess.userName)
	sess.accessSealed, sess.refreshSealed, sess.accessExp, sess.refreshExp = access, refreshSealed, accessExp, refreshExp
	sess.refreshes++
	return sess, nil
}

// refreshClaimTTL bounds a refresh claim left by a crashed process.
const refreshClaimTTL = 30 * time.Second

func (s *Service) claimRefresh(ctx context.Context, idHash string, now time.Time) (bool, error) {
	res, err := s.db.Exec(ctx, `UPDATE sso_sessions SET refresh_claim = $1 WHERE id_hash = $2 AND refresh_claim < $3`,
		now.Add(refreshClaimTTL).UnixMilli(), idHash, now.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("sso: claim refresh: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sso: claim refresh: %w", err)
	}
	return n == 1, nil
}

func (s *Service) releaseRefresh(idHash string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.db.Exec(ctx, `UPDATE sso_sessions SET refresh_claim = 0 WHERE id_hash = $1`, idHash); err != nil {
		s.log.Warn("sso: release refresh claim", "err", err)
	}
}

// awaitRefresh handles a request arriving while another refreshes the same
// session: the current access token is used while it is valid; otherwise it
// waits (a few seconds at most) for the other refresh to be stored.
func (s *Service) awaitRefresh(ctx context.Context, sess *session, now time.Time) (*session, error) {
	if now.Before(sess.accessExp) {
		return sess, nil
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			return nil, &loginError{Status: http.StatusServiceUnavailable, Title: "Session busy", Msg: "Your session is being renewed. Try again in a moment."}
		case <-t.C:
		}
		again, err := s.readSession(ctx, sess.idHash)
		if err != nil {
			return nil, err
		}
		if again == nil {
			return nil, errNoSession
		}
		if now.Before(again.accessExp.Add(-refreshLeeway)) {
			return again, nil
		}
	}
}

// identityFor builds and signs the identity token of a member.
func (s *Service) identityFor(ctx context.Context, t *kit.Tenant, u *kit.User, ui *userInfo, sid string, now time.Time) (string, error) {
	id := Identity{
		Issuer: "souk", Audience: s.cfg.Audience, Subject: t.TenantID + "/" + u.UserName,
		TenantID: t.TenantID, TenantCode: t.TenantCode, TenantName: t.Name, AppID: u.AppID,
		UserName: u.UserName, Name: u.Name, Role: u.Role, Department: u.OrgCode,
		Email: u.Email, Mobile: u.Mobile, Enabled: u.Enabled, Test: t.TestFlag,
		Session: sid[:16], IssuedAt: now.Unix(), ExpiresAt: now.Add(s.cfg.AssertionTTL).Unix(),
	}
	if ui != nil {
		id.UserID = ui.UserID
		if id.Email == "" {
			id.Email = ui.Email
		}
		if id.Mobile == "" {
			id.Mobile = ui.Mobile
		}
	}
	if u.OrgCode != "" {
		if g, err := s.dir.Org(ctx, t.TestFlag, t.TenantID, u.OrgCode); err == nil {
			id.DepartmentName = g.OrgName
		}
	}
	jti, err := s.randomToken()
	if err != nil {
		return "", err
	}
	id.ID = jti[:22]
	return SignIdentity(s.cfg.IdentityKeys[0], id)
}

func (s *Service) activeIdentity(ctx context.Context, a *active) (string, error) {
	ui := &userInfo{UserID: a.sess.userID}
	return s.identityFor(ctx, a.tenant, a.user, ui, a.sess.idHash, s.clk.Now())
}

// Me is the answer of GET /sso/me.
type Me struct {
	Tenant           string    `json:"tenant"`
	TenantCode       string    `json:"tenantCode"`
	TenantName       string    `json:"tenantName"`
	AppID            string    `json:"appId"`
	UserID           string    `json:"userId"`
	UserName         string    `json:"userName"`
	Name             string    `json:"name"`
	Role             string    `json:"role"`
	Department       string    `json:"department"`
	DepartmentName   string    `json:"departmentName,omitempty"`
	Enabled          bool      `json:"enabled"`
	Test             bool      `json:"test"`
	SessionExpiresAt time.Time `json:"sessionExpiresAt"`
}

// GET /sso/me
func (s *Service) me(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	a, err := s.current(ctx, r)
	if err != nil {
		s.clearOnFailure(w, err)
		s.fail(w, r, err)
		return
	}
	m := Me{
		Tenant: a.tenant.TenantID, TenantCode: a.tenant.TenantCode, TenantName: a.tenant.Name, AppID: a.sess.appID,
		UserID: a.sess.userID, UserName: a.user.UserName, Name: a.user.Name, Role: a.user.Role, Department: a.user.OrgCode,
		Enabled: a.user.Enabled, Test: a.tenant.TestFlag, SessionExpiresAt: a.sess.expiry.UTC(),
	}
	if a.user.OrgCode != "" {
		if g, err := s.dir.Org(ctx, a.tenant.TestFlag, a.tenant.TenantID, a.user.OrgCode); err == nil {
			m.DepartmentName = g.OrgName
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(m)
}

// GET /sso/identity → {"token": "<Souk-Identity>", "expiresAt": "…"}: a
// fresh identity token for the session, for a front end to pass to its API.
func (s *Service) identity(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	a, err := s.current(ctx, r)
	if err != nil {
		s.clearOnFailure(w, err)
		s.fail(w, r, err)
		return
	}
	tok, err := s.activeIdentity(ctx, a)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{"token": tok, "expiresAt": s.clk.Now().Add(s.cfg.AssertionTTL).UTC()})
}

// clearOnFailure drops the session cookie when the session ended.
func (s *Service) clearOnFailure(w http.ResponseWriter, err error) {
	var le *loginError
	if errors.As(err, &le) && (le.Status == http.StatusUnauthorized || le.Status == http.StatusForbidden) {
		s.setCookie(w, s.cfg.CookieName, "", "/", time.Time{})
	}
}

// GET /sso/logout: ends the session and sends the browser to the tenant's
// logout ({domainName}/api/v1/logout?redirect_url=PostLogoutURL).
// logoutGet ends the session on a link of the application's own site. A
// navigation from another site (the browser says so in Sec-Fetch-Site) gets
// a page asking to confirm instead: the session cookie is SameSite=Lax, so it
// rides along on a cross-site GET, and any page could otherwise sign a user
// out (logout CSRF). The page's button POSTs to /sso/logout, which a foreign
// site cannot do with the cookie.
func (s *Service) logoutGet(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		pageHeaders(w.Header())
		_, _ = io.WriteString(w, `<!doctype html><meta charset="utf-8"><title>Sign out</title>
<form method="post" action="/sso/logout"><p>Sign out?</p><button type="submit">Sign out</button></form>
`)
		return
	}
	s.logout(w, r)
}

func (s *Service) logout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	target := s.cfg.PostLogoutURL
	if c, err := r.Cookie(s.cfg.CookieName); err == nil && c.Value != "" {
		sess, err := s.readSession(ctx, hashToken(c.Value))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if sess != nil {
			if err := s.endSession(ctx, sess.idHash); err != nil {
				s.fail(w, r, err)
				return
			}
			s.log.Info("sso logout", "tenant", sess.tenantID, "user", sess.userName)
			auditnote.Add(ctx, "tenant", sess.tenantID)
			auditnote.Add(ctx, "user", sess.userName)
			if t, err := s.dir.Tenant(ctx, sess.testFlag, sess.tenantID); err == nil && t.DomainName != "" {
				target = strings.TrimRight(t.DomainName, "/") + "/api/v1/logout?redirect_url=" + url.QueryEscape(s.cfg.PostLogoutURL)
			}
		}
	}
	s.setCookie(w, s.cfg.CookieName, "", "/", time.Time{})
	w.Header().Set("Cache-Control", "no-store")
	// 303: a POST's answer is followed with a GET.
	http.Redirect(w, r, target, http.StatusSeeOther)
}

type ctxKey struct{}

// IdentityFromContext returns the identity Protect verified for the request.
func IdentityFromContext(ctx context.Context) (*Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(*Identity)
	return id, ok
}

// Protect wraps the vendor application (or a reverse proxy to it): requests
// without a live session get 401 (or, with ?tenant=, a redirect to the
// login); the others reach next with a fresh signed Souk-Identity header
// (any incoming one is replaced) and the Identity in the context.
func (s *Service) Protect(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		a, err := s.current(ctx, r)
		if err != nil {
			s.clearOnFailure(w, err)
			var le *loginError
			if errors.As(err, &le) && le.Status == http.StatusUnauthorized && r.Method == http.MethodGet {
				if tenant := r.URL.Query().Get("tenant"); tenant != "" {
					http.Redirect(w, r, s.cfg.BaseURL+"/sso/login?tenant="+url.QueryEscape(tenant)+"&return_to="+url.QueryEscape(r.URL.RequestURI()), http.StatusFound)
					return
				}
			}
			s.fail(w, r, err)
			return
		}
		tok, err := s.activeIdentity(ctx, a)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		id, err := VerifyIdentityFor(s.cfg.IdentityKeys[:1], tok, s.cfg.Audience, s.clk.Now())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		r2 := r.Clone(context.WithValue(ctx, ctxKey{}, id))
		r2.Header.Set(IdentityHeader, tok)
		next.ServeHTTP(w, r2)
	})
}
