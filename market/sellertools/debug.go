package sellertools

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/market"
)

// Headers the market sends with every production-interface call (the same as
// the dispatcher's).
var requestHeaders = []Header{
	{Name: "Accept", Value: "application/json"},
	{Name: "Content-Type", Value: "application/json;charset=utf8"},
}

// Header is one HTTP request header.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// DebugInput is what the seller fills in on an interface tab.
type DebugInput struct {
	ProductID string `json:"productId"`
	Activity  string `json:"activity"`
	// Params are the interface's parameters; a parameter left out takes its
	// default (Defaults), one given as "" is left out of the body.
	Params map[string]string `json:"params,omitempty"`
	// URL is the address to call; default the product's production address.
	// It must be on the scheme and host of one of the seller's verified
	// addresses (the address "with path" of Seller Center's tool).
	URL string `json:"url,omitempty"`
	// Name names the case when it is saved; default the activity (with the
	// scene or status for refreshInstance and updateInstanceStatus).
	Name string `json:"name,omitempty"`
}

// UnmarshalJSON reads a DebugInput strictly (unknown fields are errors) and
// accepts a parameter value given as a JSON object (productInfo) as well as a
// string.
func (in *DebugInput) UnmarshalJSON(b []byte) error {
	var raw struct {
		ProductID string                     `json:"productId"`
		Activity  string                     `json:"activity"`
		Params    map[string]json.RawMessage `json:"params"`
		URL       string                     `json:"url"`
		Name      string                     `json:"name"`
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&raw); err != nil {
		return err
	}
	*in = DebugInput{ProductID: raw.ProductID, Activity: raw.Activity, URL: raw.URL, Name: raw.Name}
	if raw.Params != nil {
		in.Params = make(map[string]string, len(raw.Params))
	}
	for k, v := range raw.Params {
		var s string
		if err := json.Unmarshal(v, &s); err == nil {
			in.Params[k] = s
			continue
		}
		var obj map[string]any
		if err := json.Unmarshal(v, &obj); err != nil || obj == nil {
			return badField("params."+k, "must be a string (or a JSON object for productInfo)")
		}
		var c bytes.Buffer
		if err := json.Compact(&c, v); err != nil {
			return badField("params."+k, "%v", err)
		}
		in.Params[k] = c.String()
	}
	return nil
}

// Command is a generated request (生成请求命令): exactly what the market
// sends, signed with the seller's access key of the interface's type.
type Command struct {
	ProductID string            `json:"productId"`
	SellerID  string            `json:"sellerId"`
	Activity  string            `json:"activity"`
	KeyType   string            `json:"keyType"`
	Params    map[string]string `json:"params"`
	Method    string            `json:"method"`
	URL       string            `json:"url"` // signed: ?signature=…&timestamp=…&nonce=…
	Headers   []Header          `json:"headers"`
	Body      json.RawMessage   `json:"body"`
	BodyText  string            `json:"bodyText"` // the exact bytes signed and sent
	Signature string            `json:"signature,omitempty"`
	Timestamp string            `json:"timestamp,omitempty"`
	Nonce     string            `json:"nonce,omitempty"`
	Curl      string            `json:"curl"`
	Note      string            `json:"note,omitempty"`
}

// Result is the outcome of a debug call (调测).
type Result struct {
	Request    Command         `json:"request"` // as sent (signed at send time)
	MessageID  int64           `json:"messageId"`
	HTTPStatus int             `json:"httpStatus"`
	Response   json.RawMessage `json:"response,omitempty"` // the answer when it is JSON
	RawAnswer  string          `json:"rawAnswer,omitempty"`
	BodySign   string          `json:"bodySign"` // ok | bad | absent
	LatencyMS  int64           `json:"latencyMs"`
	ResultCode string          `json:"resultCode,omitempty"`
	ResultMsg  string          `json:"resultMsg,omitempty"`
	Verdict    string          `json:"verdict"` // success | in-progress | failure
	Passed     bool            `json:"passed"`
	Error      string          `json:"error,omitempty"`
	InstanceID string          `json:"instanceId,omitempty"`
	Warnings   []string        `json:"warnings,omitempty"`  // allowed by the protocol, but worth a look
	Saved      *Case           `json:"savedCase,omitempty"` // debug and save case: the case, when it passed
}

