package market

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/soukhq/souk/db"
)

// Access-key types (one key per type per seller; saas-v2.md §1 "Key binding").
const (
	KeyBasic   = "basic"   // 基础接口: the SaaS basic interfaces, usage push
	KeyKit     = "kit"     // 联营SaaS同步接口: joint-operation kit syncs
	KeyLicense = "license" // License授权码交付接口
	KeyGeneral = "general" // 通用接口: orderNotify
)

// KeyTypes lists the access-key types.
func KeyTypes() []string { return []string{KeyBasic, KeyKit, KeyLicense, KeyGeneral} }

// Charging modes (Query Order orderLine.chargingMode).
const (
	ModePeriod      = "PERIOD"
	ModeOneTime     = "ONE_TIME"
	ModeOnDemand    = "ON_DEMAND"
	ModeOnDemandPkg = "ON_DEMAND_PKG"
)

// Seller is a KooGallery merchant account.
type Seller struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"createdAt"`
}

// Address is a production address (生产地址). Only a verified address can be
// used by a product.
type Address struct {
	ID         string    `json:"id"`
	SellerID   string    `json:"sellerId"`
	URL        string    `json:"url"`
	Verified   bool      `json:"verified"`
	VerifiedAt time.Time `json:"verifiedAt,omitzero"`
	VerifyNote string    `json:"verifyNote,omitempty"`
}

// AccessKey is a seller's key for one interface type. Secret is only filled
// when the key is created.
type AccessKey struct {
	SellerID string `json:"sellerId"`
	Type     string `json:"type"`
	KeyID    string `json:"keyId"`
	Secret   string `json:"secret,omitempty"`
}

// Credential is an AK/SK pair the seller's merchant server signs open-API
// calls with. SK is only filled when the credential is created.
type Credential struct {
	AK       string `json:"ak"`
	SK       string `json:"sk,omitempty"`
	SellerID string `json:"sellerId"`
}

// Linear describes a linear (quantity) attribute of a plan, e.g. users.
type Linear struct {
	Name string `json:"name"`
	Unit string `json:"unit,omitempty"`
	Min  int64  `json:"min"`
	Max  int64  `json:"max"`
}

// Plan is a sellable (skuCode, period type): the productId KooGallery puts on
// the wire.
type Plan struct {
	ProductCode     string  `json:"productId"`
	SKUCode         string  `json:"skuCode"`
	ChargingMode    string  `json:"chargingMode"`
	PeriodType      string  `json:"periodType,omitempty"`
	PriceCents      int64   `json:"priceCents"`
	UnitPriceMicros int64   `json:"unitPriceMicros,omitempty"`
	PackageQuota    string  `json:"packageQuota,omitempty"`
	Linear          *Linear `json:"linear,omitempty"`
}

// Product is a SaaS product with its plans and settings.
type Product struct {
	ID                   string    `json:"id"`
	SellerID             string    `json:"sellerId"`
	Name                 string    `json:"name"`
	Type                 string    `json:"type"`
	AddressID            string    `json:"addressId"`
	EncryptType          string    `json:"encryptType,omitempty"`
	UpgradeAllowed       bool      `json:"upgradeAllowed"`
	RenewalChangeAllowed bool      `json:"renewalChangeAllowed"`
	TrialDays            int       `json:"trialDays"`
	RetentionDays        int       `json:"retentionDays"` // -1: market default
	OrderNotify          bool      `json:"orderNotify"`
	Plans                []Plan    `json:"plans"`
	CreatedAt            time.Time `json:"createdAt"`
}

// CreateSeller registers a seller. An empty id is generated.
func (m *Market) CreateSeller(ctx context.Context, id, name string) (Seller, error) {
	if strings.TrimSpace(name) == "" {
		return Seller{}, badField("name", "is required")
	}
	if id == "" {
		var err error
		if id, err = m.newID("seller-"); err != nil {
			return Seller{}, err
		}
	} else if err := checkID("id", id); err != nil {
		return Seller{}, err
	}
	s := Seller{ID: id, Name: name, CreatedAt: m.clock.Now().UTC()}
	_, err := m.db.Exec(ctx, `INSERT INTO market_sellers (id, name, created_at) VALUES ($1, $2, $3)`, s.ID, s.Name, db.Millis(s.CreatedAt))
	if db.IsUniqueViolation(err) {
		return Seller{}, conflict("seller %q already exists", id)
	}
	if err != nil {
		return Seller{}, fmt.Errorf("market: create seller: %w", err)
	}
	return s, nil
}

// GetSeller returns a seller.
func (m *Market) GetSeller(ctx context.Context, id string) (Seller, error) {
	var s Seller
	var created int64
	err := m.db.QueryRow(ctx, `SELECT id, name, created_at FROM market_sellers WHERE id = $1`, id).Scan(&s.ID, &s.Name, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Seller{}, notFound("seller", id)
	}
	if err != nil {
		return Seller{}, fmt.Errorf("market: get seller: %w", err)
	}
	s.CreatedAt = db.FromMillis(created)
	return s, nil
}

// ListSellers returns every seller.
func (m *Market) ListSellers(ctx context.Context) ([]Seller, error) {
	rows, err := m.db.Query(ctx, `SELECT id, name, created_at FROM market_sellers ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("market: list sellers: %w", err)
	}
	defer rows.Close()
	var out []Seller
	for rows.Next() {
		var s Seller
		var created int64
		if err := rows.Scan(&s.ID, &s.Name, &created); err != nil {
			return nil, fmt.Errorf("market: list sellers: %w", err)
		}
		s.CreatedAt = db.FromMillis(created)
		out = append(out, s)
	}
	return out, rows.Err()
}

