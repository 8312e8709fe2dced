// Package buyer is the buyer center of souk's marketplace for joint-operation
// (联营) apps (买家中心 > 联营服务 > 企业管理; joint-kit.md §1.1, §9):
// enterprises with a department tree and members; purchased joint-operation
// apps bound to an enterprise; members or whole departments authorized for an
// app; apps enabled and stopped.
//
// Each change commits together with the kit sync calls it causes
// (tenantSync, applicationSync, allOrgSync on binding; authSync add, modify,
// cancel and delete, at most 500 users a call, on authorization and member
// changes; singleOrgSync on department changes). The calls are then sent once,
// in order, to the seller's production address + /produceAPI/v2/<iface>,
// signed with the seller's kit key (x-sign, x-timestamp, x-nonce), with a 5 s
// timeout. They are never retried automatically (README policy 8): the log
// keeps every call and its attempts, and the buyer retries a failed call from
// it (Center.Retry, POST …/messages/{id}/retry).
//
// The buyer center is also the directory of the market's identity provider
// (package idp): Center.Directory gives the IdP the bound apps (OAuth2
// clients), the members and what each is authorized for.
package buyer

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/market/idp"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies the buyer center's migrations (component "buyer").
func Migrate(ctx context.Context, d *db.DB) error {
	return db.MigrateFS(ctx, d, "buyer", migrations, "migrations")
}

// App is a purchased joint-operation app as the market's catalog knows it.
type App struct {
	InstanceID string // the instance the merchant created (kit bodies' instanceId)
	OrderID    string
	SellerID   string
	CustomerID string // the buyer who owns the instance ("" = not checked)
	AppID      string // the app credential's appId (应用凭证)
	// Endpoint is the seller's production address; kit calls go to
	// Endpoint + "/produceAPI/v2/<iface>".
	Endpoint string
	// KitKey signs kit calls (the seller's "kit" access key).
	KitKey string
	// PublicKey is the RSA public key (≥ 3072 bits; Base64 DER or PEM) the
	// seller uploaded with the app credential; applicationSync's clientSecret
	// is encrypted to it.
	PublicKey string
	// RedirectURIs are the app's registered login addresses (应用登录地址).
	RedirectURIs []string
	TestFlag     bool
}

// ErrNoApp is returned by a Catalog for an instance that is not a usable
// joint-operation app.
var ErrNoApp = errors.New("buyer: no such joint-operation app")

// Catalog resolves instances to apps. The market provides it; it is asked
// again at every send so that a rotated kit key or a moved production
// address takes effect on retries.
type Catalog interface {
	App(ctx context.Context, instanceID string) (App, error)
}

// ProductCatalog is optionally implemented by a Catalog that can also
// resolve a product (no instance: InstanceID, OrderID and CustomerID empty)
// for the seller's debugging calls (Center.DebugAppCredential).
type ProductCatalog interface {
	Product(ctx context.Context, productID string) (App, error)
}

// Config configures a Center. DB, Clock, Catalog and DomainName are required.
type Config struct {
	DB      *db.DB
	Clock   clock.Clock // the market clock: timestamps of records and body timeStamps
	Catalog Catalog
	Logger  *slog.Logger

	// WireClock stamps x-timestamp (the merchant checks it against its own
	// real clock within ±60 s). Default: the real clock, as the market's
	// (market.Config.WireClock); set it to Clock when the merchant runs on
	// the same virtual clock.
	WireClock clock.Clock

	// DomainName is the IdP's base URL (scheme + host), sent as tenantSync
	// domainName; merchants call {domainName}/api/v1/oauth2/… on it.
	DomainName string

	// HTTPClient sends kit calls. Default: a client that does not follow redirects.
	HTTPClient *http.Client
	// Timeout of one kit call. Default 5 s (KooGallery's timeout).
	Timeout time.Duration
	// Password hashing parameters for member passwords. Default idp.DefaultPasswordParams.
	Password idp.PasswordParams
	// Rand is the randomness source for ids, secrets and OAEP. Default crypto/rand.
	Rand io.Reader
}

// Center is the buyer center.
type Center struct {
	db         *db.DB
	clock      clock.Clock
	wire       clock.Clock
	catalog    Catalog
	log        *slog.Logger
	domainName string
	client     *http.Client
	timeout    time.Duration
	password   idp.PasswordParams
	rand       io.Reader
}

// Limits.
const (
	// MaxUsersPerAuthSync is the documented maximum of users in one authSync call.
	MaxUsersPerAuthSync = 500
	// DefaultTimeout is KooGallery's timeout of a call to a merchant.
	DefaultTimeout = 5 * time.Second
	// staleSending is how long a message may stay "sending" before a manual
	// retry may take it over (a process died while sending it).
	staleSending = 2 * time.Minute
	maxResponse  = 64 << 10
	maxBatch     = 1000 // members per batch request
)

// New returns a Center.
func New(cfg Config) (*Center, error) {
	if cfg.DB == nil || cfg.Clock == nil || cfg.Catalog == nil {
		return nil, errors.New("buyer: DB, Clock and Catalog are required")
	}
	if cfg.DomainName == "" || !(strings.HasPrefix(cfg.DomainName, "https://") || strings.HasPrefix(cfg.DomainName, "http://")) {
		return nil, fmt.Errorf("buyer: DomainName must be the IdP's base URL with scheme, got %q", cfg.DomainName)
	}
	c := &Center{
		db: cfg.DB, clock: cfg.Clock, wire: cfg.WireClock, catalog: cfg.Catalog, log: cfg.Logger,
		domainName: strings.TrimRight(cfg.DomainName, "/"), client: cfg.HTTPClient, timeout: cfg.Timeout,
		password: cfg.Password, rand: cfg.Rand,
	}
	if c.wire == nil {
		c.wire = clock.Real{}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.client == nil {
		c.client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.password == (idp.PasswordParams{}) {
		c.password = idp.DefaultPasswordParams
	}
	if c.rand == nil {
		c.rand = rand.Reader
	}
	return c, nil
}

// Error is a failure the caller can act on: Kind is "invalid" (a field;
// HTTP 400), "not_found" (404) or "conflict" (409).
type Error struct {
	Kind    string `json:"kind"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return "buyer: " + e.Field + ": " + e.Message
	}
	return "buyer: " + e.Message
}

func invalid(field, format string, args ...any) error {
	return &Error{Kind: "invalid", Field: field, Message: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &Error{Kind: "not_found", Message: fmt.Sprintf(format, args...)}
}

func conflict(format string, args ...any) error {
	return &Error{Kind: "conflict", Message: fmt.Sprintf(format, args...)}
}

// IsNotFound reports whether err is a not-found *Error.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == "not_found"
}

func (c *Center) randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(c.rand, b); err != nil {
		return "", fmt.Errorf("buyer: random: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func (c *Center) randomDigits(n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(c.rand, b); err != nil {
		return "", fmt.Errorf("buyer: random: %w", err)
	}
	for i := range b {
		b[i] = '0' + b[i]%10
	}
	return string(b), nil
}
