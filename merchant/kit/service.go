// Package kit is the merchant side of KooGallery's joint-operation (联营) kit:
// the five sync interfaces the marketplace calls at the production address
// (tenantSync, applicationSync, authSync, singleOrgSync, allOrgSync under
// /produceAPI/v2/), the per-tenant directory they maintain (tenant, apps with
// their OAuth clients, departments, authorized members), the hand-off events
// every change emits, a read API for the vendor application, and the RSA key
// pair whose public half encrypts each tenant's OAuth client secret.
//
// See docs/joint-operation.md.
package kit

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/kg"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Migrate applies the kit directory's migrations (component "kit"). The
// hand-off outbox (handoff.Migrate) must exist too: every change emits events.
func Migrate(ctx context.Context, d *db.DB) error {
	return db.MigrateFS(ctx, d, "kit", migrationFS, "migrations")
}

// Paths of the five kit interfaces, relative to the production address.
const (
	PathTenantSync      = "/produceAPI/v2/tenantSync"
	PathApplicationSync = "/produceAPI/v2/applicationSync"
	PathAuthSync        = "/produceAPI/v2/authSync"
	PathSingleOrgSync   = "/produceAPI/v2/singleOrgSync"
	PathAllOrgSync      = "/produceAPI/v2/allOrgSync"
)

// Config configures the kit interfaces.
type Config struct {
	// Keys are the kit signing keys (SOUK_KIT_KEY, comma-separated for
	// rotation): any of them verifies an x-sign; the first signs responses.
	Keys []string
	// PrivateKey decrypts applicationSync's clientSecret (EnsureKeyPair).
	PrivateKey *rsa.PrivateKey
	// Window is the allowed distance of x-timestamp from now (default 60 s).
	Window time.Duration
	// MaxBody bounds a request body (default DefaultMaxBody); a larger one is
	// answered 000002 unread beyond the bound.
	MaxBody int64
	// MaxFallbackBody bounds the body whose x-sign is also checked over the
	// sorted re-serializations (README policy 2's fallback; default MaxBody):
	// a larger body must be signed over its raw bytes.
	MaxFallbackBody int
	// APIToken, when set, enables the vendor read API (APIHandler) for
	// requests bearing "Authorization: Bearer <APIToken>".
	APIToken string
}

// DefaultMaxBody is the default kit body cap, 2 MiB: the largest documented
// kit body, an authSync of 500 users (joint-kit.md §4) with every field at
// its documented maximum length, is 0.96 MB in UTF-8 and 1.8 MB with every
// non-ASCII character \u-escaped; 2 MiB also holds an allOrgSync (whose size
// is not documented) of about 30,000 departments of typical size (70 bytes).
const DefaultMaxBody = 2 << 20

// Fallback re-serializations (kg.VerifyKitSignWith) run at most
// fallbackSlots at a time; a request finding none free within fallbackWait is
// answered 000004 (busy), its nonce unconsumed, so a retry can succeed.
const (
	fallbackSlots = 2
	fallbackWait  = time.Second
)

// errBusy answers a request whose signature could not be checked for want of
// a fallback slot.
var errBusy = &kg.ResultError{Code: kg.CodeInProgress, Msg: "busy: too many kit signatures being checked at once, retry later"}

// Deps are the kit service's collaborators.
type Deps struct {
	DB     *db.DB
	Clock  clock.Clock
	Logger *slog.Logger
	// Registerer receives the kit metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
	// Rand is the randomness for re-encrypting secrets (default crypto/rand).
	Rand io.Reader
}

// Service serves the kit interfaces and the directory.
type Service struct {
	cfg Config
	db  *db.DB
	clk clock.Clock
	log *slog.Logger
	rnd io.Reader

	requests       *prometheus.CounterVec
	signVariants   *prometheus.CounterVec
	secretVariants *prometheus.CounterVec

	pruneMu   sync.Mutex
	lastPrune time.Time

	fallbacks    chan struct{} // semaphore of the sorted re-serializations
	fallbackWait time.Duration
}