func checkID(field, id string) error {
	if len(id) > 64 {
		return badField(field, "is longer than 64 characters")
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return badField(field, "may only contain letters, digits, '-', '_' and '.'")
		}
	}
	if id == "" {
		return badField(field, "is required")
	}
	return nil
}

// checkAddressURL validates a production address. KooGallery requires HTTPS
// with a domain name; the self-hosted market also accepts http, so that
// loopback merchants can be driven.
func checkAddressURL(field, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return badField(field, "is not a URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return badField(field, "must be an http or https URL")
	}
	if u.Host == "" {
		return badField(field, "has no host")
	}
	if u.Fragment != "" || u.User != nil {
		return badField(field, "must not carry a fragment or user info")
	}
	return nil
}

// AddAddress registers a production address for a seller (unverified).
// Adding the same URL twice returns the existing address.
func (m *Market) AddAddress(ctx context.Context, sellerID, rawURL string) (Address, error) {
	if err := checkAddressURL("url", rawURL); err != nil {
		return Address{}, err
	}
	if _, err := m.GetSeller(ctx, sellerID); err != nil {
		return Address{}, err
	}
	id, err := m.newID("addr-")
	if err != nil {
		return Address{}, err
	}
	_, err = m.db.Exec(ctx, `INSERT INTO market_addresses (id, seller_id, url, created_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (seller_id, url) DO NOTHING`, id, sellerID, rawURL, db.Millis(m.clock.Now()))
	if err != nil {
		return Address{}, fmt.Errorf("market: add address: %w", err)
	}
	var got string
	if err := m.db.QueryRow(ctx, `SELECT id FROM market_addresses WHERE seller_id = $1 AND url = $2`, sellerID, rawURL).Scan(&got); err != nil {
		return Address{}, fmt.Errorf("market: add address: %w", err)
	}
	return m.GetAddress(ctx, got)
}

// GetAddress returns a production address.
func (m *Market) GetAddress(ctx context.Context, id string) (Address, error) {
	var a Address
	var verified int
	var at int64
	err := m.db.QueryRow(ctx, `SELECT id, seller_id, url, verified, verified_at, verify_note FROM market_addresses WHERE id = $1`, id).
		Scan(&a.ID, &a.SellerID, &a.URL, &verified, &at, &a.VerifyNote)
	if errors.Is(err, sql.ErrNoRows) {
		return Address{}, notFound("address", id)
	}
	if err != nil {
		return Address{}, fmt.Errorf("market: get address: %w", err)
	}
	a.Verified, a.VerifiedAt = verified == 1, db.FromMillis(at)
	return a, nil
}

