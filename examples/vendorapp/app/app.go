// Package app is the example vendor application behind souk merchant (the
// command is ../ , examples/vendorapp). It receives souk's signed webhooks,
// verifies them, and completes provisioning either synchronously (its answer
// carries appInfo) or, with Config.Async, later through souk's management
// API; with Config.Refuse it refuses the creates of some SKUs the same ways. It deliberately does not import souk: the webhook contract is plain
// HTTP + HMAC-SHA256 (see docs/merchant.md). souk demo runs it on loopback.
package app

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// verify checks a Souk-Signature header: t=<unix>,v1=<hex HMAC-SHA256(secret, t + "." + body)>.
// While souk's secret is rotated the header carries one v1 per secret: any
// of them may be ours.
func verify(secret, header string, body []byte, now time.Time) bool {
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(part), "="); ok && k == "t" {
			ts = v
		} else if ok && k == "v1" {
			sigs = append(sigs, strings.ToLower(v))
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || now.Sub(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(body)))
	want := []byte(hex.EncodeToString(mac.Sum(nil)))
	for _, sig := range sigs {
		if hmac.Equal(want, []byte(sig)) {
			return true
		}
	}
	return false
}

// Config of the example app.
type Config struct {
	Secret     string // webhook secret shared with souk (SOUK_WEBHOOK_SECRET there)
	Async      bool   // complete provisioning later through souk's API
	SoukURL    string // souk merchant base URL (for -async)
	AdminToken string // souk's SOUK_ADMIN_TOKEN (for -async)
	AppURL     string // base of the generated frontEndUrl
	AsyncDelay time.Duration
	// Refuse maps a skuCode to the create-instance result code (000100–000107)
	// with which the app refuses the creates of that SKU: in its answer, or
	// with Async through souk's failure API. For demos and tests.
	Refuse map[string]string
	// Now is the clock that checks the webhook signature's timestamp
	// (±5 min); nil → time.Now. Set it to the merchant's clock when souk
	// merchant runs on a virtual clock (souk demo).
	Now func() time.Time
}

type event struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Subject  string          `json:"subject"`
	TestFlag bool            `json:"testFlag"`
	Data     json.RawMessage `json:"data"`
}

type appInfo struct {
	FrontEndURL string `json:"frontEndUrl"`
	AdminURL    string `json:"adminUrl,omitempty"`
	UserName    string `json:"userName,omitempty"`
	Password    string `json:"password,omitempty"`
	Memo        string `json:"memo,omitempty"`
}

// App is the vendor application.
type App struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client
	now    func() time.Time

	mu      sync.Mutex
	answers map[string][]byte // event id → answer, so redeliveries are idempotent
	tenants map[string]string // instanceId → status
	wg      sync.WaitGroup
}

