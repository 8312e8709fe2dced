package merchant

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/soukhq/souk/merchant/auditnote"
)

// audited wraps a handler mounted with Handle (the joint-operation kit sync
// interfaces, single sign-on, the tenant read API) so that every inbound call
// leaves an audit record like the basic interfaces do: the route, the remote
// address, the HTTP status or the protocol resultCode of a JSON answer, and
// the latency, and what the handler noted of the call (merchant/auditnote:
// the instance, the tenant, the user, why a sign-in failed). Nothing else of
// the request body is recorded: kit bodies carry client secrets and personal
// data.
func (m *Merchant) audited(pattern string, h http.Handler) http.Handler {
	source := "api"
	switch {
	case strings.Contains(pattern, "/produceAPI/"):
		source = "kit"
	case strings.HasPrefix(pattern, "/sso/"):
		source = "sso"
	}
	return m.auditedAs(source, h)
}

func (m *Merchant) auditedAs(source string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now() // latency only
		rec := &auditRecorder{ResponseWriter: w, status: http.StatusOK}
		ctx, note := auditnote.With(r.Context()) // the handler may name what the call was about
		h.ServeHTTP(rec, r.WithContext(ctx))
		e := auditEntry{At: m.clock.Now(), Source: source, Remote: m.remoteAddr(r), Activity: r.Method + " " + r.URL.Path,
			ResultCode: rec.code(), Latency: time.Since(start), InstanceID: note.InstanceID(), Message: note.String()}
		m.audit(r.Context(), e)
	})
}

// unmatchedAudited serves mux, and audits the calls no route of it takes
// (answered 404 or 405 by the mux itself), as source "http": every inbound
// call leaves a record, also a probe of paths that do not exist.
func (m *Merchant) unmatchedAudited(mux *http.ServeMux) http.Handler {
	unmatched := m.auditedAs("http", mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			unmatched.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// auditRecorder remembers the status and the beginning of a JSON answer.
type auditRecorder struct {
	http.ResponseWriter
	status int
	head   bytes.Buffer
}

const auditHeadMax = 4 << 10

func (a *auditRecorder) WriteHeader(status int) {
	a.status = status
	a.ResponseWriter.WriteHeader(status)
}

func (a *auditRecorder) Write(b []byte) (int, error) {
	if n := auditHeadMax - a.head.Len(); n > 0 {
		a.head.Write(b[:min(n, len(b))])
	}
	return a.ResponseWriter.Write(b)
}

// Flush keeps streaming handlers working behind the recorder.
func (a *auditRecorder) Flush() {
	if f, ok := a.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// code is the answer's resultCode when it is a protocol answer, otherwise the
// HTTP status.
func (a *auditRecorder) code() string {
	var v struct {
		ResultCode string `json:"resultCode"`
	}
	if strings.HasPrefix(a.Header().Get("Content-Type"), "application/json") && json.Unmarshal(a.head.Bytes(), &v) == nil && v.ResultCode != "" {
		return v.ResultCode
	}
	return "HTTP " + http.StatusText(a.status)
}
