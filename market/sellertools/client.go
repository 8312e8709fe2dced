package sellertools

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/soukhq/souk/market"
)

// Client calls the seller tools' JSON API of a running market with the admin
// token. It implements API, so RunCLI can drive a remote market.
type Client struct {
	BaseURL string       // the market's base URL, e.g. http://127.0.0.1:8090
	Token   string       // admin token
	HTTP    *http.Client // nil → a client with a 2 minute timeout (dial tests of many cases take a while)
}

// NewClient returns a Client.
func NewClient(baseURL, token string, hc *http.Client) *Client {
	return &Client{BaseURL: baseURL, Token: token, HTTP: hc}
}

// do sends a request and decodes a 2xx answer into out; other answers become
// the market's *market.Error (with the HTTP status).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var rd io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("sellertools client: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+APIPrefix+path, rd)
	if err != nil {
		return fmt.Errorf("sellertools client: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 2 * time.Minute}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("sellertools client: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("sellertools client: %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		me := &market.Error{Status: resp.StatusCode}
		if json.Unmarshal(body, me) != nil || me.Msg == "" {
			me.Code, me.Msg = "http", fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
		}
		return me
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("sellertools client: %s %s: answer: %w", method, path, err)
	}
	return nil
}

func esc(s string) string { return url.PathEscape(s) }

func query(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			v.Set(kv[i], kv[i+1])
		}
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

func itoa(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// Defaults: GET /products/{id}/defaults/{activity}.
func (c *Client) Defaults(ctx context.Context, productID, activity string) (map[string]string, error) {
	var out map[string]string
	return out, c.do(ctx, "GET", "/products/"+esc(productID)+"/defaults/"+esc(activity), nil, &out)
}

// Generate: POST /debug/generate.
func (c *Client) Generate(ctx context.Context, in DebugInput) (Command, error) {
	var out Command
	return out, c.do(ctx, "POST", "/debug/generate", in, &out)
}

// Send: POST /debug/send.
func (c *Client) Send(ctx context.Context, in DebugInput) (Result, error) {
	var out Result
	return out, c.do(ctx, "POST", "/debug/send", in, &out)
}

// DebugAndSave: POST /debug/save.
func (c *Client) DebugAndSave(ctx context.Context, in DebugInput) (Result, error) {
	var out Result
	return out, c.do(ctx, "POST", "/debug/save", in, &out)
}

// ListCases: GET /cases.
func (c *Client) ListCases(ctx context.Context, f CaseFilter) ([]Case, error) {
	var out []Case
	return out, c.do(ctx, "GET", "/cases"+query("sellerId", f.SellerID, "productId", f.ProductID, "activity", f.Activity), nil, &out)
}

// GetCase: GET /cases/{id}.
func (c *Client) GetCase(ctx context.Context, id int64) (Case, error) {
	var out Case
	return out, c.do(ctx, "GET", "/cases/"+strconv.FormatInt(id, 10), nil, &out)
}

// DeleteCase: DELETE /cases/{id}.
func (c *Client) DeleteCase(ctx context.Context, id int64) (Case, error) {
	var out Case
	return out, c.do(ctx, "DELETE", "/cases/"+strconv.FormatInt(id, 10), nil, &out)
}

// Readiness: GET /products/{id}/readiness.
func (c *Client) Readiness(ctx context.Context, productID string) (Readiness, error) {
	var out Readiness
	return out, c.do(ctx, "GET", "/products/"+esc(productID)+"/readiness", nil, &out)
}

// Status: GET /products/{id}.
func (c *Client) Status(ctx context.Context, productID string) (Listing, error) {
	var out Listing
	return out, c.do(ctx, "GET", "/products/"+esc(productID), nil, &out)
}

// ListListings: GET /products.
func (c *Client) ListListings(ctx context.Context, sellerID string) ([]Listing, error) {
	var out []Listing
	return out, c.do(ctx, "GET", "/products"+query("sellerId", sellerID), nil, &out)
}

// PutOnSale: POST /products/{id}/on-sale.
func (c *Client) PutOnSale(ctx context.Context, productID string) (Listing, error) {
	var out Listing
	return out, c.do(ctx, "POST", "/products/"+esc(productID)+"/on-sale", nil, &out)
}

// TakeOffSale: POST /products/{id}/off-sale.
func (c *Client) TakeOffSale(ctx context.Context, productID, note string) (Listing, error) {
	var out Listing
	return out, c.do(ctx, "POST", "/products/"+esc(productID)+"/off-sale", map[string]string{"note": note}, &out)
}

// Unfreeze: POST /products/{id}/unfreeze.
func (c *Client) Unfreeze(ctx context.Context, productID string) (Run, Listing, error) {
	var out struct {
		Run     Run     `json:"run"`
		Listing Listing `json:"listing"`
	}
	err := c.do(ctx, "POST", "/products/"+esc(productID)+"/unfreeze", nil, &out)
	return out.Run, out.Listing, err
}

// RunNow: POST /products/{id}/dialtests.
func (c *Client) RunNow(ctx context.Context, productID string) (Run, error) {
	var out Run
	return out, c.do(ctx, "POST", "/products/"+esc(productID)+"/dialtests", nil, &out)
}

// ListRuns: GET /dialtests.
func (c *Client) ListRuns(ctx context.Context, f RunFilter) ([]Run, error) {
	var out []Run
	return out, c.do(ctx, "GET", "/dialtests"+query("sellerId", f.SellerID, "productId", f.ProductID, "limit", itoa(f.Limit)), nil, &out)
}

// GetRun: GET /dialtests/{id}.
func (c *Client) GetRun(ctx context.Context, id int64) (Run, error) {
	var out Run
	return out, c.do(ctx, "GET", "/dialtests/"+strconv.FormatInt(id, 10), nil, &out)
}

// History: GET /products/{id}/history.
func (c *Client) History(ctx context.Context, productID string, days int) ([]Day, error) {
	var out []Day
	return out, c.do(ctx, "GET", "/products/"+esc(productID)+"/history"+query("days", itoa(days)), nil, &out)
}

// Schedule: GET /dialtests/schedule.
func (c *Client) Schedule(ctx context.Context) (Schedule, error) {
	var out Schedule
	return out, c.do(ctx, "GET", "/dialtests/schedule", nil, &out)
}

var (
	_ API = (*Tools)(nil)
	_ API = (*Client)(nil)
)
