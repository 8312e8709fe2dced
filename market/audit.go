package market

// The audit log: a decorator around the market's router records every
// management action (admin API call), every inbound open-API call (Query
// Order, usage push) and every call of the identity provider (login pages
// and form, OAuth authorize, token, userinfo, logout) in market_audit: who
// (the admin token's id — a hash prefix, never the token —, the open API's
// AK, the OAuth client or the user signing in), route, method, status,
// latency, result and the ids the call named. Bodies are never recorded:
// they may carry credentials.

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/kg"
)

// AuditRecord is one audited call. At is the market clock when the call
// arrived.
type AuditRecord struct {
	ID        int64             `json:"id"`
	At        time.Time         `json:"at"`
	Kind      string            `json:"kind"`  // admin | openapi | idp
	Actor     string            `json:"actor"` // admin:<token id> | bad-token:<token id> | anonymous | ak:<AK> | seller:<id> | client:<id> | user:<enterprise>/<name>
	Method    string            `json:"method"`
	Route     string            `json:"route"`
	Path      string            `json:"path"`
	Status    int               `json:"status"`
	Result    string            `json:"result,omitempty"`
	LatencyMS float64           `json:"latencyMs"`
	Targets   map[string]string `json:"targets,omitempty"`
	Remote    string            `json:"remote,omitempty"`
}

// Audit kinds.
const (
	AuditAdmin   = "admin"
	AuditOpenAPI = "openapi"
	AuditIdP     = "idp"
)

// TokenID is the public id of a bearer token in the audit log: the first 12
// hex digits of its SHA-256.
func TokenID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}

// AuditOptions configures Audit.
type AuditOptions struct {
	// AdminToken is the token of the admin API, to tell an admin from a bad token.
	AdminToken string
	// Timer measures latency; default real time (the market clock may be virtual).
	Timer clock.Clock
	// IdP lists the path prefixes of the identity provider (its OAuth
	// endpoints under /api/v1, its pages): audited as kind idp, not as
	// management actions.
	IdP []string
}

type auditNote struct {
	actor, result string
	targets       map[string]string
}

type auditKey struct{}

// NoteAudit lets a handler add what only it knows (the AK of an open-API
// call, its resultCode, the ids it touched; the IdP's client and user) to
// the request's audit record. Outside an audited request it does nothing.
func NoteAudit(ctx context.Context, actor, result string, targets map[string]string) {
	n, _ := ctx.Value(auditKey{}).(*auditNote)
	if n == nil {
		return
	}
	if actor != "" {
		n.actor = actor
	}
	if result != "" {
		n.result = result
	}
	for k, v := range targets {
		if v == "" {
			continue
		}
		if n.targets == nil {
			n.targets = map[string]string{}
		}
		n.targets[k] = v
	}
}

// Audit decorates h (normally the market's Router) with the audit log.
// Requests outside /api/v1 and the open-API paths (health checks, the IdP's
// pages) pass through unrecorded. A failure to write the record is logged,
// never turned into a failed request.
func (m *Market) Audit(h http.Handler, opts AuditOptions) http.Handler {
	timer := opts.Timer
	if timer == nil {
		timer = clock.Real{}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := auditKind(r.URL.Path, opts.IdP)
		if kind == "" {
			h.ServeHTTP(w, r)
			return
		}
		start, at := timer.Now(), m.clock.Now().UTC()
		note := &auditNote{}
		if kind == AuditAdmin {
			note.actor = adminActor(r, opts.AdminToken)
		} else if ak := apigAccess(r.Header.Get("Authorization")); ak != "" {
			note.actor = "ak:" + ak
		}
		rec := &statusRecorder{ResponseWriter: w}
		r = r.WithContext(context.WithValue(r.Context(), auditKey{}, note))
		h.ServeHTTP(rec, r)
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		if note.result == "" && kind != AuditOpenAPI && status >= 400 {
			note.result = rec.errCode()
		}
		if note.actor == "" {
			note.actor = "anonymous"
		}
		targets := note.targets
		if r.Pattern != "" {
			for _, name := range patternWildcards(r.Pattern) {
				if v := r.PathValue(name); v != "" {
					if targets == nil {
						targets = map[string]string{}
					}
					if _, set := targets[name]; !set {
						targets[name] = v
					}
				}
			}
		}
		route := r.Pattern
		if route == "" {
			route = "(no route)"
		}
		a := AuditRecord{At: at, Kind: kind, Actor: note.actor, Method: r.Method, Route: route, Path: r.URL.Path,
			Status: status, Result: note.result, Targets: targets, Remote: remoteHost(r.RemoteAddr)}
		lat := timer.Now().Sub(start)
		// The request's context may be cancelled when the client went away;
		// the record is written anyway.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
		defer cancel()
		if err := m.writeAudit(ctx, a, lat); err != nil {
			m.log.ErrorContext(ctx, "market: audit", "route", route, "err", err)
		}
	})
}

func auditKind(path string, idp []string) string {
	switch path {
	case kg.QueryOrderPath, kg.UsagePushPath:
		return AuditOpenAPI
	}
	for _, p := range idp {
		if path == strings.TrimSuffix(p, "/") || strings.HasPrefix(path, p) {
			return AuditIdP
		}
	}
	if path != APIPrefix && !strings.HasPrefix(path, APIPrefix+"/") {
		return ""
	}
	return AuditAdmin
}

