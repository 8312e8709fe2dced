// Package idp is the identity provider of souk's marketplace: the unified
// login page and the OAuth2 authorization-code endpoints a joint-operation
// (联营) merchant calls on the tenant's {domain_name} (joint-kit.md §7):
//
//	GET  /unified-login/                      unified login page (also #/portal-login?ind=UNOP&appId=…)
//	GET  /unified-login/portal-login          same, with ?ind=UNOP&appId=… as a real query
//	POST /unified-login/login                 the login form (CSRF-protected)
//	GET  /api/v1/oauth2/authorize             response_type=code&client_id&redirect_uri&scope&state[&code_challenge&code_challenge_method=S256]
//	POST /api/v1/oauth2/token                 grant_type=authorization_code | refresh_token
//	GET  /api/v1/oauth2/userinfo              Authorization: Bearer …
//	GET  /api/v1/logout?redirect_url=…        ends the IdP session
//
// Members, clients (the apps bound to enterprises) and authorizations live in
// the buyer center; the IdP reads them through the Directory interface on
// every use, so a disabled or deleted member, a cancelled authorization or a
// stopped app stops working at once — codes, access and refresh tokens alike.
//
// Every secret the IdP hands out (session cookie, code, tokens) is 32 bytes
// from crypto/rand, and only its SHA-256 digest is stored. Lifetimes follow the
// injected clock (the market's virtual clock): access token 2 h, refresh token
// 30 d (rotated on every use), code 5 min, login session 8 h.
package idp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies the IdP's migrations (component "idp").
func Migrate(ctx context.Context, d *db.DB) error {
	return db.MigrateFS(ctx, d, "idp", migrations, "migrations")
}

// Errors a Directory returns.
var (
	ErrNotFound      = errors.New("idp: not found")
	ErrNotAuthorized = errors.New("idp: not authorized for this application")
)

// Client is an OAuth2 client: one joint-operation app bound to one enterprise.
type Client struct {
	ID           string
	SecretHash   string // hex SHA-256 of the client secret (HashSecret)
	TenantID     string
	TenantCode   string
	AppID        string
	RedirectURIs []string // the app's registered login addresses; the first is the default
	Enabled      bool     // false while the buyer has stopped the app
}

// Account is a member who may sign in.
type Account struct {
	ID           string
	TenantID     string
	UserName     string
	Name         string
	PasswordHash string // HashPassword output; "" = no password set (cannot sign in)
	Enabled      bool
	// Epoch changes when the member is disabled or changes password: the
	// sessions, codes and tokens issued under another epoch are void.
	Epoch int64
}

// valid reports whether something issued under epoch still stands.
func (a Account) valid(epoch int64) bool { return a.Enabled && a.Epoch == epoch }

// UserInfo is the userinfo response (joint-kit.md §7.3).
type UserInfo struct {
	ID               string `json:"id"`
	UserName         string `json:"userName"`
	Name             string `json:"name"`
	Email            string `json:"email"`
	Mobile           string `json:"mobile"`
	Role             string `json:"role"`
	OrganizationName string `json:"organizationName"`
	OrganizationCode string `json:"organizationCode"`
	UserID           string `json:"userId"`
	ProjectName      string `json:"projectName"`
	Tenant           string `json:"tenant"`
}

// Directory is what the IdP needs from the buyer center.
type Directory interface {
	// Client returns a client by id (ErrNotFound).
	Client(ctx context.Context, clientID string) (Client, error)
	// ClientForApp returns the client of appID bound to the tenant (ErrNotFound).
	ClientForApp(ctx context.Context, tenantID, appID string) (Client, error)
	// TenantByCode resolves an enterprise code (tenantCode) to its tenant id (ErrNotFound).
	TenantByCode(ctx context.Context, code string) (tenantID string, err error)
	// Account returns the member userName of the tenant (ErrNotFound).
	Account(ctx context.Context, tenantID, userName string) (Account, error)
	// AccountByID returns a member by id (ErrNotFound).
	AccountByID(ctx context.Context, memberID string) (Account, error)
	// UserInfo returns the member as the client's app sees it; ErrNotAuthorized
	// unless the member exists, is enabled and authorized for the app, and the
	// app is enabled.
	UserInfo(ctx context.Context, clientID, memberID string) (UserInfo, error)
	// LogoutRedirectAllowed reports whether logout may redirect to u (an
	// absolute URL): true when u's origin is that of a registered login address.
	LogoutRedirectAllowed(ctx context.Context, u *url.URL) (bool, error)
}

// Config configures an IdP. DB, Clock and Directory are required.
type Config struct {
	DB        *db.DB
	Clock     clock.Clock
	Logger    *slog.Logger
	Directory Directory

	// Password are the argon2id parameters members' hashes use (default
	// DefaultPasswordParams); the IdP spends as much on unknown user names.
	Password PasswordParams

	// MaxPasswordChecks bounds the password checks running at once (default
	// GOMAXPROCS); each takes the hash's memory (64 MiB by default).
	MaxPasswordChecks int

	// SecureCookies marks cookies Secure (set it when the market is served over HTTPS).
	SecureCookies bool

	// Note, when set, is told what only the IdP knows of a request for its
	// audit record: the OAuth client or the user signing in (actor), the
	// outcome of a sign-in (result), the member and client concerned
	// (targets). souk market passes market.NoteAudit.
	Note func(ctx context.Context, actor, result string, targets map[string]string)

	// MaxLoginFailures failed sign-ins of one user name within
	// LoginFailureWindow lock it until the window ends (defaults 10, 15 min).
	MaxLoginFailures   int
	LoginFailureWindow time.Duration

	AccessTTL  time.Duration // default 2 h
	RefreshTTL time.Duration // default 30 d
	CodeTTL    time.Duration // default 5 min
	SessionTTL time.Duration // default 8 h
}

