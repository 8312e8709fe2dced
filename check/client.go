package check

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/soukhq/souk/kg"
)

// maxAnswer caps how much of an answer the suite reads.
const maxAnswer = 1 << 20

// call describes one request to the target. The zero value of each tampering
// field means "do it right".
type call struct {
	body      []byte // exact bytes sent
	key       string // signing key (default: the access key; the notify key for orderNotify)
	signBody  []byte // sign these bytes instead of body (tampering)
	timestamp string // use this timestamp instead of now (ms)
	nonce     string // use this nonce instead of a fresh one
	signature string // use this signature instead of computing it
	lowerHex  bool   // send the signature in lower-case hex
	noAuth    bool   // send no signature/timestamp/nonce at all
	omitSig   bool   // leave out only the signature parameter
	omitTS    bool   // leave out only the timestamp parameter (the signature is computed over an empty one)
	omitNonce bool   // leave out only the nonce parameter (the signature is computed over an empty one)
	note      string // what is special about this call, for the report
	noAudit   bool   // keep the answer out of the answer-format checks
}

// exchange is one request and its answer.
type exchange struct {
	Activity string
	URL      string
	Body     []byte
	Note     string
	Nonce    string

	Status   int
	Header   http.Header
	Answer   []byte
	Latency  time.Duration
	Err      error // transport error or timeout
	TimedOut bool
	TooLarge bool // the answer was longer than maxAnswer: Answer holds its start

	// Parsed answer (when the body is a JSON object).
	Parsed *Answer
	Audit  bool
}

// Code returns the answer's resultCode ("" when there is none).
func (x *exchange) Code() string {
	if x.Parsed == nil {
		return ""
	}
	return x.Parsed.ResultCode
}

// sent describes the request for a finding.
func (x *exchange) sent() string {
	s := "POST " + redactURL(x.URL) + " " + clip(string(x.Body), 400)
	if x.Note != "" {
		s += " [" + x.Note + "]"
	}
	return s
}

// got describes the answer for a finding.
func (x *exchange) got() string {
	if x.Err != nil {
		if x.TimedOut {
			return "no answer within the timeout (" + fmtDur(x.Latency) + ")"
		}
		return "transport error: " + x.Err.Error()
	}
	if x.TooLarge {
		return fmt.Sprintf("HTTP %d in %s, an answer larger than %d bytes (not read further): %s", x.Status, fmtDur(x.Latency), maxAnswer, clip(string(x.Answer), 200))
	}
	return fmt.Sprintf("HTTP %d in %s: %s", x.Status, fmtDur(x.Latency), clip(string(x.Answer), 400))
}

func redactURL(u string) string {
	// The signature is not secret, but it is long; keep the URL readable.
	if i := strings.Index(u, "signature="); i >= 0 {
		j := strings.IndexByte(u[i:], '&')
		sig := u[i+len("signature="):]
		if j >= 0 {
			sig = u[i+len("signature=") : i+j]
		}
		if len(sig) > 12 {
			u = strings.Replace(u, sig, sig[:8]+"…", 1)
		}
	}
	return u
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// client sends signed requests to the target and records every exchange.
type client struct {
	cfg *Config

	mu        sync.Mutex
	exchanges []*exchange
	dead      int // consecutive calls without any HTTP answer
}

// unreachable reports whether the last calls all went unanswered.
func (c *client) unreachable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead >= unreachableAfter
}

// unreachableAfter is how many consecutive unanswered calls make the suite
// give up on the target (a dead target would otherwise cost 5 s per call).
const unreachableAfter = 6

func newNonce() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("check: crypto/rand: %v", err)) // crypto/rand never fails on supported platforms
	}
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

func (c *client) nowMillis() string {
	return strconv.FormatInt(c.cfg.Clock.Now().UnixMilli(), 10)
}

// send performs one call.
func (c *client) send(ctx context.Context, cl call) *exchange {
	x := &exchange{Body: cl.body, Note: cl.note, Audit: !cl.noAudit}
	x.Activity = activityOf(cl.body)
	key := cl.key
	if key == "" {
		key = c.cfg.AccessKey
		if x.Activity == "orderNotify" {
			key = c.cfg.NotifyKey
		}
	}
	target := c.cfg.Target
	if !cl.noAuth {
		ts := cl.timestamp
		if ts == "" && !cl.omitTS {
			ts = c.nowMillis()
		}
		nonce := cl.nonce
		if nonce == "" && !cl.omitNonce {
			nonce = newNonce()
		}
		x.Nonce = nonce
		sig := cl.signature
		if sig == "" {
			signed := cl.body
			if cl.signBody != nil {
				signed = cl.signBody
			}
			sig = kg.SignV2(key, nonce, ts, signed)
			if cl.lowerHex {
				sig = strings.ToLower(sig)
			}
		}
		var params []string
		if !cl.omitSig {
			params = append(params, "signature="+url.QueryEscape(sig))
		}
		if !cl.omitTS {
			params = append(params, "timestamp="+url.QueryEscape(ts))
		}
		if !cl.omitNonce {
			params = append(params, "nonce="+url.QueryEscape(nonce))
		}
		q := strings.Join(params, "&")
		switch {
		case q == "":
		case strings.Contains(target, "?"):
			target += "&" + q
		default:
			target += "?" + q
		}
	}
	x.URL = target
	c.do(ctx, x)
	c.record(x)
	return x
}

func (c *client) record(x *exchange) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.exchanges = append(c.exchanges, x)
	if x.Err != nil && x.Status == 0 {
		c.dead++
	} else {
		c.dead = 0
	}
}

// resend sends exactly the same URL and body again (a replay).
func (c *client) resend(ctx context.Context, prev *exchange, note string) *exchange {
	x := &exchange{Activity: prev.Activity, URL: prev.URL, Body: prev.Body, Note: note, Nonce: prev.Nonce, Audit: true}
	c.do(ctx, x)
	c.record(x)
	return x
}

func (c *client) do(ctx context.Context, x *exchange) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, x.URL, bytes.NewReader(x.Body))
	if err != nil {
		x.Err = fmt.Errorf("build request: %w", err)
		return
	}
	req.Header.Set("Content-Type", "application/json;charset=utf8")
	req.Header.Set("Accept", "application/json")
	start := time.Now() // latency is real elapsed time, whatever clock the run uses
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		x.Latency = time.Since(start)
		x.Err = err
		x.TimedOut = errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	x.Latency = time.Since(start)
	if err != nil {
		x.Err = fmt.Errorf("read answer: %w", err)
		x.TimedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
		return
	}
	x.Status = resp.StatusCode
	x.Header = resp.Header
	if len(body) > maxAnswer {
		x.TooLarge = true
		x.Answer = body[:maxAnswer]
		return
	}
	x.Answer = body
	if a, err := ParseAnswer(body); err == nil {
		x.Parsed = a
	}
}

func (c *client) all() []*exchange {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*exchange(nil), c.exchanges...)
}

// activityOf extracts the activity of a request body for labelling (best effort).
func activityOf(body []byte) string {
	const k = `"activity":"`
	i := bytes.Index(body, []byte(k))
	if i < 0 {
		return ""
	}
	rest := body[i+len(k):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || j > 40 {
		return ""
	}
	return string(rest[:j])
}
