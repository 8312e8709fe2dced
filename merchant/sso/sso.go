// Package sso is the merchant side of KooGallery joint-operation single
// sign-on (joint-kit.md §7): a member of a tenant signs in at the tenant's
// identity provider ({domainName}/api/v1/oauth2/...), souk exchanges the code
// with the tenant's client credentials (received through the kit), checks the
// member against the directory authSync built, keeps a server-side session
// with the OAuth tokens (refreshed while the member is active), and hands the
// identity to the vendor application as a signed Souk-Identity token.
//
// See docs/joint-operation.md.
package sso

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/merchant/kit"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Migrate applies the SSO migrations (component "sso").
func Migrate(ctx context.Context, d *db.DB) error {
	return db.MigrateFS(ctx, d, "sso", migrationFS, "migrations")
}

// Directory is what SSO needs from the kit directory; *kit.Service implements it.
type Directory interface {
	Tenant(ctx context.Context, testFlag bool, tenantID string) (*kit.Tenant, error)
	LookupTenant(ctx context.Context, tenantID string) (*kit.Tenant, error)
	Apps(ctx context.Context, testFlag bool, tenantID string) ([]kit.App, error)
	App(ctx context.Context, testFlag bool, tenantID, appID string) (*kit.App, error)
	ClientCredentials(ctx context.Context, testFlag bool, tenantID, appID string) (clientID, clientSecret string, err error)
	User(ctx context.Context, testFlag bool, tenantID, appID, userName string) (*kit.User, error)
	Org(ctx context.Context, testFlag bool, tenantID, orgCode string) (*kit.Org, error)
}

var _ Directory = (*kit.Service)(nil)

// Config configures single sign-on.
type Config struct {
	// BaseURL is the public URL at which Handler is mounted, without the
	// trailing slash (e.g. "https://app.example.com"). Required.
	BaseURL string
	// RedirectURL is the login address registered on the app credential,
	// sent as redirect_uri; default BaseURL + "/sso/callback".
	RedirectURL string
	// AppURL is where the browser goes after a login, with the signed
	// identity in ?souk_identity=; default BaseURL + "/".
	AppURL string
	// Audience is the "aud" of identity tokens; default AppURL.
	Audience string
	// PostLogoutURL is the redirect_url given to the tenant's logout;
	// default BaseURL + "/".
	PostLogoutURL string
	// AppID picks the app credential when a tenant has several.
	AppID string
	// IdentityKeys sign identity tokens (the first) and verify them (any);
	// shared with the vendor application; each at least 32 bytes. Required.
	IdentityKeys [][]byte
	// InsecureCookies drops the Secure attribute of souk's cookies. New sets
	// it when BaseURL is http: a browser drops a Secure cookie set over http
	// (but for localhost), so a login there could never complete. KooGallery
	// requires https; http is for development against souk market.
	InsecureCookies bool
	// SessionTTL is a session's absolute lifetime (default 24 h); IdleTimeout
	// ends a session unused that long (default 8 h).
	SessionTTL  time.Duration
	IdleTimeout time.Duration
	// LoginTTL bounds a login in progress (default 10 min).
	LoginTTL time.Duration
	// AssertionTTL is the lifetime of identity tokens (default 60 s).
	AssertionTTL time.Duration
	// RequireState refuses a callback without state. By default one that
	// carries ?code and ?tenant but no state is accepted: KooGallery's
	// unified login page (portal-login?ind=UNOP&appId=…), the documented
	// sign-in (joint-kit.md §7.1), redirects to the login address so, and a
	// real sign-in must not fail (README policy). Such a callback has no
	// login-CSRF protection; set RequireState when every sign-in starts at
	// /sso/login.
	RequireState bool
	// DisablePKCE stops sending a PKCE (RFC 7636) S256 code_challenge at
	// authorize and its code_verifier at token. KooGallery does not document
	// PKCE; an IdP ignores parameters it does not know (RFC 6749 §3.1), so it
	// is sent by default; set this for an IdP that refuses them.
	DisablePKCE bool
	// Scope requested at authorize (default "get_user_info").
	Scope string
	// HTTPClient calls the tenant's token and userinfo endpoints (default:
	// 10 s timeout).
	HTTPClient *http.Client
	// CookieName names the session cookie (default "souk_session").
	CookieName string
}