// New returns the kit service. Deps.DB and Config.PrivateKey are required;
// without Config.Keys every request fails authentication (000001).
func New(cfg Config, deps Deps) *Service {
	if cfg.Window <= 0 {
		cfg.Window = kg.DefaultWindow
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.MaxFallbackBody <= 0 {
		// The whole cap: KooGallery's own sample signs the sorted form, so
		// a large sync may well need the fallback, and the tree-less
		// re-serialization costs about twice the body, two at a time.
		cfg.MaxFallbackBody = int(cfg.MaxBody)
	}
	keys := make([]string, 0, len(cfg.Keys))
	for _, k := range cfg.Keys {
		if k != "" {
			keys = append(keys, k)
		}
	}
	cfg.Keys = keys
	s := &Service{cfg: cfg, db: deps.DB, clk: deps.Clock, log: deps.Logger, rnd: deps.Rand,
		fallbacks: make(chan struct{}, fallbackSlots), fallbackWait: fallbackWait}
	if s.clk == nil {
		s.clk = clock.Real{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.rnd == nil {
		s.rnd = rand.Reader
	}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "souk_kit_requests_total",
		Help: "Kit sync requests answered, by interface and result code.",
	}, []string{"interface", "code"})
	s.signVariants = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "souk_kit_signature_variant_total",
		Help: "Verified kit x-sign signatures by the body reading that matched (raw, sorted, sorted-deep) and timestamp unit.",
	}, []string{"variant", "timestamp"})
	s.secretVariants = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "souk_kit_client_secret_variant_total",
		Help: "applicationSync clientSecrets decrypted, by the OAEP variant that worked.",
	}, []string{"variant"})
	if deps.Registerer != nil {
		for _, c := range []prometheus.Collector{s.requests, s.signVariants, s.secretVariants} {
			if err := deps.Registerer.Register(c); err != nil {
				s.log.Warn("kit: metric not registered", "err", err)
			}
		}
	}
	return s
}

// Handler serves the five kit interfaces at their fixed sub-paths
// (PathTenantSync, …). Mount it at the merchant's production base path with
// the prefix stripped, e.g. mux.Handle("/isv/produceAPI/v2/",
// http.StripPrefix("/isv", kitSvc.Handler())).
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(PathTenantSync, s.endpoint("tenantSync", s.tenantSync))
	mux.Handle(PathApplicationSync, s.endpoint("applicationSync", s.applicationSync))
	mux.Handle(PathAuthSync, s.endpoint("authSync", s.authSync))
	mux.Handle(PathSingleOrgSync, s.endpoint("singleOrgSync", s.singleOrgSync))
	mux.Handle(PathAllOrgSync, s.endpoint("allOrgSync", s.allOrgSync))
	// anything else below the production address still gets a kit answer (policy 7)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.requests.WithLabelValues("unknown", kg.CodeBadParam).Inc()
		s.respond(w, Response{ResultCode: kg.CodeBadParam, ResultMsg: "invalid field path: no kit interface " + truncate(r.URL.Path, 80)}, "")
	})
	return mux
}

// MaxResultMsg is the documented maximum length of resultMsg: String(255)
// (joint-kit.md §1, "Response body").
const MaxResultMsg = 255

// Response is the kit response body.
type Response struct {
	ResultCode string `json:"resultCode"`
	ResultMsg  string `json:"resultMsg"`
}

type operation func(ctx context.Context, body []byte, now time.Time) error

// errReplay is a nonce seen before.
var errReplay = &kg.AuthError{Reason: "x-nonce was already used (replay)"}

func (s *Service) endpoint(name string, op operation) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		nonce, err := s.serve(ctx, r, op)
		code, msg := kg.CodeOf(err)
		if code == kg.CodeSuccess {
			msg = "Success"
		}
		if err != nil {
			lvl := slog.LevelInfo
			if code == kg.CodeInternal {
				lvl = slog.LevelError
			}
			s.log.Log(ctx, lvl, "kit request failed", "interface", name, "code", code, "err", err)
		}
		s.requests.WithLabelValues(name, code).Inc()
		s.respond(w, Response{ResultCode: code, ResultMsg: msg}, nonce)
	})
}

// serve authenticates and runs one kit request. recorded is the request's
// x-nonce once it is in kit_nonces (a new nonce, or a replayed one), else "":
// only such a nonce may sign the response (respond).
func (s *Service) serve(ctx context.Context, r *http.Request, op operation) (recorded string, err error) {
	if r.Method != http.MethodPost {
		return "", &kg.FieldError{Field: "method", Reason: "must be POST"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, s.cfg.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return "", &kg.FieldError{Field: "body", Reason: fmt.Sprintf("larger than %d bytes", s.cfg.MaxBody)}
		}
		return "", &kg.FieldError{Field: "body", Reason: "cannot be read"}
	}
	now := s.clk.Now()
	nonce := r.Header.Get("x-nonce")
	opts := kg.KitVerifyOptions{MaxFallbackBody: s.cfg.MaxFallbackBody, Acquire: func() (func(), error) { return s.acquireFallback(ctx) }}
	v, err := kg.VerifyKitSignWith(opts, s.cfg.Keys, r.Header.Get("x-sign"), nonce, r.Header.Get("x-timestamp"), body, now, s.cfg.Window)
	if err != nil {
		return "", err
	}
	s.signVariants.WithLabelValues(v.Variant, v.Timestamp).Inc()
	s.log.Debug("kit signature verified", "variant", v.Variant, "timestamp", v.Timestamp, "key_index", v.KeyIndex)
	if len(nonce) > 256 {
		return "", &kg.AuthError{Reason: "x-nonce is longer than 256 characters"}
	}
	if err := s.recordNonce(ctx, nonce, now); err != nil {
		if err == errReplay {
			return nonce, err
		}
		return "", err
	}
	return nonce, op(ctx, body, now)
}

