package merchant

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/internal/bearer"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/merchant/handoff"
)

// maxAPIBody caps management API bodies.
const maxAPIBody = 1 << 20

// routes builds the merchant's handlers: everything on one mux (Handler),
// and the same routes split between the public side (the production
// address, the kit sync interfaces, single sign-on) and the admin side (the
// management and directory APIs, /metrics), for a separate admin listener.
// /healthz and /readyz answer on both.
func (m *Merchant) routes() {
	m.all, m.public, m.admin = http.NewServeMux(), http.NewServeMux(), http.NewServeMux()
	m.route(sidePublic, m.cfg.BasePath, http.HandlerFunc(m.serveKG))
	if !strings.HasSuffix(m.cfg.BasePath, "/") {
		// The production address as registered with a trailing slash.
		m.route(sidePublic, m.cfg.BasePath+"/{$}", http.HandlerFunc(m.serveKG))
	}
	m.route(sideBoth, "GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	}))
	m.route(sideBoth, "GET /readyz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := m.db.PingContext(ctx); err != nil {
			m.log.Warn("readiness: database ping failed", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "database unavailable\n")
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	}))
	m.route(sideAdmin, "GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry}))

	api := func(pattern, route string, h func(r *http.Request, e *auditEntry) (int, any, error)) {
		m.route(sideAdmin, pattern, m.serveAPI(route, h))
	}
	api("GET /api/v1/instances/{id}", "instance", m.apiGetInstance)
	api("POST /api/v1/instances/{id}/appinfo", "appinfo", m.apiSetAppInfo)
	api("POST /api/v1/instances/{id}/failure", "failure", m.apiFailInstance)
	api("POST /api/v1/instances/{id}/usage", "usage", m.apiRecordUsage)
	api("GET /api/v1/instances/{id}/usage", "usage-list", m.apiListUsage)
	api("GET /api/v1/events", "events", m.apiListEvents)
	api("GET /api/v1/events/{id}", "event", m.apiGetEvent)
	api("POST /api/v1/events/{id}/replay", "replay", m.apiReplayEvent)
	api("POST /api/v1/events/replay-dead", "replay-dead", m.apiReplayDead)
}

type side int

const (
	sidePublic side = iota
	sideAdmin
	sideBoth
)

func (m *Merchant) route(s side, pattern string, h http.Handler) {
	m.all.Handle(pattern, h)
	if s != sideAdmin {
		m.public.Handle(pattern, h)
	}
	if s != sidePublic {
		m.admin.Handle(pattern, h)
	}
}

// Handle mounts another handler on the public side (e.g. the kit sync
// interfaces under the production address, single sign-on); its calls are
// audited.
func (m *Merchant) Handle(pattern string, h http.Handler) {
	m.route(sidePublic, pattern, m.audited(pattern, h))
}

// HandleAdmin mounts another handler on the admin side (e.g. the kit
// directory API); its calls are audited.
func (m *Merchant) HandleAdmin(pattern string, h http.Handler) {
	m.route(sideAdmin, pattern, m.audited(pattern, h))
}

// apiError is a management API failure with its HTTP status.
type apiError struct {
	Status int
	Msg    string
	Field  string
}

func (e *apiError) Error() string { return e.Msg }

// apiStatus maps errors to HTTP statuses for the management API (its one place).
func apiStatus(err error) (int, map[string]string) {
	var ae *apiError
	if errors.As(err, &ae) {
		b := map[string]string{"error": ae.Msg}
		if ae.Field != "" {
			b["field"] = ae.Field
		}
		return ae.Status, b
	}
	var fe *kg.FieldError
	if errors.As(err, &fe) {
		return http.StatusBadRequest, map[string]string{"error": fe.Error(), "field": fe.Field}
	}
	switch {
	case errors.Is(err, handoff.ErrNotFound):
		return http.StatusNotFound, map[string]string{"error": err.Error()}
	case errors.Is(err, ErrNotPayPerUse), errors.Is(err, ErrAlreadyReady):
		return http.StatusConflict, map[string]string{"error": err.Error()}
	}
	if code, msg := kg.CodeOf(err); code == kg.CodeNoInstance {
		return http.StatusNotFound, map[string]string{"error": msg}
	}
	return http.StatusInternalServerError, map[string]string{"error": "internal error"}
}