// prepared is a resolved debug request.
type prepared struct {
	product market.Product
	iface   Interface
	url     string
	params  map[string]string
	body    []byte
	name    string
}

// Defaults returns the preset parameters of an interface tab for a product:
// testFlag "1", the MOCK… order of the product's charging mode, a fresh
// businessId, the instanceId of the product's saved newInstance case, a
// renewal expiry a year from now, the productInfo of its first plan.
func (t *Tools) Defaults(ctx context.Context, productID, activity string) (map[string]string, error) {
	p, err := t.product(ctx, productID)
	if err != nil {
		return nil, err
	}
	in, ok := lookupInterface(activity)
	if !ok {
		return nil, badField("activity", "must be %s", describeInterfaces())
	}
	return t.defaults(ctx, p, in)
}

func (t *Tools) defaults(ctx context.Context, p market.Product, in Interface) (map[string]string, error) {
	instanceID, err := t.savedInstanceID(ctx, p.ID)
	if err != nil {
		return nil, err
	}
	order := map[string]string{
		"newInstance":     mockOrder(p),
		"refreshInstance": "MOCKMONTYRENEW",
		"upgradeInstance": "MOCKMONTYCHANGE",
		"orderNotify":     mockOrder(p),
	}[in.Activity]
	out := map[string]string{}
	for _, prm := range in.Params {
		switch prm.Name {
		case "testFlag":
			out[prm.Name] = "1"
		case "orderId":
			if prm.Required {
				out[prm.Name] = order
			}
		case "orderLineId":
			if prm.Required {
				out[prm.Name] = order + "-000001"
			}
		case "businessId":
			id, err := t.uuid()
			if err != nil {
				return nil, err
			}
			out[prm.Name] = id
		case "instanceId":
			out[prm.Name] = instanceID
		case "scene":
			out[prm.Name] = "RENEWAL"
		case "expireTime":
			out[prm.Name] = kg.FormatTime14(kg.Expiry(t.clock.Now(), "year", 1)) // as the market bills a year: 23:59:59 Beijing time, Feb 29 + 1 year = Feb 28
		case "status":
			out[prm.Name] = "FREEZE"
		case "productInfo":
			if len(p.Plans) > 0 {
				pl := p.Plans[0]
				for _, x := range p.Plans {
					if x.ChargingMode == market.ModePeriod {
						pl = x
						break
					}
				}
				info := map[string]any{"productId": pl.ProductCode, "skuCode": pl.SKUCode}
				if pl.Linear != nil {
					info["linearValue"] = pl.Linear.Min
				}
				b, _ := json.Marshal(info)
				out[prm.Name] = string(b)
			}
		}
	}
	return out, nil
}

// savedInstanceID is the instance the product's saved newInstance case created.
func (t *Tools) savedInstanceID(ctx context.Context, productID string) (string, error) {
	rows, err := t.db.Query(ctx, `SELECT instance_id FROM sellertools_cases WHERE product_id = $1 AND activity = 'newInstance'
		AND instance_id <> '' ORDER BY updated_at DESC, id DESC LIMIT 1`, productID)
	if err != nil {
		return "", fmt.Errorf("sellertools: saved instance: %w", err)
	}
	defer rows.Close()
	id := ""
	if rows.Next() {
		if err := rows.Scan(&id); err != nil {
			return "", fmt.Errorf("sellertools: saved instance: %w", err)
		}
	}
	return id, rows.Err()
}

func (t *Tools) product(ctx context.Context, id string) (market.Product, error) {
	if id == "" {
		return market.Product{}, badField("productId", "is required")
	}
	p, err := t.m.GetProduct(ctx, id)
	if err != nil {
		return market.Product{}, err
	}
	return p, nil
}