// IdP serves the identity provider's endpoints.
type IdP struct {
	db     *db.DB
	clock  clock.Clock
	log    *slog.Logger
	dir    Directory
	secure bool
	note   func(ctx context.Context, actor, result string, targets map[string]string)

	accessTTL, refreshTTL, codeTTL, sessionTTL time.Duration
	maxFailures                                int
	failureWindow                              time.Duration

	dummyHash string // verified against when a user does not exist, to equalize timing

	verifyPassword func(hash, password string) error // VerifyPassword; replaced in tests
	checks         chan struct{}                     // a slot per password check running (MaxPasswordChecks)
}

// checkPassword runs verifyPassword when a slot is free: argon2id takes the
// hash's memory (64 MiB by default) for each check, so sign-ins sent at once
// (under many user names, each within its lockout) queue rather than exhaust
// the memory. A request that goes away while queued gets its context's error.
func (p *IdP) checkPassword(ctx context.Context, hash, password string) error {
	select {
	case p.checks <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.checks }()
	return p.verifyPassword(hash, password)
}

// Defaults of Config.
const (
	DefaultAccessTTL  = 2 * time.Hour
	DefaultRefreshTTL = 30 * 24 * time.Hour
	DefaultCodeTTL    = 5 * time.Minute
	DefaultSessionTTL = 8 * time.Hour
	// Scope is the only scope the documented flow uses and the one granted.
	Scope = "get_user_info"
)

// New returns an IdP.
func New(cfg Config) (*IdP, error) {
	if cfg.DB == nil || cfg.Clock == nil || cfg.Directory == nil {
		return nil, errors.New("idp: DB, Clock and Directory are required")
	}
	p := &IdP{
		db: cfg.DB, clock: cfg.Clock, log: cfg.Logger, dir: cfg.Directory, secure: cfg.SecureCookies, note: cfg.Note,
		accessTTL: cfg.AccessTTL, refreshTTL: cfg.RefreshTTL, codeTTL: cfg.CodeTTL, sessionTTL: cfg.SessionTTL,
		maxFailures: cfg.MaxLoginFailures, failureWindow: cfg.LoginFailureWindow,
	}
	checks := cfg.MaxPasswordChecks
	if checks <= 0 {
		checks = runtime.GOMAXPROCS(0)
	}
	p.checks = make(chan struct{}, checks)
	if p.maxFailures <= 0 {
		p.maxFailures = 10
	}
	if p.failureWindow <= 0 {
		p.failureWindow = 15 * time.Minute
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.accessTTL <= 0 {
		p.accessTTL = DefaultAccessTTL
	}
	if p.refreshTTL <= 0 {
		p.refreshTTL = DefaultRefreshTTL
	}
	if p.codeTTL <= 0 {
		p.codeTTL = DefaultCodeTTL
	}
	if p.sessionTTL <= 0 {
		p.sessionTTL = DefaultSessionTTL
	}
	// A throw-away hash with the parameters of real hashes: verifying against
	// it for an unknown user costs what a real check costs.
	params := cfg.Password
	if params == (PasswordParams{}) {
		params = DefaultPasswordParams
	}
	h, err := HashPassword("x-unused-password", params)
	if err != nil {
		return nil, fmt.Errorf("idp: %w", err)
	}
	p.dummyHash = h
	p.verifyPassword = VerifyPassword
	return p, nil
}

// Paths of the IdP.
const (
	PathAuthorize    = "/api/v1/oauth2/authorize"
	PathToken        = "/api/v1/oauth2/token"
	PathUserInfo     = "/api/v1/oauth2/userinfo"
	PathLogout       = "/api/v1/logout"
	PathUnified      = "/unified-login/"
	PathPortalLogin  = "/unified-login/portal-login"
	PathLoginForm    = "/unified-login/login"
	sessionCookie    = "souk_idp_session"
	csrfCookie       = "souk_idp_csrf"
	maxFormBodyBytes = 64 << 10
	// maxNameLen bounds the enterprise code, user name and app id of the
	// login form, in bytes (the buyer center allows 64 characters).
	maxNameLen = 256
)

// Register mounts the IdP's endpoints on mux at their documented paths.
func (p *IdP) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PathAuthorize, p.handleAuthorize)
	mux.HandleFunc("POST "+PathToken, p.handleToken)
	mux.HandleFunc("GET "+PathUserInfo, p.handleUserInfo)
	mux.HandleFunc("POST "+PathUserInfo, p.handleUserInfo)
	mux.HandleFunc("GET "+PathLogout, p.handleLogout)
	mux.HandleFunc("GET "+PathUnified+"{$}", p.handleUnified)
	mux.HandleFunc("GET "+PathPortalLogin, p.handleUnified)
	mux.HandleFunc("POST "+PathLoginForm, p.handleLogin)
}

// Handler returns a handler serving only the IdP's endpoints.
func (p *IdP) Handler() http.Handler {
	mux := http.NewServeMux()
	p.Register(mux)
	return mux
}

// HashSecret returns the hex SHA-256 digest under which client secrets and
// bearer secrets are stored. The inputs are 256-bit random values, so a fast
// hash is the right tool (no dictionary to defend against).
func HashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// NewSecret returns 32 random bytes, base64url-encoded (43 characters).
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("idp: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
