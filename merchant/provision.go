package merchant

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/merchant/handoff"
)

// Answer is what the vendor app may answer to an event (the JSON body of its
// webhook answer, or a Provisioner's result). Every field is optional.
type Answer struct {
	// AppInfo completes provisioning (instance.created) or replaces the
	// instance's appInfo (any instance.* event).
	AppInfo *AppInfo `json:"appInfo,omitempty"`
	// UsageInfo replaces the usageInfo that queryInstance returns.
	UsageInfo []UsageInfo `json:"usageInfo,omitempty"`
	// Allowed answers instance.change_check; false refuses with ResultCode
	// (a refusal code 0001xx; anything else, or none, is 000100) and
	// ResultMsg (at most 255 characters kept). Without Allowed, a
	// ResultCode other than 000000 refuses the change the same way.
	Allowed *bool `json:"allowed,omitempty"`
	// ResultCode and ResultMsg also answer instance.created: a
	// create-instance code (000100–000107) refuses the create (phase failed;
	// newInstance and queryInstance answer the code and message). With
	// instance.created, a code other than 000000 or those, a message over 255
	// characters, or a refusal with AppInfo is an invalid answer (a failed
	// attempt, retried).
	ResultCode string `json:"resultCode,omitempty"`
	ResultMsg  string `json:"resultMsg,omitempty"`
}

// refusal tells whether a is an answer to instance.created that refuses the
// create, and checks it: an error makes the whole answer invalid.
func (a *Answer) refusal() (bool, error) {
	if a.ResultCode == "" || a.ResultCode == kg.CodeSuccess {
		return false, nil
	}
	if err := validateRefusal(a.ResultCode, a.ResultMsg); err != nil {
		return false, err
	}
	if a.AppInfo != nil {
		return false, &kg.FieldError{Field: "appInfo", Reason: "cannot come with a refusal (resultCode " + a.ResultCode + ")"}
	}
	return true, nil
}

// Provisioner is the in-process alternative to the webhook, for Go programs
// that embed the merchant. Provision is called from a durable job, at least
// once per event (dedupe on ev.ID), for real (non-sandbox) events. An error
// means "retry later"; after the attempts are exhausted the event is dead.
type Provisioner interface {
	Provision(ctx context.Context, ev *handoff.Stored) (*Answer, error)
}

// ProvisionerFunc adapts a function to a Provisioner.
type ProvisionerFunc func(ctx context.Context, ev *handoff.Stored) (*Answer, error)

// Provision calls f.
func (f ProvisionerFunc) Provision(ctx context.Context, ev *handoff.Stored) (*Answer, error) {
	return f(ctx, ev)
}

type provisionerTarget struct{ p Provisioner }

func (t provisionerTarget) Name() string { return "provisioner" }

func (t provisionerTarget) Deliver(ctx context.Context, ev *handoff.Stored, _ int) (_ []byte, err error) {
	// The vendor's code: its panic is a failed attempt (retried, then dead),
	// not the end of the process.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("provisioner panicked: %v\n%s", r, debug.Stack())
		}
	}()
	a, err := t.p.Provision(ctx, ev)
	if err != nil {
		return nil, err
	}
	if a == nil {
		return nil, nil
	}
	return json.Marshal(a)
}

// sandboxTarget completes sandbox instances itself with generated demo
// appInfo and allows every change: dial tests stay green forever, and
// nothing reaches the vendor's real application.
type sandboxTarget struct{ m *Merchant }

func (sandboxTarget) Name() string { return "sandbox" }

func (t sandboxTarget) Deliver(_ context.Context, ev *handoff.Stored, _ int) ([]byte, error) {
	switch {
	case ev.Type == EventCreated || ev.Type == EventUpgraded:
		suffix := ev.Subject
		if len(suffix) > 12 {
			suffix = suffix[:12]
		}
		return json.Marshal(Answer{AppInfo: &AppInfo{
			FrontEndURL: "https://sandbox.example.com/instances/" + ev.Subject,
			AdminURL:    "https://sandbox.example.com/admin/" + ev.Subject,
			UserName:    "demo-" + suffix,
			Password:    "Sandbox-" + strings.ReplaceAll(newUUID(t.m.rand), "-", "")[:16],
			Memo:        "souk sandbox instance (testFlag=1); 沙箱实例",
		}})
	case ev.Type == EventChangeCheck:
		ok := true
		return json.Marshal(Answer{Allowed: &ok})
	}
	return nil, nil
}