// prepare resolves a debug input: product, interface, address, parameters
// (defaults filled in) and body.
func (t *Tools) prepare(ctx context.Context, in DebugInput) (prepared, error) {
	p, err := t.product(ctx, in.ProductID)
	if err != nil {
		return prepared{}, err
	}
	iface, ok := lookupInterface(in.Activity)
	if !ok {
		return prepared{}, badField("activity", "must be %s", describeInterfaces())
	}
	params, err := t.defaults(ctx, p, iface)
	if err != nil {
		return prepared{}, err
	}
	for k, v := range in.Params {
		params[k] = v
	}
	for k, v := range params {
		if v == "" {
			delete(params, k)
		}
	}
	if _, ok := params["instanceId"]; !ok && iface.Activity != "newInstance" && iface.Activity != "orderNotify" {
		return prepared{}, badField("params.instanceId", "is required: debug and save a newInstance case of product %s first, or enter an instance ID", p.ID)
	}
	body, err := buildBody(iface, params)
	if err != nil {
		return prepared{}, err
	}
	u, err := t.address(ctx, p, in.URL)
	if err != nil {
		return prepared{}, err
	}
	name := in.Name
	if name == "" {
		name = defaultCaseName(iface.Activity, params)
	}
	if err := checkName(name); err != nil {
		return prepared{}, err
	}
	return prepared{product: p, iface: iface, url: u, params: params, body: body, name: name}, nil
}

// address returns the URL to call: the product's production address, or an
// override on the scheme and host of one of the seller's verified addresses.
func (t *Tools) address(ctx context.Context, p market.Product, override string) (string, error) {
	a, err := t.m.GetAddress(ctx, p.AddressID)
	if err != nil {
		return "", err
	}
	if override == "" || override == a.URL {
		return a.URL, nil
	}
	u, err := url.Parse(override)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return "", badField("url", "must be an http or https URL without user info or fragment")
	}
	addrs, err := t.m.ListAddresses(ctx, p.SellerID)
	if err != nil {
		return "", err
	}
	for _, x := range addrs {
		v, err := url.Parse(x.URL)
		if err == nil && x.Verified && strings.EqualFold(v.Scheme, u.Scheme) && strings.EqualFold(v.Host, u.Host) {
			return override, nil
		}
	}
	return "", badField("url", "is not on a verified production address of seller %s", p.SellerID)
}

// Generate builds the signed request command of a debug input without
// sending it (生成请求命令): URL with signature, timestamp and nonce, headers,
// body, and a curl command line. The signature is valid for the merchant's
// time window from now; Send signs afresh.
func (t *Tools) Generate(ctx context.Context, in DebugInput) (Command, error) {
	pr, err := t.prepare(ctx, in)
	if err != nil {
		return Command{}, err
	}
	key, err := t.m.SellerKey(ctx, pr.product.SellerID, pr.iface.KeyType)
	if err != nil {
		return Command{}, err
	}
	nonce, err := t.nonce()
	if err != nil {
		return Command{}, err
	}
	now := t.m.WireClock().Now()
	signed, err := kg.SignedURL(pr.url, key, pr.body, now, nonce)
	if err != nil {
		return Command{}, badField("url", "%v", err)
	}
	cmd := t.command(pr, signed)
	cmd.Nonce = nonce
	cmd.Timestamp = kg.FormatTimestampMillis(now)
	cmd.Signature = kg.SignV2(key, nonce, cmd.Timestamp, pr.body)
	cmd.Note = "signed with the seller's " + pr.iface.KeyType + " access key; the timestamp must be within the merchant's window (60 s) when it is sent"
	return cmd, nil
}

func (t *Tools) command(pr prepared, signedURL string) Command {
	return Command{
		ProductID: pr.product.ID, SellerID: pr.product.SellerID, Activity: pr.iface.Activity, KeyType: pr.iface.KeyType,
		Params: pr.params, Method: "POST", URL: signedURL, Headers: requestHeaders, Body: json.RawMessage(pr.body),
		BodyText: string(pr.body), Curl: curl(signedURL, pr.body),
	}
}