// Deps are the SSO service's collaborators.
type Deps struct {
	DB        *db.DB
	Directory Directory
	Clock     clock.Clock
	Logger    *slog.Logger
	Rand      io.Reader // default crypto/rand
	// Registerer receives the SSO metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
}

// Service serves the SSO endpoints.
type Service struct {
	cfg   Config
	db    *db.DB
	dir   Directory
	clk   clock.Clock
	log   *slog.Logger
	rnd   io.Reader
	aeads []cipher.AEAD // the first seals; any opens (one per identity key)
	httpc *http.Client

	logins    *prometheus.CounterVec
	refreshes *prometheus.CounterVec
}

// Lifetimes documented for the tenant's tokens (joint-kit.md §7.2).
const (
	DefaultAccessTTL  = 2 * time.Hour
	DefaultRefreshTTL = 30 * 24 * time.Hour
	// refreshLeeway refreshes an access token this long before it expires.
	refreshLeeway = time.Minute
)

const loginCookie = "souk_sso_login"

// New validates cfg and returns the SSO service.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.DB == nil || deps.Directory == nil {
		return nil, errors.New("sso: DB and Directory are required")
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if u, err := url.Parse(cfg.BaseURL); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("sso: BaseURL %q must be an absolute http(s) URL", cfg.BaseURL)
	} else if u.Scheme == "http" {
		cfg.InsecureCookies = true
	}
	if len(cfg.IdentityKeys) == 0 {
		return nil, errors.New("sso: an identity key is required (shared with the vendor app)")
	}
	for i, k := range cfg.IdentityKeys {
		if len(k) < MinKeyLen {
			return nil, fmt.Errorf("sso: identity key %d has %d bytes; at least %d required", i, len(k), MinKeyLen)
		}
	}
	if cfg.RedirectURL == "" {
		cfg.RedirectURL = cfg.BaseURL + "/sso/callback"
	}
	if cfg.AppURL == "" {
		cfg.AppURL = cfg.BaseURL + "/"
	}
	if cfg.Audience == "" {
		cfg.Audience = cfg.AppURL
	}
	if cfg.PostLogoutURL == "" {
		cfg.PostLogoutURL = cfg.BaseURL + "/"
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 24 * time.Hour
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 8 * time.Hour
	}
	if cfg.LoginTTL <= 0 {
		cfg.LoginTTL = 10 * time.Minute
	}
	if cfg.AssertionTTL <= 0 {
		cfg.AssertionTTL = time.Minute
	}
	if cfg.Scope == "" {
		cfg.Scope = "get_user_info"
	}
	if cfg.CookieName == "" {
		cfg.CookieName = "souk_session"
	}
	s := &Service{cfg: cfg, db: deps.DB, dir: deps.Directory, clk: deps.Clock, log: deps.Logger, rnd: deps.Rand, httpc: cfg.HTTPClient}
	if s.clk == nil {
		s.clk = clock.Real{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.rnd == nil {
		s.rnd = rand.Reader
	}
	if s.httpc == nil {
		s.httpc = &http.Client{Timeout: 10 * time.Second}
	}
	s.logins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "souk_sso_logins_total",
		Help: "SSO logins by outcome: ok, refused (4xx: not authorized, disabled, bad state…) or failed (5xx).",
	}, []string{"result"})
	s.refreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "souk_sso_token_refreshes_total",
		Help: "Access-token refreshes by outcome: ok, rejected (session ended) or failed (IdP unreachable).",
	}, []string{"result"})
	if deps.Registerer != nil {
		for _, c := range []prometheus.Collector{s.logins, s.refreshes} {
			if err := deps.Registerer.Register(c); err != nil {
				s.log.Warn("sso: metric not registered", "err", err)
			}
		}
	}
	// tokens at rest are sealed with a key derived from the first identity
	// key, and opened with the one derived from any: rotating the identity
	// key (new,old) keeps the sessions
	for _, k := range cfg.IdentityKeys {
		m := hmac.New(sha256.New, k)
		m.Write([]byte("souk-sso token encryption v1"))
		block, err := aes.NewCipher(m.Sum(nil))
		if err != nil {
			return nil, fmt.Errorf("sso: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("sso: %w", err)
		}
		s.aeads = append(s.aeads, aead)
	}
	return s, nil
}

