// Package buyertest has test helpers for the buyer center and its IdP: a
// merchant endpoint that records and verifies the kit calls it receives, and
// an in-memory Catalog of purchased apps.
package buyertest

import (
	"context"
	"crypto/rsa"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/internal/testkeys"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/market/buyer"
)

// RSAKey returns the fixed 3072-bit test key (testkeys.RSA3072).
func RSAKey(t testing.TB) *rsa.PrivateKey { return testkeys.RSA3072(t) }

// Call is one kit call the merchant received.
type Call struct {
	Interface string
	Header    http.Header
	Body      []byte
	// Variant is the kg.VerifyKitSign variant that matched; SignErr is set when none did.
	Variant string
	SignErr error
	// Secret is applicationSync's clientSecret, decrypted with the merchant's key.
	Secret    string
	SecretErr error
}

// Reply is what the merchant answers.
type Reply struct {
	Status int           // default 200
	Body   string        // default {"resultCode":"000000","resultMsg":"Success"}
	Delay  time.Duration // wait before answering
}

// Merchant is a fake merchant production address for kit calls.
type Merchant struct {
	URL    string
	KitKey string
	Priv   *rsa.PrivateKey

	clock clock.Clock
	srv   *httptest.Server

	mu      sync.Mutex
	calls   []Call
	respond func(iface string, n int) Reply
}

// NewMerchant starts a merchant verifying signatures against clk (±60 s).
func NewMerchant(t testing.TB, clk clock.Clock, kitKey string) *Merchant {
	t.Helper()
	m := &Merchant{KitKey: kitKey, Priv: RSAKey(t), clock: clk}
	m.srv = httptest.NewServer(http.HandlerFunc(m.serve))
	t.Cleanup(m.srv.Close)
	m.URL = m.srv.URL
	return m
}

// Respond sets how the merchant answers the n-th (1-based) call of an interface.
func (m *Merchant) Respond(f func(iface string, n int) Reply) {
	m.mu.Lock()
	m.respond = f
	m.mu.Unlock()
}

// Calls returns the calls received so far.
func (m *Merchant) Calls() []Call {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Call(nil), m.calls...)
}

// Reset forgets the calls received.
func (m *Merchant) Reset() {
	m.mu.Lock()
	m.calls = nil
	m.mu.Unlock()
}

func (m *Merchant) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	_, iface, ok := strings.Cut(r.URL.Path, "/produceAPI/v2/")
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if !ok {
		m.basic(w, body)
		return
	}
	c := Call{Interface: iface, Header: r.Header.Clone(), Body: body}
	c.Variant, c.SignErr = kg.VerifyKitSign([]string{m.KitKey}, r.Header.Get("x-sign"), r.Header.Get("x-nonce"), r.Header.Get("x-timestamp"),
		body, m.clock.Now(), 60*time.Second)
	if iface == buyer.IfaceApplicationSync {
		var v struct {
			ClientSecret string `json:"clientSecret"`
		}
		if err := jsonUnmarshal(body, &v); err == nil {
			c.Secret, _, c.SecretErr = kg.DecryptClientSecret(m.Priv, v.ClientSecret)
		}
	}
	m.mu.Lock()
	m.calls = append(m.calls, c)
	n := 0
	for _, x := range m.calls {
		if x.Interface == iface {
			n++
		}
	}
	f := m.respond
	m.mu.Unlock()
	rep := Reply{}
	if f != nil {
		rep = f(iface, n)
	}
	if c.SignErr != nil && f == nil {
		rep = Reply{Body: `{"resultCode":"000001","resultMsg":"token is invalid"}`}
	}
	if rep.Delay > 0 {
		select {
		case <-time.After(rep.Delay):
		case <-r.Context().Done():
			return
		}
	}
	if rep.Status == 0 {
		rep.Status = http.StatusOK
	}
	if rep.Body == "" {
		rep.Body = `{"resultCode":"000000","resultMsg":"Success"}`
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.Status)
	_, _ = io.WriteString(w, rep.Body)
}

// basic answers the SaaS basic interfaces the market sends to the same
// production address, just enough for a purchase to complete: newInstance
// succeeds with instanceId "inst-<businessId>", everything else succeeds
// (queryInstance of an unknown instance: 000003). Their signature is not
// checked here; the market's own tests do that.
func (m *Merchant) basic(w http.ResponseWriter, body []byte) {
	var req struct {
		Activity   string `json:"activity"`
		BusinessID string `json:"businessId"`
	}
	_ = jsonUnmarshal(body, &req)
	w.Header().Set("Content-Type", "application/json")
	switch req.Activity {
	case "newInstance":
		_, _ = io.WriteString(w, `{"resultCode":"000000","resultMsg":"Success","instanceId":"inst-`+req.BusinessID+`"}`)
	case "queryInstance":
		_, _ = io.WriteString(w, `{"resultCode":"000003","resultMsg":"no such instance"}`)
	default:
		_, _ = io.WriteString(w, `{"resultCode":"000000","resultMsg":"Success"}`)
	}
}

// Catalog is an in-memory buyer.Catalog and buyer.ProductCatalog.
type Catalog struct {
	mu       sync.Mutex
	apps     map[string]buyer.App
	products map[string]buyer.App
}

// PutProduct adds or replaces what a product resolves to (no instance).
func (c *Catalog) PutProduct(productID string, a buyer.App) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.products == nil {
		c.products = map[string]buyer.App{}
	}
	c.products[productID] = a
}

// Product implements buyer.ProductCatalog.
func (c *Catalog) Product(_ context.Context, productID string) (buyer.App, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.products[productID]
	if !ok {
		return buyer.App{}, buyer.ErrNoApp
	}
	return a, nil
}

// Put adds or replaces an app.
func (c *Catalog) Put(a buyer.App) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apps == nil {
		c.apps = map[string]buyer.App{}
	}
	c.apps[a.InstanceID] = a
}

// App implements buyer.Catalog.
func (c *Catalog) App(_ context.Context, instanceID string) (buyer.App, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.apps[instanceID]
	if !ok {
		return buyer.App{}, buyer.ErrNoApp
	}
	return a, nil
}

// PublicKey returns the merchant's public key as uploaded to KooGallery.
func (m *Merchant) PublicKey(t testing.TB) string {
	t.Helper()
	s, err := kg.PublicKeyBase64(&m.Priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