func adminActor(r *http.Request, token string) string {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch {
	case !ok || got == "":
		return "anonymous"
	case token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1:
		return "admin:" + TokenID(got)
	}
	return "bad-token:" + TokenID(got)
}

// apigAccess reads Access=<AK> from an SDK-HMAC-SHA256 Authorization header.
func apigAccess(h string) string {
	_, rest, ok := strings.Cut(h, "Access=")
	if !ok {
		return ""
	}
	ak, _, _ := strings.Cut(rest, ",")
	ak = strings.TrimSpace(ak)
	if len(ak) > 128 {
		ak = ak[:128]
	}
	return ak
}

func patternWildcards(p string) []string {
	var out []string
	for {
		i := strings.IndexByte(p, '{')
		if i < 0 {
			return out
		}
		j := strings.IndexByte(p[i:], '}')
		if j < 0 {
			return out
		}
		name := strings.TrimSuffix(p[i+1:i+j], "...")
		if name != "$" {
			out = append(out, name)
		}
		p = p[i+j+1:]
	}
}

func remoteHost(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// statusRecorder keeps the status and the start of an error answer (to read
// its code; never stored).
type statusRecorder struct {
	http.ResponseWriter
	status int
	head   []byte
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	if s.status >= 400 && len(s.head) < 2048 {
		n := min(len(b), 2048-len(s.head))
		s.head = append(s.head, b[:n]...)
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// errCode reads the code of an error answer: the admin API's "code", or an
// OAuth error's "error" (RFC 6749 §5.2).
func (s *statusRecorder) errCode() string {
	var e struct {
		Code  string `json:"code"`
		Error string `json:"error"`
	}
	if json.Unmarshal(s.head, &e) != nil {
		return ""
	}
	if e.Code == "" {
		e.Code = e.Error
	}
	if len(e.Code) > 64 {
		return ""
	}
	return e.Code
}

func (m *Market) writeAudit(ctx context.Context, a AuditRecord, lat time.Duration) error {
	var targets string
	if len(a.Targets) > 0 {
		t := make(map[string]string, len(a.Targets))
		for k, v := range a.Targets {
			t[db.Text(k, 64)] = db.Text(v, 512)
		}
		b, err := json.Marshal(t)
		if err != nil {
			return fmt.Errorf("targets: %w", err)
		}
		targets = string(b)
	}
	// The path, the actor and the ids come from the request: PostgreSQL
	// refuses NUL and bytes that are not UTF-8 (a probe of /api/v1/%FF).
	_, err := m.db.Exec(ctx, `INSERT INTO market_audit (at, kind, actor, method, route, path, status, result, latency_us, targets, remote)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		db.Millis(a.At), a.Kind, db.Text(a.Actor, 512), db.Text(a.Method, 32), db.Text(a.Route, 512), db.Text(a.Path, 2048),
		a.Status, db.Text(a.Result, 128), lat.Microseconds(), targets, db.Text(a.Remote, 128))
	if err != nil {
		return fmt.Errorf("insert: %w", err)
	}
	return nil
}

// AuditFilter selects audit records, newest first.
type AuditFilter struct {
	Kind     string // "" = any
	Actor    string // "" = any
	BeforeID int64  // 0 = from the newest; else records with id < BeforeID (paging)
	Limit    int    // default 100, at most 1000
}

// ListAudit returns audit records, newest first.
func (m *Market) ListAudit(ctx context.Context, f AuditFilter) ([]AuditRecord, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if f.Limit > 1000 {
		f.Limit = 1000
	}
	q := `SELECT id, at, kind, actor, method, route, path, status, result, latency_us, targets, remote FROM market_audit
		WHERE ($1 = '' OR kind = $1) AND ($2 = '' OR actor = $2) AND ($3 = 0 OR id < $3) ORDER BY id DESC LIMIT ` + strconv.Itoa(f.Limit)
	rows, err := m.db.Query(ctx, q, f.Kind, f.Actor, f.BeforeID)
	if err != nil {
		return nil, fmt.Errorf("market: audit: %w", err)
	}
	defer rows.Close()
	out := []AuditRecord{}
	for rows.Next() {
		var a AuditRecord
		var at, lat int64
		var targets string
		if err := rows.Scan(&a.ID, &at, &a.Kind, &a.Actor, &a.Method, &a.Route, &a.Path, &a.Status, &a.Result, &lat, &targets, &a.Remote); err != nil {
			return nil, fmt.Errorf("market: audit: %w", err)
		}
		a.At, a.LatencyMS = db.FromMillis(at), float64(lat)/1000
		if targets != "" {
			if err := json.Unmarshal([]byte(targets), &a.Targets); err != nil {
				return nil, fmt.Errorf("market: audit %d: targets: %w", a.ID, err)
			}
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("market: audit: %w", err)
	}
	return out, nil
}

// auditMKT answers an open API's MKT error and notes its code for the audit log.
func auditMKT(w http.ResponseWriter, r *http.Request, code, msg string, extra any) {
	NoteAudit(r.Context(), "", code, nil)
	writeMKT(w, code, msg, extra)
}