// targetFor picks where each event goes: sandbox events to the sandbox
// webhook or the built-in sandbox; real events to the Provisioner, else the
// webhook, else nobody.
func (m *Merchant) targetFor(client *http.Client) func(ev *handoff.Stored) handoff.Target {
	var real, sandbox handoff.Target
	switch {
	case m.prov != nil:
		real = provisionerTarget{m.prov}
	case m.cfg.WebhookURL != "":
		real = &handoff.Webhook{URL: m.cfg.WebhookURL, Secrets: SplitKeys(m.cfg.WebhookSecret), Client: client, Clock: m.clock}
	}
	if m.cfg.SandboxWebhookURL != "" {
		sandbox = &handoff.Webhook{URL: m.cfg.SandboxWebhookURL, Secrets: SplitKeys(m.cfg.WebhookSecret), Client: client, Clock: m.clock}
	} else {
		sandbox = sandboxTarget{m}
	}
	return func(ev *handoff.Stored) handoff.Target {
		if ev.TestFlag {
			return sandbox
		}
		return real
	}
}

// applyAnswer applies the vendor app's answer to an event, in the
// transaction that marks the event delivered.
func (m *Merchant) applyAnswer(ctx context.Context, tx *db.Tx, now time.Time, ev *handoff.Stored, answer []byte) error {
	answer = bytes.TrimSpace(answer)
	if !strings.HasPrefix(ev.Type, "instance.") {
		return nil
	}
	if len(answer) == 0 || answer[0] != '{' {
		return nil // a plain acknowledgement
	}
	var a Answer
	if err := json.Unmarshal(answer, &a); err != nil {
		return fmt.Errorf("answer to %s: %w", ev.Type, err)
	}
	if ev.Type == EventChangeCheck {
		var d struct {
			CheckID string `json:"checkId"`
		}
		if err := json.Unmarshal(ev.Data, &d); err != nil || d.CheckID == "" {
			return fmt.Errorf("change check event %s has no checkId", ev.ID)
		}
		return recordVerdictTx(ctx, tx, now, d.CheckID, &a)
	}
	if ev.Type == EventCreated {
		refused, err := a.refusal()
		if err != nil {
			return fmt.Errorf("answer to %s: %w", ev.Type, err)
		}
		if refused {
			if err := failTx(ctx, tx, now, ev.Subject, a.ResultCode, a.ResultMsg); err != nil {
				return fmt.Errorf("answer to %s: %w", ev.Type, err)
			}
		}
	}
	if a.AppInfo != nil {
		if err := m.setAppInfoTx(ctx, tx, now, ev.Subject, a.AppInfo); err != nil {
			return err
		}
	}
	if a.UsageInfo != nil {
		if err := setUsageInfoTx(ctx, tx, now, ev.Subject, a.UsageInfo); err != nil {
			return err
		}
	}
	return nil
}

