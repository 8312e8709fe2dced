package merchant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/kg"
)

// auditEntry is one row of audit_log.
type auditEntry struct {
	At          time.Time
	Source      string // "kg" or "api"
	Remote      string
	Activity    string
	ResultCode  string
	KeyIndex    int
	InstanceID  string
	OrderID     string
	OrderLineID string
	BusinessID  string
	TestFlag    bool
	Latency     time.Duration
	Message     string
}

func (m *Merchant) audit(ctx context.Context, e auditEntry) {
	if err := insertAudits(context.WithoutCancel(ctx), m.db, []auditEntry{e}); err != nil {
		m.log.Error("audit log write failed", "activity", e.Activity, "err", err)
	}
}

// RejectedAudit is the SQL condition on audit_log of the records of calls
// that no credential authenticated: a basic-interface call no key verified
// (key_index -1: bad or missing signature, stale, or refused before the
// signature was checked), a kit sync call answered 000001, a management API
// call answered 401 (bad token) or 503 (API disabled) — "HTTP Unauthorized"
// for a handler mounted with HandleAdmin, the tenant directory API, whose
// record carries the status as auditRecorder.code writes it — and a call of
// a path no route serves (source http). Config.AuditRetentionRejected prunes
// them.
const RejectedAudit = `((source = 'kg' AND key_index = -1) OR (source = 'kit' AND result_code = '000001') OR
	(source = 'api' AND result_code IN ('401', '503', 'HTTP Unauthorized')) OR source = 'http')`

// auditPruneChunk bounds the rows one pruning statement deletes, so that a
// large backlog (a first pruning, or a flood of probes) never holds the
// writer for long: the requests waiting for it get their turn between chunks.
const auditPruneChunk = 5000

