// Package check is souk's conformance suite: it plays the KooGallery
// marketplace against any merchant endpoint, sends every scenario the
// marketplace can send (and the attacks it must withstand) and judges each
// answer against the contract written down in docs/koogallery.
//
// The suite is a table of checks (Checks); Run executes the ones that apply to
// a configuration and returns a Report, which the renderers turn into text,
// JUnit XML or JSON. A check fails only on what the contract states; where
// Huawei's documentation is silent, ambiguous or marked [UNCONFIRMED] /
// [inferred], a deviation is a warning, so that a correct merchant is never
// failed on a guess.
package check

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/soukhq/souk/clock"
)

// Charging modes (saas-v2.md §3 columns).
const (
	ModePeriod   = "PERIOD"    // yearly/monthly (包周期)
	ModeOneTime  = "ONE_TIME"  // one-time (按次)
	ModeOnDemand = "ON_DEMAND" // pay-per-use (按需)
)

// Optional interfaces a product may offer.
const (
	FeatureUpgrade     = "upgrade"     // upgradeInstance (PERIOD only)
	FeatureChangeCheck = "changeCheck" // changeInstanceCheck (PERIOD only)
	FeatureOrderNotify = "orderNotify" // orderNotify (any mode)
)

// DefaultTimeout is how long KooGallery waits for an answer (README.md policy 8).
const DefaultTimeout = 5 * time.Second

// Config says what to check and how.
type Config struct {
	// Target is the merchant's production interface address; every basic
	// interface is POSTed to it with signature, timestamp and nonce appended.
	Target string
	// AccessKey is the key bound to the target's basic interfaces.
	AccessKey string
	// NotifyKey is the "general" key orderNotify is signed with (saas-v2.md
	// §4.8); AccessKey when empty.
	NotifyKey string
	// Mode is the product's charging mode: ModePeriod (default), ModeOneTime or ModeOnDemand.
	Mode string
	// Upgrade, ChangeCheck and OrderNotify say which optional interfaces the
	// product offers; their checks run only when set.
	Upgrade, ChangeCheck, OrderNotify bool

	// Orders receives every order the suite invents before the merchant is
	// told about it, so that Query Order can answer for it (an embedded
	// MarketStub, or an adapter to a running marketplace). Nil: orders are not
	// published (a merchant that needs Query Order will then fail).
	Orders OrderPublisher

	// Timeout is the answer deadline (default DefaultTimeout, the contract's
	// 5 s). Tests may shorten it.
	Timeout time.Duration
	// AsyncTimeout bounds the queryInstance polling after a 000004 answer
	// (default 2 minutes); PollInterval is the pause between polls (default 2 s).
	AsyncTimeout time.Duration
	PollInterval time.Duration
	// ReplayDelay is how long sec.nonce.replayDelayed waits before replaying
	// a request (default 3 s; it must stay well inside the 60 s window).
	ReplayDelay time.Duration
	// Concurrency is the number of simultaneous newInstance retries in the
	// concurrent idempotency check (default 8).
	Concurrency int
	// Only, when non-empty, restricts the run to checks whose id starts with
	// one of these prefixes.
	Only []string

	HTTPClient *http.Client // default: a client without its own timeout (Timeout applies per call); redirects are never followed
	Clock      clock.Clock  // default clock.Real{}
	Logger     *slog.Logger // default: discard
	// Progress, when set, is called when each check starts (done=false) and
	// ends (done=true, r filled in). Calls are sequential.
	Progress func(r Result, done bool)
}

// OrderPublisher makes an invented order visible to Query Order.
type OrderPublisher interface {
	PublishOrder(o Order) error
}

func (c *Config) normalize() error {
	if c.Target == "" {
		return errors.New("check: target URL is required")
	}
	if !strings.HasPrefix(c.Target, "http://") && !strings.HasPrefix(c.Target, "https://") {
		return fmt.Errorf("check: target %q: scheme must be http or https", c.Target)
	}
	if c.AccessKey == "" {
		return errors.New("check: access key is required")
	}
	if c.NotifyKey == "" {
		c.NotifyKey = c.AccessKey
	}
	switch c.Mode {
	case "":
		c.Mode = ModePeriod
	case ModePeriod, ModeOneTime, ModeOnDemand:
	default:
		return fmt.Errorf("check: charging mode %q: want %s, %s or %s", c.Mode, ModePeriod, ModeOneTime, ModeOnDemand)
	}
	if c.Mode != ModePeriod && (c.Upgrade || c.ChangeCheck) {
		return fmt.Errorf("check: upgradeInstance and changeInstanceCheck exist only for %s products (saas-v2.md §3)", ModePeriod)
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.AsyncTimeout <= 0 {
		c.AsyncTimeout = 2 * time.Minute
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 2 * time.Second
	}
	if c.ReplayDelay <= 0 {
		c.ReplayDelay = 3 * time.Second
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	// Redirects are never followed: KooGallery counts any non-200 answer as a
	// failed call (saas-v2.md §8.1), so a 3xx must be seen and reported.
	hc := &http.Client{}
	if c.HTTPClient != nil {
		cp := *c.HTTPClient
		hc = &cp
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.HTTPClient = hc
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Status is the verdict of one check.
type Status string

// Verdicts. A failed optional rule is reported as Warn.
const (
	Pass Status = "PASS"
	Fail Status = "FAIL"
	Warn Status = "WARN"
	Skip Status = "SKIP"
)

// Finding is one observation that made a check fail or warn.
type Finding struct {
	Severity Status `json:"severity"`       // Fail or Warn
	What     string `json:"what"`           // what went wrong
	Sent     string `json:"sent,omitempty"` // the request that showed it
	Got      string `json:"got,omitempty"`  // the answer
	Want     string `json:"want,omitempty"` // what the contract requires
	Ref      string `json:"ref,omitempty"`  // where the rule is written
}

// Result is the outcome of one check.
type Result struct {
	ID        string        `json:"id"`
	Family    string        `json:"family"`
	Title     string        `json:"title"`
	Mandatory bool          `json:"mandatory"`
	Ref       string        `json:"ref"`
	Status    Status        `json:"status"`
	Message   string        `json:"message,omitempty"`
	Notes     []string      `json:"notes,omitempty"`
	Findings  []Finding     `json:"findings,omitempty"`
	Duration  time.Duration `json:"duration_ns"`
}

// Latency summarises the answer times of every call the suite made.
type Latency struct {
	Calls int           `json:"calls"`
	P50   time.Duration `json:"p50_ns"`
	P95   time.Duration `json:"p95_ns"`
	Max   time.Duration `json:"max_ns"`
	Slow  int           `json:"over_timeout"` // answers slower than the timeout (or none at all)
}

// Report is the outcome of a run.
type Report struct {
	Target     string         `json:"target"`
	Mode       string         `json:"mode"`
	Features   []string       `json:"features,omitempty"`
	Started    time.Time      `json:"started"`
	Duration   time.Duration  `json:"duration_ns"`
	Results    []Result       `json:"results"`
	Latency    Latency        `json:"latency"`
	Passed     bool           `json:"passed"` // every mandatory check passed
	Counts     map[Status]int `json:"counts"`
	SetupError string         `json:"setup_error,omitempty"`
}

// Failed returns the results with status Fail.
func (r *Report) Failed() []Result {
	var out []Result
	for _, x := range r.Results {
		if x.Status == Fail {
			out = append(out, x)
		}
	}
	return out
}

// Result returns the result of the check with the given id.
func (r *Report) Result(id string) (Result, bool) {
	for _, x := range r.Results {
		if x.ID == id {
			return x, true
		}
	}
	return Result{}, false
}