// Handler serves GET /sso/login, /sso/callback, /sso/logout (and POST), /sso/me
// and /sso/identity. Mount it at the root of Config.BaseURL.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sso/login", s.login)
	mux.HandleFunc("GET /sso/callback", s.callback)
	mux.HandleFunc("GET /sso/logout", s.logoutGet)
	mux.HandleFunc("POST /sso/logout", s.logout)
	mux.HandleFunc("GET /sso/me", s.me)
	mux.HandleFunc("GET /sso/identity", s.identity)
	return mux
}

func (s *Service) randomToken() (string, error) {
	var b [32]byte
	if _, err := io.ReadFull(s.rnd, b[:]); err != nil {
		return "", fmt.Errorf("sso: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func hashToken(v string) string {
	h := sha256.Sum256([]byte(v))
	return hex.EncodeToString(h[:])
}

// seal encrypts a token for storage, bound to the row it belongs to, with
// the key of the first identity key.
func (s *Service) seal(plain, bind string) (string, error) {
	if plain == "" {
		return "", nil
	}
	aead := s.aeads[0]
	nonce := make([]byte, aead.NonceSize())
	if _, err := io.ReadFull(s.rnd, nonce); err != nil {
		return "", fmt.Errorf("sso: random: %w", err)
	}
	ct := aead.Seal(nonce, nonce, []byte(plain), []byte(bind))
	return base64.RawStdEncoding.EncodeToString(ct), nil
}

// open decrypts a sealed token with the key of any identity key.
func (s *Service) open(sealed, bind string) (string, error) {
	if sealed == "" {
		return "", nil
	}
	ct, err := base64.RawStdEncoding.DecodeString(sealed)
	if err != nil || len(ct) < s.aeads[0].NonceSize() {
		return "", errors.New("sso: stored token is corrupt")
	}
	for _, aead := range s.aeads {
		n := aead.NonceSize()
		if pt, err := aead.Open(nil, ct[:n], ct[n:], []byte(bind)); err == nil {
			return string(pt), nil
		}
	}
	return "", errors.New("sso: stored token cannot be decrypted (was the identity key replaced rather than rotated?)")
}

func (s *Service) setCookie(w http.ResponseWriter, name, value, path string, expires time.Time) {
	c := &http.Cookie{
		Name: name, Value: value, Path: path,
		HttpOnly: true, Secure: !s.cfg.InsecureCookies, SameSite: http.SameSiteLaxMode,
	}
	if value == "" {
		c.MaxAge = -1
	} else {
		c.Expires = expires
		c.MaxAge = max(1, int(expires.Sub(s.clk.Now()).Seconds()))
	}
	http.SetCookie(w, c)
}

// safeReturnTo accepts only a local absolute path (no scheme, no host).
func safeReturnTo(v string) string {
	if v == "" || len(v) > 1024 || !strings.HasPrefix(v, "/") || strings.HasPrefix(v, "//") || strings.HasPrefix(v, "/\\") || strings.ContainsAny(v, "\r\n") {
		return ""
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "" || u.Host != "" {
		return ""
	}
	return v
}
