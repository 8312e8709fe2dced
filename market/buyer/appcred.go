package buyer

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/kg"
)

// AppCredential is a joint-operation product's app credential (应用凭证),
// created by the seller in Seller Console.
type AppCredential struct {
	ProductID string    `json:"productId"`
	SellerID  string    `json:"sellerId"`
	AppID     string    `json:"appId"`     // "" on input = generated
	PublicKey string    `json:"publicKey"` // RSA ≥ 3072 bits, Base64 DER ("PEM without its header lines") or PEM
	LoginURLs []string  `json:"loginUrls"` // the app's login addresses; the first is where the unified login sends members
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// MinRSABits is KooGallery's minimum key size for the client-secret key.
const MinRSABits = 3072

func checkLoginURL(field, s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return invalid(field, "must be an absolute http(s) URL without fragment")
	}
	return nil
}

// SetAppCredential creates or replaces the app credential of a product.
func (c *Center) SetAppCredential(ctx context.Context, in AppCredential) (AppCredential, error) {
	if in.ProductID == "" {
		return AppCredential{}, invalid("productId", "is required")
	}
	if in.SellerID == "" {
		return AppCredential{}, invalid("sellerId", "is required")
	}
	pub, err := kg.ParsePublicKey(in.PublicKey)
	if err != nil {
		return AppCredential{}, invalid("publicKey", "is not an RSA public key: %v", err)
	}
	if pub.N.BitLen() < MinRSABits {
		return AppCredential{}, invalid("publicKey", "has %d bits; at least %d are required", pub.N.BitLen(), MinRSABits)
	}
	if len(in.LoginURLs) == 0 {
		return AppCredential{}, invalid("loginUrls", "name at least one login address")
	}
	for i, u := range in.LoginURLs {
		if err := checkLoginURL(fmt.Sprintf("loginUrls[%d]", i), u); err != nil {
			return AppCredential{}, err
		}
	}
	if in.AppID == "" {
		d, err := c.randomDigits(12)
		if err != nil {
			return AppCredential{}, err
		}
		in.AppID = "app" + d
	} else if !codeRE.MatchString(in.AppID) {
		return AppCredential{}, invalid("appId", "must be 1-64 letters, digits, '_', '.' or '-'")
	}
	in.PublicKey, err = kg.PublicKeyBase64(pub)
	if err != nil {
		return AppCredential{}, err
	}
	urls, _ := json.Marshal(in.LoginURLs)
	now := db.Millis(c.clock.Now())
	err = c.db.Tx(ctx, func(tx *db.Tx) error {
		var owner string
		err := tx.QueryRow(ctx, `SELECT seller_id FROM buyer_app_credentials WHERE product_id = $1`, in.ProductID).Scan(&owner)
		if err == nil && owner != in.SellerID {
			return conflict("product %s belongs to another seller", in.ProductID)
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO buyer_app_credentials (product_id, seller_id, app_id, public_key, login_urls, created_at, updated_at)
			VALUES ($1,$2,$3,$4,$5,$6,$6) ON CONFLICT (product_id) DO UPDATE SET app_id = excluded.app_id, public_key = excluded.public_key,
			login_urls = excluded.login_urls, updated_at = excluded.updated_at`, in.ProductID, in.SellerID, in.AppID, in.PublicKey, string(urls), now)
		if db.IsUniqueViolation(err) {
			return conflict("appId %s is taken", in.AppID)
		}
		return err
	})
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return AppCredential{}, err
		}
		return AppCredential{}, fmt.Errorf("buyer: set app credential: %w", err)
	}
	return LookupAppCredential(ctx, c.db, in.ProductID)
}

// LookupAppCredential reads a product's app credential (a not-found *Error if none).
func LookupAppCredential(ctx context.Context, d *db.DB, productID string) (AppCredential, error) {
	var a AppCredential
	var urls string
	var created, updated int64
	err := d.QueryRow(ctx, `SELECT product_id, seller_id, app_id, public_key, login_urls, created_at, updated_at FROM buyer_app_credentials
		WHERE product_id = $1`, productID).Scan(&a.ProductID, &a.SellerID, &a.AppID, &a.PublicKey, &urls, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return AppCredential{}, notFound("product %s has no app credential", productID)
	}
	if err != nil {
		return AppCredential{}, fmt.Errorf("buyer: app credential: %w", err)
	}
	if err := json.Unmarshal([]byte(urls), &a.LoginURLs); err != nil {
		return AppCredential{}, fmt.Errorf("buyer: app credential login urls: %w", err)
	}
	a.CreatedAt, a.UpdatedAt = db.FromMillis(created), db.FromMillis(updated)
	return a, nil
}

// AppCredential returns a product's app credential.
func (c *Center) AppCredential(ctx context.Context, productID string) (AppCredential, error) {
	return LookupAppCredential(ctx, c.db, productID)
}

// SellerHandler serves the seller's side of app credentials. Mount it under
// a seller-authenticated prefix with http.StripPrefix; the seller id comes
// from the path (the mounting server checks it is the caller's):
//
//	PUT /sellers/{sid}/products/{pid}/app-credential   {appId?, publicKey, loginUrls}
//	GET /sellers/{sid}/products/{pid}/app-credential
//	POST /sellers/{sid}/products/{pid}/app-credential/debug   {clientSecret?, testAccount?}  应用接入调试
//	GET /sellers/{sid}/kit-messages[?state=&interface=&limit=]   the kit calls sent to the seller
//	POST /sellers/{sid}/kit-messages/{id}/retry
func (c *Center) SellerHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /sellers/{sid}/products/{pid}/app-credential/debug", func(w http.ResponseWriter, r *http.Request) {
		var in DebugInput
		if err := decode(w, r, &in); err != nil {
			c.writeError(w, r, err)
			return
		}
		secret, msgs, err := c.DebugAppCredential(r.Context(), r.PathValue("sid"), r.PathValue("pid"), in)
		if err != nil {
			c.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"clientSecret": secret, "messages": msgs})
	})
	mux.HandleFunc("POST /sellers/{sid}/kit-messages/{id}/retry", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil {
			c.writeError(w, r, notFound("message %q not found", r.PathValue("id")))
			return
		}
		m, err := c.RetrySeller(r.Context(), r.PathValue("sid"), id)
		if err != nil {
			c.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, m)
	})
	mux.HandleFunc("GET /sellers/{sid}/kit-messages", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f := MessageFilter{State: q.Get("state"), Interface: q.Get("interface")}
		if l := q.Get("limit"); l != "" {
			n, err := strconv.Atoi(l)
			if err != nil {
				c.writeError(w, r, invalid("limit", "is not a number"))
				return
			}
			f.Limit = n
		}
		ms, err := c.SellerMessages(r.Context(), r.PathValue("sid"), f)
		if err != nil {
			c.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"messages": ms})
	})
	mux.HandleFunc("PUT /sellers/{sid}/products/{pid}/app-credential", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			AppID     string   `json:"appId"`
			PublicKey string   `json:"publicKey"`
			LoginURLs []string `json:"loginUrls"`
		}
		if err := decode(w, r, &in); err != nil {
			c.writeError(w, r, err)
			return
		}
		a, err := c.SetAppCredential(r.Context(), AppCredential{ProductID: r.PathValue("pid"), SellerID: r.PathValue("sid"), AppID: strings.TrimSpace(in.AppID),
			PublicKey: in.PublicKey, LoginURLs: in.LoginURLs})
		if err != nil {
			c.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, a)
	})
	mux.HandleFunc("GET /sellers/{sid}/products/{pid}/app-credential", func(w http.ResponseWriter, r *http.Request) {
		a, err := c.AppCredential(r.Context(), r.PathValue("pid"))
		if err == nil && a.SellerID != r.PathValue("sid") {
			err = notFound("product %s has no app credential", r.PathValue("pid"))
		}
		if err != nil {
			c.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, a)
	})
	return mux
}
