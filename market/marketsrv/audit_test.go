package marketsrv_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/market"
)

func TestAudit(t *testing.T) {
	for _, backend := range dbtest.Backends() {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			e.setupProducts()
			const ak, sk, kitSecret = "AKAUDIT0001", "sk-very-secret-audit", "kit-secret-not-in-audit"
			if _, err := e.m.CreateCredential(e.ctx, "seller-1", ak, sk); err != nil {
				t.Fatal(err)
			}
			o, err := e.m.Buy(e.ctx, market.BuyInput{CustomerID: "cust-1", ProductCode: "P-OPEN", PeriodNumber: 1})
			if err != nil {
				t.Fatal(err)
			}
			// Management actions: good token, wrong token, none; buyer center; IdP calls.
			if st, b := e.do("PUT", "/api/v1/sellers/seller-1/keys/kit", token, `{"secret":"`+kitSecret+`"}`); st != http.StatusOK {
				t.Fatalf("key-set: %d %s", st, b)
			}
			e.do("GET", "/api/v1/sellers", "wrong-token", "")
			e.do("GET", "/api/v1/products/prod-open", "", "")
			e.do("GET", "/api/v1/products/nope", token, "")
			e.do("POST", "/api/v1/buyer/enterprises", token, `{"name":"Acme"}`)
			e.do("GET", "/api/v1/oauth2/userinfo", "", "")
			e.do("GET", "/api/v1/logout", "", "")
			e.do("GET", "/healthz", "", "")
			// A sign-in with a wrong password: its page, then the form.
			jar, _ := cookiejar.New(nil)
			browser := &http.Client{Jar: jar}
			resp, err := browser.Get(e.srv.URL + "/unified-login/")
			if err != nil {
				t.Fatal(err)
			}
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
			if csrf == nil {
				t.Fatalf("no login form:\n%s", page)
			}
			resp, err = browser.PostForm(e.srv.URL+"/unified-login/login", url.Values{"csrf": {string(csrf[1])}, "continue": {"/unified-login/"},
				"tenant": {"acme"}, "username": {"mallory"}, "password": {"guess-1"}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			// A probe whose path PostgreSQL could not store as it came.
			e.do("GET", "/api/v1/%FF%00probe", token, "")
			// Open API: a signed Query Order, and a usage push with a bad signature.
			req, _ := http.NewRequest("GET", e.srv.URL+kg.QueryOrderPath+"?orderId="+o.OrderID, nil)
			if err := kg.SignAPIG(req, nil, ak, sk, e.clk.Now()); err != nil {
				t.Fatal(err)
			}
			resp, err = http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			req, _ = http.NewRequest("POST", e.srv.URL+kg.UsagePushPath, strings.NewReader(`{"usage_records":[]}`))
			req.Header.Set("signature", "bad")
			req.Header.Set("ts", "1")
			req.Header.Set("nonce", "n")
			if resp, err = http.DefaultClient.Do(req); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()

			recs, err := e.m.ListAudit(e.ctx, market.AuditFilter{Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			admin := "admin:" + market.TokenID(token)
			type want struct {
				kind, actor, method, route string
				status                     int
				result                     string
				target, targetVal          string
			}
			wants := []want{
				{"openapi", "anonymous", "POST", kg.UsagePushPath, 401, "", "", ""},
				{"openapi", "ak:" + ak, "GET", kg.QueryOrderPath, 200, kg.MKTSuccess, "orderId", o.OrderID},
				{"admin", admin, "GET", "(no route)", 404, "", "", ""},
				{"idp", "user:acme/mallory", "POST", "POST /unified-login/login", 401, "wrong_credentials", "", ""},
				{"idp", "anonymous", "GET", "GET /unified-login/{$}", 200, "", "", ""},
				{"idp", "anonymous", "GET", "GET /api/v1/logout", 302, "", "", ""},
				{"idp", "anonymous", "GET", "GET /api/v1/oauth2/userinfo", 401, "unauthorized", "", ""},
				{"admin", admin, "POST", "/api/v1/buyer/", 201, "", "", ""},
				{"admin", admin, "GET", "GET /api/v1/products/{id}", 404, "not_found", "id", "nope"},
				{"admin", "anonymous", "GET", "GET /api/v1/products/{id}", 401, "unauthorized", "id", "prod-open"},
				{"admin", "bad-token:" + market.TokenID("wrong-token"), "GET", "GET /api/v1/sellers", 401, "unauthorized", "", ""},
				{"admin", admin, "PUT", "PUT /api/v1/sellers/{id}/keys/{type}", 200, "", "type", "kit"},
			}
			if len(recs) != len(wants) {
				for _, r := range recs {
					t.Logf("%+v", r)
				}
				t.Fatalf("%d audit records, want %d", len(recs), len(wants))
			}
			for i, w := range wants {
				r := recs[i]
				if r.Kind != w.kind || (w.actor != "" && r.Actor != w.actor) || r.Method != w.method || r.Route != w.route || r.Status != w.status ||
					(w.result != "" && r.Result != w.result) || (w.target != "" && r.Targets[w.target] != w.targetVal) || r.LatencyMS < 0 || r.At.IsZero() {
					t.Errorf("record %d: %+v\nwant %+v", i, r, w)
				}
			}
			if recs[0].Result == "" || recs[0].Result == kg.MKTSuccess {
				t.Errorf("usage push with a bad signature: result %q", recs[0].Result)
			}
			if recs[1].Targets["seller"] != "seller-1" {
				t.Errorf("query order targets %v", recs[1].Targets)
			}
			if recs[2].Path != "/api/v1/\uFFFD\uFFFDprobe" {
				t.Errorf("probe stored with path %q", recs[2].Path)
			}
			// Never secrets.
			var dump strings.Builder
			rows, err := e.m.DB().Query(e.ctx, `SELECT actor, route, path, result, targets, remote FROM market_audit`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var a, b, c, d, f, g string
				if err := rows.Scan(&a, &b, &c, &d, &f, &g); err != nil {
					t.Fatal(err)
				}
				dump.WriteString(a + b + c + d + f + g)
			}
			rows.Close()
			for _, secret := range []string{token, "wrong-token", sk, kitSecret} {
				if strings.Contains(dump.String(), secret) {
					t.Errorf("the audit log holds %q", secret)
				}
			}
			// Paging and the API.
			pg, err := e.m.ListAudit(e.ctx, market.AuditFilter{Limit: 2, BeforeID: recs[2].ID, Kind: "admin"})
			if err != nil || len(pg) != 2 || pg[0].ID != recs[7].ID {
				t.Errorf("page %+v %v", pg, err)
			}
			if st, b := e.do("GET", "/api/v1/audit?limit=3&kind=openapi", token, ""); st != 200 || !strings.Contains(b, `"ak:`+ak+`"`) {
				t.Errorf("GET /api/v1/audit: %d %s", st, b)
			}
			if st, _ := e.do("GET", "/api/v1/audit?limit=x", token, ""); st != 400 {
				t.Errorf("bad limit: %d", st)
			}
		})
	}
}