func (m *Merchant) serveAPI(route string, h func(r *http.Request, e *auditEntry) (int, any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		e := auditEntry{At: m.clock.Now(), Source: "api", Remote: m.remoteAddr(r), Activity: r.Method + " " + route, KeyIndex: -1,
			InstanceID: r.PathValue("id")}
		status, body, err := func() (status int, body any, err error) {
			defer func() {
				if p := recover(); p != nil {
					m.log.Error("panic in management API", "route", route, "panic", p, "stack", string(debug.Stack()))
					status, body, err = 0, nil, fmt.Errorf("panic: %v", p)
				}
			}()
			if err := m.authorize(r); err != nil {
				return 0, nil, err
			}
			if strings.IndexByte(r.URL.Path, 0) >= 0 { // %00: no instance or event id has one
				return 0, nil, &apiError{Status: http.StatusBadRequest, Msg: "the path contains a NUL character (%00)", Field: "path"}
			}
			return h(r, &e)
		}()
		if err != nil {
			var b map[string]string
			status, b = apiStatus(err)
			body = b
			if status >= 500 {
				m.log.Error("management API failed", "route", route, "err", err)
			}
			e.Message = b["error"]
		}
		e.ResultCode = strconv.Itoa(status)
		e.Latency = time.Since(start)
		m.audit(r.Context(), e)
		m.metrics.apiCalls.WithLabelValues(route, e.ResultCode).Inc()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(body)
	}
}

func (m *Merchant) authorize(r *http.Request) error {
	if m.cfg.AdminToken == "" {
		return &apiError{Status: http.StatusServiceUnavailable, Msg: "management API disabled: set SOUK_ADMIN_TOKEN"}
	}
	if !bearer.Match(r.Header.Get("Authorization"), SplitKeys(m.cfg.AdminToken)) {
		return &apiError{Status: http.StatusUnauthorized, Msg: "missing or wrong bearer token"}
	}
	return nil
}

func decodeAPI(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAPIBody+1))
	if err != nil {
		return &apiError{Status: http.StatusBadRequest, Msg: "body could not be read", Field: "body"}
	}
	if len(body) > maxAPIBody {
		return &apiError{Status: http.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("body is larger than %d bytes", maxAPIBody), Field: "body"}
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &apiError{Status: http.StatusBadRequest, Msg: fmt.Sprintf("field %s: must be %s", te.Field, te.Type), Field: te.Field}
		}
		return &apiError{Status: http.StatusBadRequest, Msg: "body is not valid JSON: " + err.Error(), Field: "body"}
	}
	if bytes.Contains(body, []byte(`\u0000`)) { // only so can JSON carry a NUL: find the member
		var tree any
		if json.Unmarshal(body, &tree) == nil {
			if field, ok := nulMember("", tree); ok {
				return &apiError{Status: http.StatusBadRequest, Msg: "field " + field + ": contains a NUL character (\\u0000)", Field: field}
			}
		}
	}
	return nil
}

// nulMember finds a string holding NUL in a decoded JSON value and names its
// member (a.b[2].c). NUL is valid JSON and UTF-8, but no PostgreSQL text can
// hold it, and nothing souk stores has one.
func nulMember(path string, v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return path, strings.IndexByte(x, 0) >= 0
	case map[string]any:
		for k, e := range x {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if strings.IndexByte(k, 0) >= 0 {
				return p, true
			}
			if f, ok := nulMember(p, e); ok {
				return f, true
			}
		}
	case []any:
		for i, e := range x {
			if f, ok := nulMember(fmt.Sprintf("%s[%d]", path, i), e); ok {
				return f, true
			}
		}
	}
	return "", false
}

func (m *Merchant) apiGetInstance(r *http.Request, _ *auditEntry) (int, any, error) {
	inst, err := loadInstance(r.Context(), m.db, r.PathValue("id"))
	if errors.Is(err, errNotFound) {
		return 0, nil, errNoInstance(r.PathValue("id"))
	}
	if err != nil {
		return 0, nil, err
	}
	if inst.AppInfo != nil {
		cp := *inst.AppInfo
		if cp.Password != "" {
			cp.Password = "******"
		}
		inst.AppInfo = &cp
	}
	return http.StatusOK, inst, nil
}

// SetAppInfo completes provisioning of an instance (or replaces its appInfo).
func (m *Merchant) SetAppInfo(ctx context.Context, instanceID string, a *AppInfo) error {
	return m.db.Tx(ctx, func(tx *db.Tx) error {
		return m.setAppInfoTx(ctx, tx, m.clock.Now(), instanceID, a)
	})
}

func (m *Merchant) apiSetAppInfo(r *http.Request, _ *auditEntry) (int, any, error) {
	var body struct {
		AppInfo *AppInfo `json:"appInfo"`
		bareAppInfo
	}
	if err := decodeAPI(r, &body); err != nil {
		return 0, nil, err
	}
	a := body.AppInfo
	if a == nil { // the appInfo object itself may be the body
		a = (*AppInfo)(&body.bareAppInfo)
	}
	if err := m.SetAppInfo(r.Context(), r.PathValue("id"), a); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"instanceId": r.PathValue("id"), "phase": PhaseReady}, nil
}

// FailInstance records that the vendor app refuses an instance's create,
// with a create-instance result code (000100–000107) and message (at most
// 255 characters): newInstance and queryInstance then answer them. An
// instance that is already ready cannot be refused (ErrAlreadyReady);
// SetAppInfo completes a failed instance.
func (m *Merchant) FailInstance(ctx context.Context, instanceID, code, msg string) error {
	if err := validateRefusal(code, msg); err != nil {
		return err
	}
	return m.db.Tx(ctx, func(tx *db.Tx) error {
		return failTx(ctx, tx, m.clock.Now(), instanceID, code, msg)
	})
}

