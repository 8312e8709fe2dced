package buyer_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/market/buyer/buyertest"
)

type apiClient struct {
	t    *testing.T
	base string
}

func (a apiClient) do(method, path string, in any) (int, map[string]any) {
	a.t.Helper()
	var body io.Reader
	if s, ok := in.(string); ok {
		body = bytes.NewBufferString(s)
	} else if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.base+path, body)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		a.t.Fatalf("%s %s: answer is not JSON: %v", method, path, err)
	}
	return resp.StatusCode, out
}

func (a apiClient) ok(method, path string, in any, want int) map[string]any {
	a.t.Helper()
	st, out := a.do(method, path, in)
	if st != want {
		a.t.Fatalf("%s %s: %d %v, want %d", method, path, st, out, want)
	}
	return out
}

func TestHTTPAPI(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		mux := http.NewServeMux()
		mux.Handle("/api/v1/buyer/", http.StripPrefix("/api/v1/buyer", e.c.Handler()))
		srv := httptest.NewServer(mux)
		defer srv.Close()
		a := apiClient{t: t, base: srv.URL + "/api/v1/buyer"}

		ent := a.ok("POST", "/enterprises", map[string]any{"tenantCode": "acme", "name": "Acme", "customerId": "cust-1"}, 201)
		tid := ent["tenantId"].(string)
		a.ok("POST", "/enterprises", map[string]any{"name": "Other", "customerId": "cust-2"}, 201)
		if es := a.ok("GET", "/enterprises?customerId=cust-1", nil, 200)["enterprises"].([]any); len(es) != 1 || es[0].(map[string]any)["tenantId"] != tid {
			t.Errorf("enterprises of cust-1: %v", es)
		}
		if es := a.ok("GET", "/enterprises", nil, 200)["enterprises"].([]any); len(es) != 2 {
			t.Errorf("all enterprises: %v", es)
		}
		if ent["domainName"] != "https://idp.example.test" {
			t.Errorf("enterprise %v", ent)
		}
		a.ok("POST", "/enterprises/"+tid+"/departments", map[string]any{"orgCode": "1", "orgName": "HQ"}, 201)
		a.ok("POST", "/enterprises/"+tid+"/departments", map[string]any{"orgCode": "2", "orgName": "Dev", "parentCode": "1"}, 201)
		tree := a.ok("GET", "/enterprises/"+tid+"/departments?tree=1", nil, 200)["tree"].([]any)
		if len(tree) != 1 || len(tree[0].(map[string]any)["children"].([]any)) != 1 {
			t.Errorf("department tree %v", tree)
		}
		out := a.ok("POST", "/enterprises/"+tid+"/members", map[string]any{"members": []map[string]any{
			{"userName": "amy", "name": "Amy", "orgCode": "1", "password": "amy-password"},
			{"userName": "ben", "name": "Ben", "orgCode": "1", "role": "admin"},
		}}, 201)
		members := out["members"].([]any)
		amy := members[0].(map[string]any)
		if amy["hasPassword"] != true || amy["password"] != nil || amy["enabled"] != true {
			t.Errorf("member %v", amy)
		}
		var fail atomic.Bool
		fail.Store(true)
		e.m.Respond(func(iface string, n int) buyertest.Reply {
			if iface == "allOrgSync" && fail.Load() {
				return buyertest.Reply{Body: `{"resultCode":"000002","resultMsg":"orgInfoList"}`}
			}
			return buyertest.Reply{}
		})
		out = a.ok("POST", "/enterprises/"+tid+"/apps", map[string]any{"instanceId": "inst-1"}, 201)
		app := out["app"].(map[string]any)
		bid := app["id"].(string)
		msgs := out["messages"].([]any)
		if len(msgs) != 3 || msgs[2].(map[string]any)["state"] != "failed" || msgs[0].(map[string]any)["state"] != "succeeded" {
			t.Fatalf("bind messages %v", msgs)
		}
		if app["clientId"] == "" || app["clientSecret"] != nil {
			t.Errorf("app %v: clientId shown, secret never", app)
		}
		out = a.ok("POST", "/enterprises/"+tid+"/apps/"+bid+"/grants", map[string]any{"departments": []string{"1"}}, 200)
		if m := out["messages"].([]any); len(m) != 1 || m[0].(map[string]any)["interface"] != "authSync" {
			t.Errorf("grant messages %v", m)
		}
		users := a.ok("GET", "/enterprises/"+tid+"/apps/"+bid+"/users", nil, 200)["users"].([]any)
		if len(users) != 2 {
			t.Errorf("authorized users %v", users)
		}
		grants := a.ok("GET", "/enterprises/"+tid+"/apps/"+bid+"/grants", nil, 200)
		if fmt.Sprint(grants["departments"]) != "[1]" {
			t.Errorf("grants %v", grants)
		}
		a.ok("POST", "/enterprises/"+tid+"/members/disable", map[string]any{"ids": []string{amy["id"].(string)}}, 200)
		if m := a.ok("GET", "/enterprises/"+tid+"/members/"+amy["id"].(string), nil, 200); m["enabled"] != false {
			t.Errorf("disabled member %v", m)
		}

		// The failed allOrgSync is in the log and the buyer retries it.
		failed := a.ok("GET", "/enterprises/"+tid+"/messages?state=failed", nil, 200)["messages"].([]any)
		if len(failed) != 1 {
			t.Fatalf("failed messages %v", failed)
		}
		id := fmt.Sprint(int64(failed[0].(map[string]any)["id"].(float64)))
		fail.Store(false)
		m := a.ok("POST", "/enterprises/"+tid+"/messages/"+id+"/retry", nil, 200)
		if m["state"] != "succeeded" || len(m["attemptLog"].([]any)) != 2 {
			t.Errorf("retried message %v", m)
		}
		a.ok("POST", "/enterprises/"+tid+"/messages/"+id+"/retry", nil, 409)
		if d := a.ok("GET", "/enterprises/"+tid+"/messages/"+id, nil, 200); d["attempts"] != 2.0 {
			t.Errorf("message detail %v", d)
		}
		sellerSrv := httptest.NewServer(e.c.SellerHandler())
		defer sellerSrv.Close()
		sm := apiClient{t: t, base: sellerSrv.URL}.ok("GET", "/sellers/seller-1/kit-messages?interface=allOrgSync", nil, 200)["messages"].([]any)
		if len(sm) != 1 || sm[0].(map[string]any)["state"] != "succeeded" {
			t.Errorf("the seller's view of its kit calls: %v", sm)
		}
		all := a.ok("GET", "/enterprises/"+tid+"/messages?interface=authSync", nil, 200)["messages"].([]any)
		if len(all) != 2 {
			t.Errorf("authSync messages %d, want 2 (grant, disable)", len(all))
		}

		a.ok("POST", "/enterprises/"+tid+"/apps/"+bid+"/stop", nil, 200)
		if b := a.ok("GET", "/enterprises/"+tid+"/apps/"+bid, nil, 200); b["enabled"] != false {
			t.Errorf("stopped app %v", b)
		}

		// Errors.
		for _, tc := range []struct {
			method, path string
			body         any
			status       int
			kind         string
		}{
			{"POST", "/enterprises", `{"name":"x","bogus":1}`, 400, "invalid"},
			{"POST", "/enterprises", `not json`, 400, "invalid"},
			{"POST", "/enterprises", map[string]any{"tenantCode": "acme", "name": "dup"}, 409, "conflict"},
			{"GET", "/enterprises/nope", nil, 404, "not_found"},
			{"GET", "/enterprises/" + tid + "/messages/999999", nil, 404, "not_found"},
			{"POST", "/enterprises/" + tid + "/members", map[string]any{"members": []map[string]any{{"userName": "x y", "name": "n", "orgCode": "1"}}}, 400, "invalid"},
			{"DELETE", "/enterprises/" + tid + "/departments/1", nil, 409, "conflict"},
			{"POST", "/enterprises/" + tid + "/apps", map[string]any{"instanceId": "missing"}, 400, "invalid"},
		} {
			st, out := a.do(tc.method, tc.path, tc.body)
			if st != tc.status || out["error"].(map[string]any)["kind"] != tc.kind {
				t.Errorf("%s %s: %d %v, want %d %s", tc.method, tc.path, st, out, tc.status, tc.kind)
			}
		}
	})
}

