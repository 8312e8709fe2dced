package market

import (
	"context"
	"fmt"

	"github.com/soukhq/souk/kg"
)

// Resource is one entry of the buyer's "purchased resources" (已购买的服务)
// view: the subscription and, fetched live with a synchronous queryInstance,
// how to use it. Credentials are decrypted when the merchant encrypted them.
type Resource struct {
	Subscription Subscription  `json:"subscription"`
	ProductName  string        `json:"productName"`
	MessageID    int64         `json:"messageId,omitempty"` // the logged queryInstance call
	Instance     *InstanceInfo `json:"instance,omitempty"`
	Decrypted    bool          `json:"decrypted,omitempty"`
	Error        string        `json:"error,omitempty"` // why no usage information can be shown
}

// Resources returns a buyer's purchased resources, calling queryInstance for
// each live one.
func (m *Market) Resources(ctx context.Context, customerID string) ([]Resource, error) {
	if _, err := m.GetCustomer(ctx, customerID); err != nil {
		return nil, err
	}
	subs, err := m.ListSubscriptions(ctx, customerID)
	if err != nil {
		return nil, err
	}
	out := make([]Resource, 0, len(subs))
	for _, s := range subs {
		r, err := m.resource(ctx, s)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Resource returns one purchased resource (queryInstance called live).
func (m *Market) Resource(ctx context.Context, subID string) (Resource, error) {
	s, err := m.GetSubscription(ctx, subID)
	if err != nil {
		return Resource{}, err
	}
	return m.resource(ctx, s)
}

func (m *Market) resource(ctx context.Context, s Subscription) (Resource, error) {
	p, url, err := m.subURL(ctx, s)
	if err != nil {
		return Resource{}, err
	}
	r := Resource{Subscription: s, ProductName: p.Name}
	if s.InstanceID == "" || s.Status == SubReleased || s.Status == SubFailed {
		r.Error = "no live instance (" + s.Status + ")"
		return r, nil
	}
	res, err := m.Call(ctx, Outbound{SellerID: s.SellerID, SubscriptionID: s.ID, Activity: "queryInstance", URL: url,
		Body: subBody(s, "queryInstance")})
	if err != nil {
		return Resource{}, err
	}
	r.MessageID = res.MessageID
	if res.Verdict != VerdictSuccess {
		r.Error = "queryInstance failed: " + res.Error
		return r, nil
	}
	for i := range res.Response.Info {
		if res.Response.Info[i].InstanceID == s.InstanceID {
			in := res.Response.Info[i]
			r.Instance = &in
		}
	}
	if r.Instance == nil {
		r.Error = "queryInstance answered without instance " + s.InstanceID
		return r, nil
	}
	encType := res.Response.EncryptType
	if encType == "" {
		encType = p.EncryptType
	}
	if encType != "" && r.Instance.AppInfo != nil {
		key, err := m.accessKey(ctx, s.SellerID, KeyBasic)
		if err != nil {
			return Resource{}, err
		}
		a := *r.Instance.AppInfo
		if a.UserName, err = decryptField(key, encType, "userName", a.UserName); err != nil {
			r.Error = err.Error()
			r.Instance.AppInfo = nil // as KooGallery: the buyer sees no credentials
			return r, nil
		}
		if a.Password, err = decryptField(key, encType, "password", a.Password); err != nil {
			r.Error = err.Error()
			r.Instance.AppInfo = nil
			return r, nil
		}
		r.Instance.AppInfo = &a
		r.Decrypted = true
	}
	return r, nil
}

func decryptField(key, encType, field, v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if len(v) > 128 {
		return "", fmt.Errorf("appInfo.%s is %d characters; encrypted values must stay within 128", field, len(v))
	}
	p, err := kg.DecryptCredential(key, encType, v)
	if err != nil {
		return "", fmt.Errorf("appInfo.%s cannot be decrypted with encryptType %s: %w", field, encType, err)
	}
	return p, nil
}