// ListAddresses returns a seller's production addresses.
func (m *Market) ListAddresses(ctx context.Context, sellerID string) ([]Address, error) {
	rows, err := m.db.Query(ctx, `SELECT id FROM market_addresses WHERE seller_id = $1 ORDER BY created_at, id`, sellerID)
	if err != nil {
		return nil, fmt.Errorf("market: list addresses: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("market: list addresses: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("market: list addresses: %w", err)
	}
	out := make([]Address, 0, len(ids))
	for _, id := range ids {
		a, err := m.GetAddress(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// VerifyAddress checks that a production address speaks the protocol: it
// sends a signed debugging queryInstance (testFlag "1", an instance id that
// cannot exist) with the seller's basic key, and accepts any HTTP 200 JSON
// answer that carries a resultCode (000003 is the expected one). The call is
// logged like every other production-interface message.
func (m *Market) VerifyAddress(ctx context.Context, id string) (Address, error) {
	a, err := m.GetAddress(ctx, id)
	if err != nil {
		return Address{}, err
	}
	probe, err := m.newID("souk-verify-")
	if err != nil {
		return Address{}, err
	}
	body, _ := json.Marshal(struct {
		Activity   string `json:"activity"`
		InstanceID string `json:"instanceId"`
		TestFlag   string `json:"testFlag"`
	}{"queryInstance", probe, "1"})
	res, err := m.Call(ctx, Outbound{SellerID: a.SellerID, Activity: "queryInstance", URL: a.URL, KeyType: KeyBasic, Body: body,
		Effect: Effect{Kind: "verify"}})
	if err != nil {
		return Address{}, err
	}
	note := ""
	ok := res.Verdict == VerdictSuccess
	if ok {
		note = fmt.Sprintf("answered resultCode %s (message %d)", res.ResultCode, res.MessageID)
	} else {
		note = fmt.Sprintf("verification failed (message %d): %s", res.MessageID, res.Error)
	}
	now := m.clock.Now()
	verifiedAt := int64(0)
	if ok {
		verifiedAt = db.Millis(now)
	}
	if _, err := m.db.Exec(ctx, `UPDATE market_addresses SET verified = $1, verified_at = $2, verify_note = $3 WHERE id = $4`,
		db.Bool(ok), verifiedAt, note, id); err != nil {
		return Address{}, fmt.Errorf("market: verify address: %w", err)
	}
	return m.GetAddress(ctx, id)
}

// SetAccessKey sets the seller's key for one interface type, replacing the
// previous one. An empty secret is generated. A key value may not be used for
// two types (unique constraint).
func (m *Market) SetAccessKey(ctx context.Context, sellerID, keyType, secret string) (AccessKey, error) {
	if !validKeyType(keyType) {
		return AccessKey{}, badField("type", "must be one of %s", strings.Join(KeyTypes(), ", "))
	}
	if _, err := m.GetSeller(ctx, sellerID); err != nil {
		return AccessKey{}, err
	}
	if secret == "" {
		var err error
		if secret, err = m.randomHex(16); err != nil {
			return AccessKey{}, err
		}
	} else if len(secret) < 8 || len(secret) > 128 {
		return AccessKey{}, badField("secret", "must be 8 to 128 characters")
	}
	keyID, err := m.newID("key-")
	if err != nil {
		return AccessKey{}, err
	}
	_, err = m.db.Exec(ctx, `INSERT INTO market_access_keys (seller_id, key_type, key_id, secret, created_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (seller_id, key_type) DO UPDATE SET key_id = excluded.key_id, secret = excluded.secret, created_at = excluded.created_at`,
		sellerID, keyType, keyID, secret, db.Millis(m.clock.Now()))
	if db.IsUniqueViolation(err) {
		return AccessKey{}, conflict("this key value is already bound to another interface type of seller %q; each type needs its own key", sellerID)
	}
	if err != nil {
		return AccessKey{}, fmt.Errorf("market: set access key: %w", err)
	}
	return AccessKey{SellerID: sellerID, Type: keyType, KeyID: keyID, Secret: secret}, nil
}

func validKeyType(t string) bool {
	for _, k := range KeyTypes() {
		if k == t {
			return true
		}
	}
	return false
}

// ListAccessKeys returns a seller's keys without their secrets.
func (m *Market) ListAccessKeys(ctx context.Context, sellerID string) ([]AccessKey, error) {
	rows, err := m.db.Query(ctx, `SELECT key_type, key_id FROM market_access_keys WHERE seller_id = $1 ORDER BY key_type`, sellerID)
	if err != nil {
		return nil, fmt.Errorf("market: list keys: %w", err)
	}
	defer rows.Close()
	var out []AccessKey
	for rows.Next() {
		k := AccessKey{SellerID: sellerID}
		if err := rows.Scan(&k.Type, &k.KeyID); err != nil {
			return nil, fmt.Errorf("market: list keys: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// accessKey returns the secret of a seller's key of a type.
func (m *Market) accessKey(ctx context.Context, sellerID, keyType string) (string, error) {
	var secret string
	err := m.db.QueryRow(ctx, `SELECT secret FROM market_access_keys WHERE seller_id = $1 AND key_type = $2`, sellerID, keyType).Scan(&secret)
	if errors.Is(err, sql.ErrNoRows) {
		return "", refused("seller %q has no %s access key; set one first", sellerID, keyType)
	}
	if err != nil {
		return "", fmt.Errorf("market: access key: %w", err)
	}
	return secret, nil
}

// CreateCredential creates an AK/SK for the seller's open-API calls. Empty
// values are generated.
func (m *Market) CreateCredential(ctx context.Context, sellerID, ak, sk string) (Credential, error) {
	if _, err := m.GetSeller(ctx, sellerID); err != nil {
		return Credential{}, err
	}
	var err error
	if ak == "" {
		if ak, err = m.randomCode(20); err != nil {
			return Credential{}, err
		}
	} else if err := checkID("ak", ak); err != nil {
		return Credential{}, err
	}
	if sk == "" {
		if sk, err = m.randomHex(20); err != nil {
			return Credential{}, err
		}
	} else if len(sk) < 8 || len(sk) > 128 {
		return Credential{}, badField("sk", "must be 8 to 128 characters")
	}
	_, err = m.db.Exec(ctx, `INSERT INTO market_credentials (ak, seller_id, sk, created_at) VALUES ($1, $2, $3, $4)`, ak, sellerID, sk, db.Millis(m.clock.Now()))
	if db.IsUniqueViolation(err) {
		return Credential{}, conflict("access key %q already exists", ak)
	}
	if err != nil {
		return Credential{}, fmt.Errorf("market: create credential: %w", err)
	}
	return Credential{AK: ak, SK: sk, SellerID: sellerID}, nil
}

// credential looks an AK up.
func (m *Market) credential(ctx context.Context, ak string) (sellerID, sk string, ok bool, err error) {
	err = m.db.QueryRow(ctx, `SELECT seller_id, sk FROM market_credentials WHERE ak = $1`, ak).Scan(&sellerID, &sk)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, fmt.Errorf("market: credential: %w", err)
	}
	return sellerID, sk, true, nil
}

// ProductInput creates a product.
type ProductInput struct {
	ID                   string `json:"id,omitempty"`
	SellerID             string `json:"sellerId"`
	Name                 string `json:"name"`
	AddressID            string `json:"addressId"`
	EncryptType          string `json:"encryptType,omitempty"`
	UpgradeAllowed       bool   `json:"upgradeAllowed,omitempty"`
	RenewalChangeAllowed bool   `json:"renewalChangeAllowed,omitempty"`
	TrialDays            int    `json:"trialDays,omitempty"`
	RetentionDays        *int   `json:"retentionDays,omitempty"`
	OrderNotify          bool   `json:"orderNotify,omitempty"`
	Plans                []Plan `json:"plans"`
}

func validPeriod(mode, p string) bool {
	switch mode {
	case ModePeriod, ModeOnDemandPkg:
		return p == "year" || p == "month" || p == "day"
	case ModeOneTime, ModeOnDemand:
		return p == ""
	}
	return false
}

// CreateProduct creates a SaaS product with its plans. The address must be
// verified.
func (m *Market) CreateProduct(ctx context.Context, in ProductInput) (Product, error) {
	if strings.TrimSpace(in.Name) == "" {
		return Product{}, badField("name", "is required")
	}
	switch in.EncryptType {
	case "", "1", "2":
	default:
		return Product{}, badField("encryptType", `must be "", "1" (AES-256) or "2" (AES-128)`)
	}
	if in.TrialDays < 0 || in.TrialDays > 366 {
		return Product{}, badField("trialDays", "must be 0 to 366")
	}
	retention := -1
	if in.RetentionDays != nil {
		if *in.RetentionDays < 0 || *in.RetentionDays > 365 {
			return Product{}, badField("retentionDays", "must be 0 to 365")
		}
		retention = *in.RetentionDays
	}
	if len(in.Plans) == 0 {
		return Product{}, badField("plans", "at least one plan is required")
	}
	a, err := m.GetAddress(ctx, in.AddressID)
	if err != nil {
		if IsNotFound(err) {
			return Product{}, badField("addressId", "address %q does not exist", in.AddressID)
		}
		return Product{}, err
	}
	if a.SellerID != in.SellerID {
		return Product{}, badField("addressId", "address belongs to another seller")
	}
	if !a.Verified {
		return Product{}, badField("addressId", "address %s is not verified; verify it first", a.URL)
	}
	if in.ID == "" {
		if in.ID, err = m.newID("prod-"); err != nil {
			return Product{}, err
		}
	} else if err := checkID("id", in.ID); err != nil {
		return Product{}, err
	}
	hasTrialable := false
	for i := range in.Plans {
		p := &in.Plans[i]
		f := fmt.Sprintf("plans[%d].", i)
		if err := checkID(f+"skuCode", p.SKUCode); err != nil {
			return Product{}, err
		}
		switch p.ChargingMode {
		case ModePeriod, ModeOneTime, ModeOnDemand, ModeOnDemandPkg:
		default:
			return Product{}, badField(f+"chargingMode", "must be PERIOD, ONE_TIME, ON_DEMAND or ON_DEMAND_PKG")
		}
		if !validPeriod(p.ChargingMode, p.PeriodType) {
			return Product{}, badField(f+"periodType", "must be year, month or day for PERIOD and ON_DEMAND_PKG, empty otherwise")
		}
		if p.PriceCents < 0 || p.UnitPriceMicros < 0 {
			return Product{}, badField(f+"priceCents", "must not be negative")
		}
		if p.ChargingMode == ModeOnDemand && p.UnitPriceMicros <= 0 {
			return Product{}, badField(f+"unitPriceMicros", "must be positive for ON_DEMAND")
		}
		if p.Linear != nil && (p.Linear.Name == "" || p.Linear.Min < 1 || p.Linear.Max < p.Linear.Min) {
			return Product{}, badField(f+"linear", "needs a name and 1 <= min <= max")
		}
		if p.ProductCode == "" {
			code, err := m.randomDigits(18)
			if err != nil {
				return Product{}, err
			}
			p.ProductCode = "OFFI" + code
		} else if err := checkID(f+"productId", p.ProductCode); err != nil {
			return Product{}, err
		}
		if p.ChargingMode == ModePeriod {
			hasTrialable = true
		}
	}
	if in.TrialDays > 0 && !hasTrialable {
		return Product{}, badField("trialDays", "a trial needs a PERIOD plan to convert to")
	}
	now := db.Millis(m.clock.Now())
	err = m.db.Tx(ctx, func(tx *db.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO market_products (id, seller_id, name, address_id, encrypt_type, upgrade_allowed,
			renewal_change_allowed, trial_days, retention_days, order_notify, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)`,
			in.ID, in.SellerID, in.Name, in.AddressID, in.EncryptType, db.Bool(in.UpgradeAllowed), db.Bool(in.RenewalChangeAllowed),
			in.TrialDays, retention, db.Bool(in.OrderNotify), now); err != nil {
			if db.IsUniqueViolation(err) {
				return conflict("product %q already exists", in.ID)
			}
			return err
		}
		for i, p := range in.Plans {
			var ln, lu string
			var lmin, lmax int64
			if p.Linear != nil {
				ln, lu, lmin, lmax = p.Linear.Name, p.Linear.Unit, p.Linear.Min, p.Linear.Max
			}
			if _, err := tx.Exec(ctx, `INSERT INTO market_plans (product_code, product_id, sku_code, charging_mode, period_type,
				price_cents, unit_price_micros, package_quota, linear_name, linear_unit, linear_min, linear_max)
				VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)`,
				p.ProductCode, in.ID, p.SKUCode, p.ChargingMode, p.PeriodType, p.PriceCents, p.UnitPriceMicros, p.PackageQuota,
				ln, lu, lmin, lmax); err != nil {
				if db.IsUniqueViolation(err) {
					return badField(fmt.Sprintf("plans[%d]", i), "productId %q or (skuCode %q, periodType %q) is already used", p.ProductCode, p.SKUCode, p.PeriodType)
				}
				return err
			}
		}
		return nil
	})
	if err != nil {
		var me *Error
		if errors.As(err, &me) {
			return Product{}, err
		}
		return Product{}, fmt.Errorf("market: create product: %w", err)
	}
	return m.GetProduct(ctx, in.ID)
}

func (m *Market) randomDigits(n int) (string, error) {
	b := make([]byte, n)
	if _, err := m.rand.Read(b); err != nil {
		return "", fmt.Errorf("market: random: %w", err)
	}
	for i := range b {
		b[i] = '0' + b[i]%10
	}
	return string(b), nil
}

// GetProduct returns a product with its plans.
func (m *Market) GetProduct(ctx context.Context, id string) (Product, error) {
	var p Product
	var up, rc, on int
	var created int64
	err := m.db.QueryRow(ctx, `SELECT id, seller_id, name, product_type, address_id, encrypt_type, upgrade_allowed, renewal_change_allowed,
		trial_days, retention_days, order_notify, created_at FROM market_products WHERE id = $1`, id).
		Scan(&p.ID, &p.SellerID, &p.Name, &p.Type, &p.AddressID, &p.EncryptType, &up, &rc, &p.TrialDays, &p.RetentionDays, &on, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Product{}, notFound("product", id)
	}
	if err != nil {
		return Product{}, fmt.Errorf("market: get product: %w", err)
	}
	p.UpgradeAllowed, p.RenewalChangeAllowed, p.OrderNotify, p.CreatedAt = up == 1, rc == 1, on == 1, db.FromMillis(created)
	rows, err := m.db.Query(ctx, `SELECT product_code, sku_code, charging_mode, period_type, price_cents, unit_price_micros, package_quota,
		linear_name, linear_unit, linear_min, linear_max FROM market_plans WHERE product_id = $1 ORDER BY sku_code, period_type`, id)
	if err != nil {
		return Product{}, fmt.Errorf("market: get product plans: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var pl Plan
		var l Linear
		if err := rows.Scan(&pl.ProductCode, &pl.SKUCode, &pl.ChargingMode, &pl.PeriodType, &pl.PriceCents, &pl.UnitPriceMicros,
			&pl.PackageQuota, &l.Name, &l.Unit, &l.Min, &l.Max); err != nil {
			return Product{}, fmt.Errorf("market: get product plans: %w", err)
		}
		if l.Name != "" {
			pl.Linear = &l
		}
		p.Plans = append(p.Plans, pl)
	}
	return p, rows.Err()
}

// ListProducts returns the products of a seller (all sellers when empty).
func (m *Market) ListProducts(ctx context.Context, sellerID string) ([]Product, error) {
	rows, err := m.db.Query(ctx, `SELECT id FROM market_products WHERE seller_id = $1 OR $1 = '' ORDER BY created_at, id`, sellerID)
	if err != nil {
		return nil, fmt.Errorf("market: list products: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("market: list products: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	out := make([]Product, 0, len(ids))
	for _, id := range ids {
		p, err := m.GetProduct(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// plan returns the plan of a product with a given productId (wire code).
func (p Product) plan(code string) (Plan, bool) {
	for _, pl := range p.Plans {
		if pl.ProductCode == code {
			return pl, true
		}
	}
	return Plan{}, false
}

// productURL returns the production address of a product.
func (m *Market) productURL(ctx context.Context, p Product) (string, error) {
	a, err := m.GetAddress(ctx, p.AddressID)
	if err != nil {
		return "", err
	}
	return a.URL, nil
}
