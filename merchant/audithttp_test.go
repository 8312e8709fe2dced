package merchant

import (
	"net/http"
	"strings"
	"testing"
)

// Handlers mounted with Handle (kit syncs, SSO, tenant API) leave an audit
// record per call, with the protocol resultCode of a JSON answer and never
// the request body.
func TestMountedHandlersAreAudited(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		e.m.Handle("/koogallery/produceAPI/v2/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"resultCode":"000001","resultMsg":"bad x-sign"}`))
		}))
		e.m.Handle("/sso/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://idp.example.com/authorize", http.StatusFound)
		}))
		resp, err := http.Post(e.srv.URL+"/koogallery/produceAPI/v2/tenantSync", "application/json",
			strings.NewReader(`{"clientSecret":"do-not-log-me"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err = client.Get(e.srv.URL + "/sso/login?tenant=t1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()

		if n := e.count(`SELECT COUNT(*) FROM audit_log WHERE source = 'kit' AND result_code = '000001' AND activity = 'POST /koogallery/produceAPI/v2/tenantSync'`); n != 1 {
			t.Fatalf("%d kit audit rows, want 1", n)
		}
		if n := e.count(`SELECT COUNT(*) FROM audit_log WHERE source = 'sso' AND result_code = 'HTTP Found'`); n != 1 {
			t.Fatalf("%d sso audit rows, want 1", n)
		}
		if n := e.count(`SELECT COUNT(*) FROM audit_log WHERE message LIKE '%do-not-log-me%' OR activity LIKE '%do-not-log-me%'`); n != 0 {
			t.Fatal("a request body reached the audit log")
		}
	})
}