func (m *Merchant) apiFailInstance(r *http.Request, e *auditEntry) (int, any, error) {
	var body Failure
	if err := decodeAPI(r, &body); err != nil {
		return 0, nil, err
	}
	if body.ResultCode == "" {
		return 0, nil, &kg.FieldError{Field: "resultCode", Reason: "is required (000100–000107)"}
	}
	e.Message = "resultCode " + body.ResultCode
	if err := m.FailInstance(r.Context(), r.PathValue("id"), body.ResultCode, body.ResultMsg); err != nil {
		return 0, nil, err
	}
	msg := body.ResultMsg
	if msg == "" {
		msg, _ = kg.CodeMessage(body.ResultCode)
	}
	return http.StatusOK, map[string]any{"instanceId": r.PathValue("id"), "phase": PhaseFailed, "resultCode": body.ResultCode, "resultMsg": msg}, nil
}

// bareAppInfo lets the appinfo endpoint accept the bare appInfo object.
type bareAppInfo AppInfo

func (m *Merchant) apiRecordUsage(r *http.Request, _ *auditEntry) (int, any, error) {
	var body struct {
		Records      []UsageRecordInput `json:"records"`
		UsageInfo    []UsageInfo        `json:"usageInfo"`
		DashboardURL string             `json:"dashboardUrl"`
		UsageRecordInput
	}
	if err := decodeAPI(r, &body); err != nil {
		return 0, nil, err
	}
	id := r.PathValue("id")
	if body.MeteringSN != "" {
		body.Records = append(body.Records, body.UsageRecordInput)
	}
	if len(body.Records) == 0 && body.UsageInfo == nil {
		return 0, nil, &kg.FieldError{Field: "records", Reason: "is required (or usageInfo)"}
	}
	inserted := 0
	if len(body.Records) > 0 {
		n, err := m.RecordUsage(r.Context(), id, body.Records, body.DashboardURL)
		if err != nil {
			return 0, nil, err
		}
		inserted = n
	}
	if body.UsageInfo != nil {
		err := m.db.Tx(r.Context(), func(tx *db.Tx) error {
			inst, err := activeInstance(r.Context(), tx, id)
			if err != nil {
				return err
			}
			return setUsageInfoTx(r.Context(), tx, m.clock.Now(), inst.ID, body.UsageInfo)
		})
		if err != nil {
			return 0, nil, err
		}
	}
	return http.StatusOK, map[string]any{"instanceId": id, "recorded": inserted, "duplicates": len(body.Records) - inserted}, nil
}

func (m *Merchant) apiListUsage(r *http.Request, _ *auditEntry) (int, any, error) {
	q := r.URL.Query()
	f := UsageFilter{State: q.Get("state")}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return 0, nil, &apiError{Status: http.StatusBadRequest, Msg: "limit must be 1..1000", Field: "limit"}
		}
		f.Limit = n
	}
	recs, err := m.ListUsage(r.Context(), r.PathValue("id"), f)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"instanceId": r.PathValue("id"), "records": recs}, nil
}

func (m *Merchant) apiListEvents(r *http.Request, _ *auditEntry) (int, any, error) {
	q := r.URL.Query()
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return 0, nil, &apiError{Status: http.StatusBadRequest, Msg: "limit must be 1..1000", Field: "limit"}
		}
		limit = n
	}
	if s := q.Get("state"); s != "" && !handoff.IsState(s) {
		return 0, nil, &apiError{Status: http.StatusBadRequest, Msg: "state must be pending, delivered or dead", Field: "state"}
	}
	evs, err := handoff.List(r.Context(), m.db, handoff.Filter{State: q.Get("state"), Type: q.Get("type"), Subject: q.Get("subject"), Limit: limit})
	if err != nil {
		return 0, nil, err
	}
	if evs == nil {
		evs = []handoff.Stored{}
	}
	return http.StatusOK, map[string]any{"events": evs}, nil
}

func (m *Merchant) apiGetEvent(r *http.Request, _ *auditEntry) (int, any, error) {
	ev, err := handoff.Get(r.Context(), m.db, r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, ev, nil
}

func (m *Merchant) apiReplayEvent(r *http.Request, _ *auditEntry) (int, any, error) {
	if err := handoff.Replay(r.Context(), m.db, m.clock.Now(), r.PathValue("id")); err != nil {
		return 0, nil, err
	}
	m.wake()
	return http.StatusAccepted, map[string]any{"replayed": []string{r.PathValue("id")}}, nil
}

func (m *Merchant) apiReplayDead(r *http.Request, _ *auditEntry) (int, any, error) {
	ids, err := handoff.ReplayDead(r.Context(), m.db, m.clock.Now())
	if err != nil {
		return 0, nil, err
	}
	m.wake()
	if ids == nil {
		ids = []string{}
	}
	return http.StatusAccepted, map[string]any{"replayed": ids}, nil
}
