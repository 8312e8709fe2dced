package buyer

import (
	"context"
	"fmt"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/market/idp"
)

// Debug tenant of the seller's debugging calls (应用接入调试).
const (
	DebugTenantID   = "souk-debug-tenant"
	DebugTenantCode = "souk-debug"
	DebugClientID   = "souk-debug-client"
	DebugUserName   = "souk-test-user"
)

// DebugInput asks for the seller's debugging calls.
type DebugInput struct {
	// ClientSecret is sent RSA-encrypted in applicationSync; the seller
	// checks its merchant decrypts it. "" = a random one (returned).
	ClientSecret string `json:"clientSecret"`
	// TestAccount also sends authSync with one test account (试用账号申请).
	TestAccount bool `json:"testAccount"`
}

// DebugAppCredential makes the calls KooGallery makes when a seller creates
// an app credential (joint-kit.md §1.1: tenantSync, applicationSync,
// allOrgSync) — and, with TestAccount, the authSync of a test account —
// with empty instanceId and orderId and testFlag 1, to the product's
// production address, signed with the seller's kit key. They are logged
// like every kit call (the seller's message list) and never retried
// automatically. It returns the client secret sent and the messages.
func (c *Center) DebugAppCredential(ctx context.Context, sellerID, productID string, in DebugInput) (string, []Message, error) {
	cred, err := LookupAppCredential(ctx, c.db, productID)
	if err != nil {
		return "", nil, err
	}
	if cred.SellerID != sellerID {
		return "", nil, notFound("product %s has no app credential", productID)
	}
	if _, ok := c.catalog.(ProductCatalog); !ok {
		return "", nil, conflict("the market cannot resolve products for debugging calls")
	}
	secret := in.ClientSecret
	if secret == "" {
		if secret, err = idp.NewSecret(); err != nil {
			return "", nil, err
		}
	}
	if err := checkText("clientSecret", secret, 256, true); err != nil {
		return "", nil, err
	}
	pub, err := kg.ParsePublicKey(cred.PublicKey)
	if err != nil {
		return "", nil, invalid("publicKey", "is unusable: %v", err)
	}
	enc, err := kg.EncryptClientSecret(pub, secret, c.rand)
	if err != nil {
		return "", nil, fmt.Errorf("buyer: encrypt client secret: %w", err)
	}
	msgs, err := c.change(ctx, "", func(ctx context.Context, tx *db.Tx, now time.Time, o *outbox) error {
		b := bindingRef{SellerID: sellerID, ProductID: productID, AppID: cred.AppID, TestFlag: true}
		e := Enterprise{ID: DebugTenantID, Code: DebugTenantCode, Name: "souk debugging tenant", DomainName: c.domainName}
		if err := o.tenantSync(ctx, b, e, FlagAdd); err != nil {
			return err
		}
		if err := o.applicationSync(ctx, b, DebugClientID, enc, FlagAdd); err != nil {
			return err
		}
		if err := o.allOrgSync(ctx, b, []OrgInfo{{OrgCode: "debug-root", OrgName: "Debugging"}, {OrgCode: "debug-dev", OrgName: "Development", ParentCode: "debug-root"}}); err != nil {
			return err
		}
		if in.TestAccount {
			return o.authSync(ctx, b, []KitUser{{UserName: DebugUserName, Name: "Test account", OrgCode: "debug-dev", Role: "admin", Enable: "true"}}, FlagAdd)
		}
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	return secret, msgs, nil
}