// curl renders a request as a POSIX shell curl command line.
func curl(u string, body []byte) string {
	var b strings.Builder
	b.WriteString("curl -sS -X POST ")
	b.WriteString(shellQuote(u))
	for _, h := range requestHeaders {
		b.WriteString(" -H ")
		b.WriteString(shellQuote(h.Name + ": " + h.Value))
	}
	b.WriteString(" --data-raw ")
	b.WriteString(shellQuote(string(body)))
	return b.String()
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'" }

// Send makes the debug call (调测): signed with the seller's key through the
// market's call path (5 s timeout, Body-Sign verified when present, logged in
// the market's production-interface message log), and judges the answer.
func (t *Tools) Send(ctx context.Context, in DebugInput) (Result, error) {
	pr, err := t.prepare(ctx, in)
	if err != nil {
		return Result{}, err
	}
	return t.send(ctx, pr)
}

func (t *Tools) send(ctx context.Context, pr prepared) (Result, error) {
	res, err := t.m.Call(ctx, market.Outbound{
		SellerID: pr.product.SellerID, Activity: pr.iface.Activity, URL: pr.url, KeyType: pr.iface.KeyType, Body: pr.body,
	})
	if err != nil {
		return Result{}, err
	}
	return judge(t.command(pr, res.RequestURL), res), nil
}

// judge turns the market's call result into the tool's verdict: a call passes
// when the market judges it a success, or for newInstance an asynchronous
// 000004 with an instanceId.
func judge(cmd Command, res market.CallResult) Result {
	r := Result{
		Request: cmd, MessageID: res.MessageID, HTTPStatus: res.HTTPStatus, BodySign: res.BodySign,
		LatencyMS: res.Latency.Milliseconds(), ResultCode: res.ResultCode, ResultMsg: res.ResultMsg, Verdict: res.Verdict,
		Error: res.Error, InstanceID: res.Response.InstanceID,
	}
	if len(res.Body) > 0 {
		if json.Valid(res.Body) {
			r.Response = json.RawMessage(res.Body)
		} else {
			r.RawAnswer = string(res.Body)
		}
	}
	r.Passed = res.Verdict == market.VerdictSuccess || res.Verdict == market.VerdictInProgress
	if r.Passed {
		r.Warnings = warnings(cmd, res)
	}
	return r
}

// warnings notes answers that pass but that a buyer or KooGallery would
// notice.
func warnings(cmd Command, res market.CallResult) []string {
	var out []string
	switch cmd.Activity {
	case "newInstance":
		if res.Verdict == market.VerdictInProgress {
			out = append(out, "provisioning asynchronously (000004): KooGallery polls queryInstance until the instance answers")
		}
		if res.BodySign == "absent" {
			out = append(out, "no Body-Sign header on the answer")
		}
	case "queryInstance":
		for _, id := range strings.Split(cmd.Params["instanceId"], ",") {
			id = strings.TrimSpace(id)
			found := false
			for _, in := range res.Response.Info {
				if in.InstanceID == id {
					found = true
					if in.AppInfo == nil || in.AppInfo.FrontEndURL == "" {
						out = append(out, "instance "+id+" has no appInfo.frontEndUrl: the buyer sees no usage information")
					}
				}
			}
			if !found && id != "" {
				out = append(out, "info has no entry for instance "+id)
			}
		}
	}
	return out
}

// DebugAndSave makes the debug call and, when it passed, saves it as the
// product's case under its name (调试并保存用例), replacing a case of the
// same name. A failed call saves nothing; the result says why.
func (t *Tools) DebugAndSave(ctx context.Context, in DebugInput) (Result, error) {
	pr, err := t.prepare(ctx, in)
	if err != nil {
		return Result{}, err
	}
	r, err := t.send(ctx, pr)
	if err != nil || !r.Passed {
		return r, err
	}
	c, err := t.saveCase(ctx, pr, r)
	if err != nil {
		return r, err
	}
	r.Saved = &c
	return r, nil
}

func (t *Tools) nonce() (string, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(t.rand, b); err != nil {
		return "", fmt.Errorf("sellertools: random: %w", err)
	}
	return strings.ToUpper(hex.EncodeToString(b)), nil
}

// uuid returns a random RFC 4122 version-4 UUID (businessId).
func (t *Tools) uuid() (string, error) {
	b := make([]byte, 16)
	if _, err := io.ReadFull(t.rand, b); err != nil {
		return "", fmt.Errorf("sellertools: random: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// callTimeout bounds one replayed case beyond the market's own 5 s call timeout.
const callTimeout = 30 * time.Second