// NewApp returns the vendor application.
func NewApp(cfg Config, log *slog.Logger) *App {
	if cfg.AppURL == "" {
		cfg.AppURL = "https://app.example.com"
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &App{cfg: cfg, log: log, client: &http.Client{Timeout: 10 * time.Second}, now: now,
		answers: map[string][]byte{}, tenants: map[string]string{}}
}

// ServeHTTP handles POST /webhook and GET /healthz.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		_, _ = io.WriteString(w, "ok\n")
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/webhook" {
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return
	}
	if !verify(a.cfg.Secret, r.Header.Get("Souk-Signature"), body, a.now()) {
		a.log.Warn("rejected a webhook with a bad signature", "remote", r.RemoteAddr)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var ev event
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID == "" {
		http.Error(w, "bad event", http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	prev, seen := a.answers[ev.ID]
	a.mu.Unlock()
	if seen { // at-least-once delivery: answer a redelivery the same way
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(prev)
		return
	}
	answer := a.handle(ev)
	a.mu.Lock()
	a.answers[ev.ID] = answer
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(answer)
}

func (a *App) handle(ev event) []byte {
	a.log.Info("event", "id", ev.ID, "type", ev.Type, "instance", ev.Subject)
	switch ev.Type {
	case "instance.created", "instance.upgraded":
		if code := a.refusal(ev); code != "" {
			a.setTenant(ev.Subject, "refused")
			refusal, _ := json.Marshal(map[string]string{"resultCode": code, "resultMsg": "refused by the example app (-refuse-sku)"})
			if a.cfg.Async {
				a.wg.Add(1)
				go func() {
					defer a.wg.Done()
					a.postLater(ev.Subject, "failure", refusal)
				}()
				return []byte(`{}`)
			}
			return refusal
		}
		a.setTenant(ev.Subject, "active")
		info := a.provision(ev.Subject)
		if a.cfg.Async {
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				a.completeLater(ev.Subject, info)
			}()
			return []byte(`{}`)
		}
		b, _ := json.Marshal(map[string]any{"appInfo": info})
		return b
	case "instance.change_check":
		// productInfo is what KooGallery sent: an object or a list of
		// objects (its structure is undocumented).
		var d struct {
			ProductInfo json.RawMessage `json:"productInfo"`
		}
		_ = json.Unmarshal(ev.Data, &d)
		type product struct {
			SkuCode any `json:"skuCode"`
		}
		var products []product
		if json.Unmarshal(d.ProductInfo, &products) != nil {
			var one product
			_ = json.Unmarshal(d.ProductInfo, &one)
			products = []product{one}
		}
		for _, p := range products {
			if sku, _ := p.SkuCode.(string); strings.Contains(sku, "tiny") {
				return []byte(`{"allowed":false,"resultCode":"000100","resultMsg":"current usage does not fit the target spec"}`)
			}
		}
		return []byte(`{"allowed":true}`)
	case "instance.frozen":
		a.setTenant(ev.Subject, "frozen")
	case "instance.unfrozen", "instance.renewed":
		a.setTenant(ev.Subject, "active")
	case "instance.released":
		a.setTenant(ev.Subject, "released")
	}
	return []byte(`{}`)
}

// refusal is the result code with which the app refuses ev (a create of a
// SKU in Config.Refuse), or "".
func (a *App) refusal(ev event) string {
	if ev.Type != "instance.created" || len(a.cfg.Refuse) == 0 {
		return ""
	}
	var d struct {
		SkuCode string `json:"skuCode"`
	}
	_ = json.Unmarshal(ev.Data, &d)
	return a.cfg.Refuse[d.SkuCode]
}

func (a *App) setTenant(id, status string) {
	a.mu.Lock()
	a.tenants[id] = status
	a.mu.Unlock()
}

// Tenant reports a tenant's status ("" when unknown).
func (a *App) Tenant(id string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tenants[id]
}

func (a *App) provision(instanceID string) appInfo {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return appInfo{
		FrontEndURL: a.cfg.AppURL + "/t/" + instanceID,
		AdminURL:    a.cfg.AppURL + "/t/" + instanceID + "/admin",
		UserName:    "admin",
		Password:    "Pw-" + hex.EncodeToString(b[:]),
		Memo:        "Welcome! 欢迎使用",
	}
}

// completeLater posts appInfo to souk's management API, retrying a while.
func (a *App) completeLater(instanceID string, info appInfo) {
	body, _ := json.Marshal(map[string]any{"appInfo": info})
	a.postLater(instanceID, "appinfo", body)
}

// postLater posts body to souk's management API at
// /api/v1/instances/{instanceID}/{what} (appinfo, failure) after
// Config.AsyncDelay, retrying a while.
func (a *App) postLater(instanceID, what string, body []byte) {
	time.Sleep(a.cfg.AsyncDelay)
	for attempt := 1; attempt <= 10; attempt++ {
		err := a.post(instanceID, what, body)
		if err == nil {
			a.log.Info("posted to souk's API", "instance", instanceID, "what", what)
			return
		}
		a.log.Warn(what+" API call failed", "instance", instanceID, "attempt", attempt, "err", err)
		time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
	}
}

func (a *App) post(instanceID, what string, body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a.mu.Lock()
	base := a.cfg.SoukURL
	a.mu.Unlock()
	u := strings.TrimRight(base, "/") + "/api/v1/instances/" + instanceID + "/" + what
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+a.cfg.AdminToken)
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 500))
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	return nil
}

// Wait waits for pending asynchronous completions.
func (a *App) Wait() { a.wg.Wait() }

// SetSoukURL sets souk's base URL for asynchronous completion (when souk
// starts after the app).
func (a *App) SetSoukURL(u string) {
	a.mu.Lock()
	a.cfg.SoukURL = u
	a.mu.Unlock()
}