// pruneAudit deletes the audit records past their retention, in chunks of
// auditPruneChunk, and returns how many it deleted.
func (m *Merchant) pruneAudit(ctx context.Context, now time.Time) (int64, error) {
	var total int64
	prune := func(retention time.Duration, cond string) error {
		if retention <= 0 {
			return nil
		}
		q := `DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < $1` + cond + ` ORDER BY at LIMIT ` + strconv.Itoa(auditPruneChunk) + `)`
		for {
			res, err := m.db.Exec(ctx, q, now.Add(-retention).UnixMilli())
			if err != nil {
				return fmt.Errorf("prune audit log: %w", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("prune audit log: %w", err)
			}
			total += n
			if n < auditPruneChunk || ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	if err := prune(m.cfg.AuditRetention, ""); err != nil {
		return total, err
	}
	if r := m.cfg.AuditRetentionRejected; r > 0 && (m.cfg.AuditRetention <= 0 || r < m.cfg.AuditRetention) {
		if err := prune(r, " AND "+RejectedAudit); err != nil {
			return total, err
		}
	}
	return total, nil
}

func (m *Merchant) pruneNonces(ctx context.Context, now time.Time) (int64, error) {
	res, err := m.db.Exec(ctx, `DELETE FROM merchant_nonces WHERE seen_at < $1`, now.Add(-m.cfg.NonceRetention).UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("prune nonces: %w", err)
	}
	return res.RowsAffected()
}

// maxNonce bounds the nonce length stored in the cache.
const maxNonce = 128

// serveKG is the production address: every basic interface, POSTed with a
// signed query string. It always answers HTTP 200 with JSON and a Body-Sign
// header, and leaves an audit record.
func (m *Merchant) serveKG(w http.ResponseWriter, r *http.Request) {
	start := time.Now() // latency only; protocol time comes from the clock
	now := m.clock.Now()
	e := auditEntry{At: now, Source: "kg", Remote: m.remoteAddr(r), KeyIndex: -1, Activity: "unknown"}
	var (
		rep *reply
		err error
	)
	claim := &nonceClaim{at: now}
	func() {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v", p)
				m.log.Error("panic in basic interface", "activity", e.Activity, "panic", p, "stack", string(debug.Stack()))
			}
		}()
		// The budget bounds only what may be cut short (Query Order, the
		// inline hand-off, the change check: each activity applies it). A
		// database write is never abandoned half-way by the budget or by a
		// client that hung up: it finishes (bounded), then the answer says what
		// was stored, rather than 000005 for work that could have been done.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), m.cfg.Budget+createGrace)
		defer cancel()
		rep, err = m.handleKG(withNonceClaim(ctx, claim), r, now, &e)
	}()
	code, msg := kg.CodeOf(err)
	// The audit record, with the nonce unless a write of the request stored
	// it already, in one group-committed transaction before the answer.
	ferr := m.finishRequest(r.Context(), claim, func(replay bool) auditEntry {
		a := e
		a.ResultCode, a.Message = code, msg
		if replay {
			a.ResultCode, a.Message = kg.CodeOf(errReplay)
		} else if rep != nil && rep.InstanceID != "" && a.InstanceID == "" {
			a.InstanceID = rep.InstanceID
		}
		a.Latency = time.Since(start)
		return a
	})
	switch {
	case errors.Is(ferr, errReplay):
		rep, err = nil, ferr
		code, msg = kg.CodeOf(err)
	case ferr != nil && claim.nonce != "" && !claim.stored:
		// Without its nonce stored the request cannot be told from a replay.
		m.log.Error("audit and nonce write failed", "activity", e.Activity, "err", ferr)
		rep, err = nil, ferr
		code, msg = kg.CodeOf(err)
	case ferr != nil:
		m.log.Error("audit log write failed", "activity", e.Activity, "err", ferr)
	}
	if code == kg.CodeInternal {
		m.log.Error("basic interface failed", "activity", e.Activity, "instanceId", e.InstanceID, "orderId", e.OrderID, "err", err)
	} else if err != nil {
		m.log.Info("basic interface refused", "activity", e.Activity, "code", code, "msg", msg, "remote", e.Remote)
	}
	body := m.encodeReply(e.Activity, code, msg, rep)
	key := m.cfg.AccessKeys[0]
	if keys := m.verifyKeys(); e.KeyIndex >= 0 && e.KeyIndex < len(keys) {
		key = keys[e.KeyIndex]
	}
	e.ResultCode, e.Message = code, msg
	if rep != nil && rep.InstanceID != "" && e.InstanceID == "" {
		e.InstanceID = rep.InstanceID
	}
	m.metrics.requests.WithLabelValues(e.Activity, metricCode(code)).Inc()
	m.metrics.latency.WithLabelValues(e.Activity).Observe(time.Since(start).Seconds())
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Body-Sign", kg.BodySignHeader(key, body))
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func (m *Merchant) encodeReply(activity, code, msg string, rep *reply) []byte {
	msg = truncateRunes(msg, 255)
	var v any
	switch {
	case activity == kg.ActivityNewInstance && rep != nil && rep.InstanceID != "":
		v = kg.NewInstanceResponse{ResultCode: code, ResultMsg: msg, InstanceID: rep.InstanceID}
	case activity == kg.ActivityQueryInstance && rep != nil:
		v = kg.QueryInstanceResponse{ResultCode: code, ResultMsg: msg, EncryptType: rep.EncryptType, Info: rep.Info}
	default:
		v = kg.Response{ResultCode: code, ResultMsg: msg}
	}
	body, err := kg.EncodeResponse(v)
	if err != nil {
		m.log.Error("encode response", "activity", activity, "err", err)
		body, _ = json.Marshal(kg.Response{ResultCode: kg.CodeInternal, ResultMsg: "internal error"})
	}
	return body
}

func truncateRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}

// verifyKeys are the keys a request may be signed with: the access keys,
// then the general keys (their indexes follow the access keys').
func (m *Merchant) verifyKeys() []string {
	if len(m.cfg.GeneralKeys) == 0 {
		return m.cfg.AccessKeys
	}
	return append(append(make([]string, 0, len(m.cfg.AccessKeys)+len(m.cfg.GeneralKeys)), m.cfg.AccessKeys...), m.cfg.GeneralKeys...)
}

// handleKG authenticates, decodes and dispatches one request.
func (m *Merchant) handleKG(ctx context.Context, r *http.Request, now time.Time, e *auditEntry) (*reply, error) {
	if r.Method != http.MethodPost {
		return nil, &kg.FieldError{Field: "method", Reason: "must be POST, got " + r.Method}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, m.cfg.MaxBody+1))
	if err != nil {
		return nil, &kg.FieldError{Field: "body", Reason: "could not be read"}
	}
	if int64(len(body)) > m.cfg.MaxBody {
		return nil, &kg.FieldError{Field: "body", Reason: fmt.Sprintf("is larger than %d bytes", m.cfg.MaxBody)}
	}
	q := r.URL.Query()
	nonce := q.Get("nonce")
	idx, variant, err := kg.VerifyV2(m.verifyKeys(), q.Get("signature"), nonce, q.Get("timestamp"), body, now, m.cfg.Window)
	if err != nil {
		return nil, err
	}
	e.KeyIndex = idx
	// Decoded once: the key-kind check below reads the activity the request
	// is dispatched on (a second reading of the body, with other rules for
	// duplicate or differently cased keys, could be made to disagree).
	req, variants, decodeErr := kg.DecodeRequestVariants(body)
	if len(m.cfg.GeneralKeys) > 0 && decodeErr == nil {
		// orderNotify is signed with a general key, the basic interfaces
		// with an access key: a key of the other kind does not authenticate.
		// (A body that does not decode acts on nothing: it is answered
		// 000002 whichever key signed it.)
		want := m.cfg.AccessKeys
		if _, ok := req.(*kg.OrderNotifyRequest); ok {
			want = m.cfg.GeneralKeys
		}
		if !slices.Contains(want, m.verifyKeys()[idx]) {
			e.KeyIndex = -1
			return nil, &kg.AuthError{Reason: "signature does not match"}
		}
	}
	hexCase := kg.SignatureHexCase(q.Get("signature"))
	m.metrics.variants.WithLabelValues("timestamp_" + variant).Inc()
	m.metrics.variants.WithLabelValues("key_" + strconv.Itoa(idx)).Inc()
	m.metrics.variants.WithLabelValues("signature_" + hexCase).Inc()
	m.log.Debug("request signature verified", "variant", variant, "keyIndex", idx, "hex", hexCase)
	if len(nonce) > maxNonce {
		return nil, &kg.AuthError{Reason: "nonce is too long"}
	}
	// The nonce is stored with the request's first write, or with its audit
	// record (group.go).
	if c := nonceClaimFrom(ctx); c != nil {
		c.nonce = nonce
	} else if err := m.writeTx(withNonceClaim(ctx, &nonceClaim{nonce: nonce, at: now}), func(*db.Tx) error { return nil }); err != nil {
		return nil, err
	}
	if err := decodeErr; err != nil {
		var fe *kg.FieldError
		if errors.As(err, &fe) && fe.Field == "activity" {
			e.Activity = "invalid"
		}
		return nil, err
	}
	e.Activity = req.ActivityName()
	e.TestFlag = req.IsTest()
	// Which documented reading each open point arrived in (policy 7).
	for _, v := range variants {
		m.metrics.variants.WithLabelValues(v).Inc()
	}
	if m.log.Enabled(ctx, slog.LevelDebug) {
		m.log.Debug("request variants accepted", "activity", e.Activity, "variants", variants)
	}
	switch x := req.(type) {
	case *kg.NewInstanceRequest:
		e.OrderID, e.OrderLineID, e.BusinessID = x.OrderID, x.OrderLineID, x.BusinessID
		return m.NewInstance(ctx, NewInstanceInput{OrderID: x.OrderID, OrderLineID: x.OrderLineID, BusinessID: x.BusinessID, TestFlag: x.IsTest()})
	case *kg.QueryInstanceRequest:
		e.InstanceID = x.InstanceID
		return m.QueryInstances(ctx, x.InstanceIDs, idx)
	case *kg.RefreshInstanceRequest:
		e.InstanceID, e.OrderID, e.OrderLineID = x.InstanceID, x.OrderID, x.OrderLineID
		return m.Refresh(ctx, RefreshInput{InstanceID: x.InstanceID, OrderID: x.OrderID, OrderLineID: x.OrderLineID, Scene: x.Scene,
			ProductID: x.ProductID, Expire: x.Expire, TestFlag: x.IsTest()})
	case *kg.UpdateInstanceStatusRequest:
		e.InstanceID = x.InstanceID
		return m.UpdateStatus(ctx, x.InstanceID, x.Status, x.IsTest())
	case *kg.ReleaseInstanceRequest:
		e.InstanceID, e.OrderID, e.OrderLineID = x.InstanceID, x.OrderID, x.OrderLineID
		return m.Release(ctx, x.InstanceID, x.OrderID, x.OrderLineID, x.IsTest())
	case *kg.UpgradeInstanceRequest:
		e.InstanceID, e.OrderID, e.OrderLineID = x.InstanceID, x.OrderID, x.OrderLineID
		return m.Upgrade(ctx, x.InstanceID, x.OrderID, x.OrderLineID, x.IsTest())
	case *kg.ChangeInstanceCheckRequest:
		e.InstanceID = x.InstanceID
		// productInfo goes to the vendor app exactly as received (its
		// structure is undocumented); which form arrived is counted and
		// logged (policy 7).
		m.metrics.variants.WithLabelValues("productInfo_" + x.ProductInfo.Form).Inc()
		m.log.Debug("changeInstanceCheck productInfo accepted", "form", x.ProductInfo.Form)
		return m.ChangeCheck(ctx, x.InstanceID, x.ProductInfo.JSON, x.IsTest())
	case *kg.OrderNotifyRequest:
		e.OrderID, e.OrderLineID = x.OrderID, x.OrderLineID
		return m.OrderNotify(ctx, x.OrderID, x.OrderLineID, x.IsTest())
	}
	return nil, &kg.FieldError{Field: "activity", Reason: "unsupported activity " + req.ActivityName()}
}
