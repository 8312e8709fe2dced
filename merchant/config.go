package merchant

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Config is the merchant's configuration. Zero values take the defaults
// documented on each field (see docs/merchant.md).
type Config struct {
	// AccessKeys are the KooGallery access keys bound to the basic
	// interfaces; several during a rotation. The first one signs usage pushes
	// and answers to unauthenticated requests.
	AccessKeys []string
	// GeneralKeys are the KooGallery "general" (通用接口) keys, which sign
	// orderNotify; several during a rotation. None: orderNotify is verified
	// with the access keys. Set: orderNotify is verified with these only, and
	// the basic interfaces are not accepted with them.
	GeneralKeys []string
	// BasePath is the production address path (default "/koogallery").
	BasePath string
	// Window is the accepted clock skew of request timestamps (default 60 s).
	Window time.Duration
	// MaxBody caps request bodies (default 64 KiB).
	MaxBody int64
	// Budget is how long newInstance may work before answering 000004
	// (default 4 s, inside KooGallery's 5 s timeout).
	Budget time.Duration

	// InlineTimeout bounds a hand-off attempt started by a request (default
	// 60 s); the request itself only waits for it until its budget.
	InlineTimeout time.Duration

	// MarketURL, MarketAK, MarketSK: Query Order and usage push.
	MarketURL string
	// MarketFallbackURL is tried for Query Order when MarketURL is
	// unreachable (e.g. https://mkt.myhuaweicloud.cn).
	MarketFallbackURL string
	MarketAK          string
	MarketSK          string

	// WebhookURL and WebhookSecret: the vendor app's event endpoint. Without
	// a URL (and without a Provisioner) real events are recorded as delivered
	// to nobody and the app completes instances through the management API.
	// WebhookSecret may list several secrets, comma-separated, while it is
	// rotated: each signs every webhook.
	WebhookURL    string
	WebhookSecret string
	// SandboxWebhookURL receives sandbox (testFlag "1") events; empty → souk
	// completes sandbox instances itself with generated demo appInfo.
	SandboxWebhookURL string
	// WebhookMaxAttempts before an event goes to the dead letter (default 12).
	WebhookMaxAttempts int

	// AdminToken authenticates the management API (bearer). Empty disables it.
	AdminToken string

	// EncryptType of appInfo credentials: "" or "0" plaintext (default),
	// "1" AES-256, "2" AES-128; ProductEncrypt overrides it per productId.
	EncryptType    string
	ProductEncrypt map[string]string

	// NonceRetention: how long seen nonces are kept (default 10 min, at least
	// 2×Window + NonceClockSkew).
	NonceRetention time.Duration
	// AuditRetention: audit_log rows older than this are pruned (0 = keep forever).
	AuditRetention time.Duration
	// AuditRetentionRejected: the audit_log rows of calls that were never
	// authenticated (RejectedAudit) are pruned after this, when it is shorter
	// than AuditRetention (0 = as AuditRetention). souk merchant's default is
	// 30 days, so that a scanner's probes do not grow the store without end.
	AuditRetentionRejected time.Duration

	// TrustedProxies are the reverse proxies and load balancers in front of
	// the merchant: a request from one of them is recorded with the client
	// address its X-Forwarded-For gives (ParseTrustedProxies).
	TrustedProxies []netip.Prefix
}

// NonceClockSkew is how far the clocks of replicas sharing a database may
// differ without a replay getting through: a nonce is stored at the clock of
// the replica that took it and pruned at the clock of whichever replica
// prunes, while a replay may reach a third one. 2×Window alone (a timestamp
// at one edge of the window, its replay at the other) left no room.
const NonceClockSkew = time.Minute

func (c *Config) setDefaults() {
	if c.BasePath == "" {
		c.BasePath = "/koogallery"
	}
	if !strings.HasPrefix(c.BasePath, "/") {
		c.BasePath = "/" + c.BasePath
	}
	if c.Window <= 0 {
		c.Window = 60 * time.Second
	}
	if c.MaxBody <= 0 {
		c.MaxBody = 64 << 10
	}
	if c.Budget <= 0 {
		c.Budget = 4 * time.Second
	}
	if c.InlineTimeout <= 0 {
		c.InlineTimeout = 60 * time.Second
	}
	if c.WebhookMaxAttempts <= 0 {
		c.WebhookMaxAttempts = 12
	}
	if min := 2*c.Window + NonceClockSkew; c.NonceRetention < min {
		c.NonceRetention = max(min, 10*time.Minute)
	}
}

// Validate reports configuration errors, naming the setting.
func (c *Config) Validate() error {
	var errs []error
	if len(c.AccessKeys) == 0 {
		errs = append(errs, errors.New("access key: at least one is required (SOUK_ACCESS_KEY)"))
	}
	for i, k := range c.AccessKeys {
		if strings.TrimSpace(k) == "" {
			errs = append(errs, fmt.Errorf("access key #%d is empty", i+1))
		}
	}
	for i, k := range c.GeneralKeys {
		if strings.TrimSpace(k) == "" {
			errs = append(errs, fmt.Errorf("general key #%d is empty", i+1))
		}
	}
	checkURL := func(name, v string) {
		if v == "" {
			return
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s: %q is not an http(s) URL", name, v))
		}
	}
	checkURL("market URL", c.MarketURL)
	checkURL("market fallback URL", c.MarketFallbackURL)
	checkURL("webhook URL", c.WebhookURL)
	checkURL("sandbox webhook URL", c.SandboxWebhookURL)
	if c.WebhookURL != "" && c.WebhookSecret == "" {
		errs = append(errs, errors.New("webhook secret: required with a webhook URL (SOUK_WEBHOOK_SECRET)"))
	}
	checkEnc := func(name, v string) {
		switch v {
		case "", "0", "1", "2":
		default:
			errs = append(errs, fmt.Errorf("%s: %q is not 0, 1 or 2", name, v))
		}
	}
	checkEnc("encrypt type", c.EncryptType)
	for p, v := range c.ProductEncrypt {
		checkEnc("encrypt type of product "+p, v)
	}
	return errors.Join(errs...)
}

// encryptTypeFor is the credential encryption of a product ("" = plaintext).
func (c *Config) encryptTypeFor(productID string) string {
	t, ok := c.ProductEncrypt[productID]
	if !ok {
		t = c.EncryptType
	}
	if t == "0" {
		return ""
	}
	return t
}

// ParseProductEncrypt reads "productA=1,productB=0".
func ParseProductEncrypt(s string) (map[string]string, error) {
	out := map[string]string{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, v, ok := strings.Cut(part, "=")
		if !ok || strings.TrimSpace(p) == "" {
			return nil, fmt.Errorf("product encrypt type %q: want productId=0|1|2", part)
		}
		out[strings.TrimSpace(p)] = strings.TrimSpace(v)
	}
	return out, nil
}

// SplitKeys reads a comma-separated list of keys, dropping empty entries.
func SplitKeys(s string) []string {
	var out []string
	for k := range strings.SplitSeq(s, ",") {
		if k = strings.TrimSpace(k); k != "" {
			out = append(out, k)
		}
	}
	return out
}