func TestSellerAppCredentialAPI(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		srv := httptest.NewServer(e.c.SellerHandler())
		defer srv.Close()
		a := apiClient{t: t, base: srv.URL}
		pub := e.m.PublicKey(t)
		out := a.ok("PUT", "/sellers/s1/products/p1/app-credential", map[string]any{"publicKey": pub, "loginUrls": []string{"https://app.example.test/login"}}, 200)
		if out["appId"] == "" || out["publicKey"] != pub {
			t.Errorf("credential %v", out)
		}
		a.ok("GET", "/sellers/s1/products/p1/app-credential", nil, 200)
		if ms := a.ok("GET", "/sellers/seller-1/kit-messages", nil, 200)["messages"].([]any); len(ms) != 0 {
			t.Errorf("seller messages before any binding: %v", ms)
		}
		a.ok("GET", "/sellers/s2/products/p1/app-credential", nil, 404)
		a.ok("PUT", "/sellers/s2/products/p1/app-credential", map[string]any{"publicKey": pub, "loginUrls": []string{"https://x.test/"}}, 409)
		small, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		smallPub, _ := kg.PublicKeyBase64(&small.PublicKey)
		for _, body := range []map[string]any{
			{"publicKey": smallPub, "loginUrls": []string{"https://x.test/"}},
			{"publicKey": "not a key", "loginUrls": []string{"https://x.test/"}},
			{"publicKey": pub, "loginUrls": []string{"/relative"}},
			{"publicKey": pub},
		} {
			a.ok("PUT", "/sellers/s1/products/p2/app-credential", body, 400)
		}
	})
}
