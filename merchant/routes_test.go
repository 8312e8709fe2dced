package merchant

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/soukhq/souk/kg"
)

// The production address answers with or without a trailing slash (as it
// may be registered in Seller Center).
func TestProductionAddressTrailingSlash(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		for _, path := range []string{"/koogallery", "/koogallery/"} {
			r := e.call(map[string]string{"activity": "queryInstance", "instanceId": "nope"}, func(o *callOpt) { o.path = path })
			if r.ResultCode != kg.CodeNoInstance || r.bodySign == "" {
				t.Errorf("POST %s: %s %s (Body-Sign %q)", path, r.ResultCode, r.ResultMsg, r.bodySign)
			}
		}
	})
}

// Calls no route takes (unknown paths, wrong methods) are audited too, on
// every handler.
func TestUnmatchedCallsAudited(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		for _, c := range []struct {
			method, path string
			status       int
		}{
			{http.MethodGet, "/api/v1/nothing", http.StatusNotFound},
			{http.MethodPut, "/api/v1/events/replay-dead", http.StatusMethodNotAllowed},
			{http.MethodDelete, "/api/v1/instances/x", http.StatusMethodNotAllowed},
			{http.MethodPost, "/koogallery/other", http.StatusNotFound},
		} {
			req, _ := http.NewRequestWithContext(e.ctx, c.method, e.srv.URL+c.path, strings.NewReader("{}"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Errorf("%s %s: HTTP %d, want %d", c.method, c.path, resp.StatusCode, c.status)
			}
			if n := e.count(`SELECT COUNT(*) FROM audit_log WHERE source = 'http' AND activity = $1 AND result_code = $2`,
				c.method+" "+c.path, "HTTP "+http.StatusText(c.status)); n != 1 {
				t.Errorf("%s %s: %d audit records", c.method, c.path, n)
			}
		}
		// The split handlers audit theirs too.
		for _, h := range []http.Handler{e.m.PublicHandler(), e.m.AdminHandler()} {
			req, _ := http.NewRequestWithContext(e.ctx, http.MethodGet, "/nowhere-"+strings.Repeat("x", 3), nil)
			h.ServeHTTP(httptest.NewRecorder(), req)
		}
		if n := e.count(`SELECT COUNT(*) FROM audit_log WHERE source = 'http' AND activity = 'GET /nowhere-xxx'`); n != 2 {
			t.Errorf("split handlers: %d audit records, want 2", n)
		}
	})
}