// acquireFallback takes a fallback slot, waiting up to fallbackWait.
func (s *Service) acquireFallback(ctx context.Context) (func(), error) {
	release := func() { <-s.fallbacks }
	select {
	case s.fallbacks <- struct{}{}:
		return release, nil
	default:
	}
	t := time.NewTimer(s.fallbackWait)
	defer t.Stop()
	select {
	case s.fallbacks <- struct{}{}:
		return release, nil
	case <-t.C:
	case <-ctx.Done():
	}
	s.log.Warn("kit: no slot to check a signature over the sorted body; answered busy", "slots", cap(s.fallbacks))
	return nil, errBusy
}

// recordNonce stores a verified request's nonce; a nonce already stored is a
// replay. Nonces older than the replay horizon are pruned now and then.
func (s *Service) recordNonce(ctx context.Context, nonce string, now time.Time) error {
	res, err := s.db.Exec(ctx, `INSERT INTO kit_nonces (nonce, seen_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING`, nonce, now.UnixMilli())
	if err != nil {
		return fmt.Errorf("kit: record nonce: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("kit: record nonce: %w", err)
	}
	if n == 0 {
		return errReplay
	}
	s.pruneNonces(ctx, now)
	return nil
}

// nonceHorizon is how long nonces are kept: a request older than the window
// fails the timestamp check anyway, so a few windows suffice.
func (s *Service) nonceHorizon() time.Duration { return 5 * s.cfg.Window }

func (s *Service) pruneNonces(ctx context.Context, now time.Time) {
	s.pruneMu.Lock()
	due := now.Sub(s.lastPrune) >= s.cfg.Window || now.Before(s.lastPrune)
	if due {
		s.lastPrune = now
	}
	s.pruneMu.Unlock()
	if !due {
		return
	}
	if _, err := s.db.Exec(ctx, `DELETE FROM kit_nonces WHERE seen_at < $1`, now.Add(-s.nonceHorizon()).UnixMilli()); err != nil {
		s.log.Warn("kit: prune nonces", "err", err)
	}
}

// respond writes a kit response: HTTP 200, the JSON body, a Body-Sign header
// (policy 3) and, as a souk extension a peer may check, x-sign/x-timestamp/
// x-nonce computed like a request signature over the response body.
//
// That signature reuses the request's own nonce, and only one already in
// kit_nonces (recorded, from serve): replayed as a request, a response fails
// as a replay (000001), so the responses are no signing oracle. A response
// to a request that did not authenticate (or to no kit interface) carries no
// x-sign: it answers a caller who may not hold the key.
func (s *Service) respond(w http.ResponseWriter, resp Response, recorded string) {
	resp.ResultMsg = truncate(resp.ResultMsg, MaxResultMsg-1) // "…" is the 255th character
	body, err := json.Marshal(resp)
	if err != nil { // cannot happen: two strings
		body = []byte(`{"resultCode":"000005","resultMsg":"internal error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Cache-Control", "no-store")
	if len(s.cfg.Keys) > 0 {
		key := s.cfg.Keys[0]
		h.Set("Body-Sign", kg.BodySignHeader(key, body))
		if recorded != "" {
			ts := strconv.FormatInt(s.clk.Now().UnixMilli(), 10)
			h.Set("x-nonce", recorded)
			h.Set("x-timestamp", ts)
			h.Set("x-sign", kg.KitSign(key, recorded, ts, body))
		}
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// forUpdate locks selected rows on PostgreSQL; SQLite write transactions are
// already exclusive (BEGIN IMMEDIATE).
func forUpdate(tx *db.Tx) string {
	if tx.Dialect == db.Postgres {
		return " FOR UPDATE"
	}
	return ""
}