// setAppInfoTx stores an instance's appInfo and marks it ready (a failed
// instance too: its failure is cleared).
func (m *Merchant) setAppInfoTx(ctx context.Context, tx *db.Tx, now time.Time, instanceID string, a *AppInfo) error {
	if err := a.Validate("appInfo."); err != nil {
		return err
	}
	inst, err := activeInstance(ctx, tx, instanceID) // an alias completes the instance it duplicates
	if err != nil {
		return err
	}
	if enc := m.cfg.encryptTypeFor(inst.ProductID); enc != "" {
		// Refuse now what KooGallery would refuse later (128 characters
		// including the IV once encrypted).
		for _, f := range []struct{ name, v string }{{"userName", a.UserName}, {"password", a.Password}} {
			if f.v == "" {
				continue
			}
			if _, err := kg.EncryptCredential(m.cfg.AccessKeys[0], enc, f.v, m.rand); err != nil {
				return &kg.FieldError{Field: "appInfo." + f.name, Reason: "too long once encrypted (KooGallery allows 128 characters)"}
			}
		}
	}
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE merchant_instances SET app_info = $2, phase = $3, failure_code = '', failure_msg = '',
		ready_at = CASE WHEN ready_at = 0 THEN $4 ELSE ready_at END, updated_at = $4 WHERE instance_id = $1`,
		inst.ID, string(b), PhaseReady, now.UnixMilli())
	if err != nil {
		return fmt.Errorf("store appInfo: %w", err)
	}
	return nil
}

// ErrAlreadyReady refuses a create refusal for an instance that is already
// provisioned (newInstance or queryInstance may have answered 000000).
var ErrAlreadyReady = errors.New("instance is already provisioned (phase ready)")

// failTx records the vendor app's refusal of a create: the instance (the one
// an alias duplicates) goes to phase failed with code and msg, which
// validateRefusal accepted. A ready instance is refused (ErrAlreadyReady); a
// failed one takes the new code and message.
func failTx(ctx context.Context, tx *db.Tx, now time.Time, instanceID, code, msg string) error {
	inst, err := activeInstance(ctx, tx, instanceID) // as setAppInfoTx: an alias refuses the instance it duplicates
	if err != nil {
		return err
	}
	if inst.Phase == PhaseReady {
		return fmt.Errorf("refuse instance %s: %w", inst.ID, ErrAlreadyReady)
	}
	// The phase is checked again by the UPDATE itself: an appInfo committed
	// meanwhile (PostgreSQL re-reads the row it waited for) wins.
	res, err := tx.Exec(ctx, `UPDATE merchant_instances SET phase = $2, failure_code = $3, failure_msg = $4, updated_at = $5
		WHERE instance_id = $1 AND phase <> $6`, inst.ID, PhaseFailed, code, msg, now.UnixMilli(), PhaseReady)
	if err != nil {
		return fmt.Errorf("store refusal: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store refusal: %w", err)
	} else if n == 0 {
		return fmt.Errorf("refuse instance %s: %w", inst.ID, ErrAlreadyReady)
	}
	return nil
}

// MaxUsageInfoEntries bounds the usageInfo list that the vendor app (an
// answer's usageInfo) or the management API may set: one entry per billing
// item of a package (saas-v2.md §4.2), and no product has a hundred. The
// documents set no limit; the bound keeps a runaway answer from growing every
// queryInstance answer (up to 100 instances each) without end.
const MaxUsageInfoEntries = 100

// setUsageInfoTx validates and stores a usageInfo given by the vendor app or
// the management API.
func setUsageInfoTx(ctx context.Context, tx *db.Tx, now time.Time, instanceID string, u []UsageInfo) error {
	if err := checkUsageInfos(u); err != nil {
		return err
	}
	return storeUsageInfoTx(ctx, tx, now, instanceID, u)
}

func storeUsageInfoTx(ctx context.Context, tx *db.Tx, now time.Time, instanceID string, u []UsageInfo) error {
	b, err := json.Marshal(u)
	if err != nil {
		return err
	}
	res, err := tx.Exec(ctx, `UPDATE merchant_instances SET usage_info = $2, updated_at = $3 WHERE instance_id = $1`, instanceID, string(b), now.UnixMilli())
	if err != nil {
		return fmt.Errorf("store usageInfo: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errNoInstance(instanceID)
	}
	return nil
}

// checkUsageInfos checks a usageInfo list (at most MaxUsageInfoEntries
// entries, each valid) and normalises its values.
func checkUsageInfos(u []UsageInfo) error {
	if len(u) > MaxUsageInfoEntries {
		return &kg.FieldError{Field: "usageInfo", Reason: fmt.Sprintf("has %d entries, at most %d allowed", len(u), MaxUsageInfoEntries)}
	}
	for i := range u {
		if err := validateUsageInfo(&u[i], fmt.Sprintf("usageInfo[%d].", i)); err != nil {
			return err
		}
	}
	return nil
}

// validateUsageInfo checks one entry with kg's rules: usageValue a
// Double(12,4) ≥ 0 (kg.ParseUsageValue, written back normalised),
// statisticalTime present and yyyyMMddHHmmssSSS.
func validateUsageInfo(u *UsageInfo, prefix string) error {
	v, err := kg.ParseUsageValue(string(u.UsageValue), false)
	if err != nil {
		return &kg.FieldError{Field: prefix + "usageValue", Reason: err.Error()}
	}
	u.UsageValue = json.Number(kg.FormatUsageValue(v))
	// statisticalTime is mandatory (saas-v2.md §4.2): the app or the API
	// caller says when the value was measured; souk never sends "".
	u.StatisticalTime = strings.TrimSpace(u.StatisticalTime)
	if u.StatisticalTime == "" {
		return &kg.FieldError{Field: prefix + "statisticalTime", Reason: "is required: when the value was measured, yyyyMMddHHmmssSSS (17 digits, UTC)"}
	}
	if _, err := kg.ParseTime17(u.StatisticalTime); err != nil {
		return &kg.FieldError{Field: prefix + "statisticalTime", Reason: "must be yyyyMMddHHmmssSSS (17 digits, UTC): " + err.Error()}
	}
	if len(u.RelatedInstanceID) > 64 {
		return &kg.FieldError{Field: prefix + "relatedInstanceId", Reason: "is longer than 64 characters"}
	}
	if len(u.DashboardURL) > 512 {
		return &kg.FieldError{Field: prefix + "dashboardUrl", Reason: "is longer than 512 characters"}
	}
	return nil
}
