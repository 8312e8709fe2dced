package check

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/soukhq/souk/kg"
)

// Check families.
const (
	FamilyInterfaces  = "interfaces"
	FamilyIdempotency = "idempotency"
	FamilySecurity    = "security"
	FamilyInput       = "input"
	FamilyAsync       = "async"
	FamilyLifecycle   = "lifecycle"
	FamilyAnswers     = "answers"
)

// Rule references (files in docs/koogallery).
const (
	refMatrix   = "saas-v2.md §3"
	refRefresh  = "saas-v2.md §4.3"
	refStatus   = "saas-v2.md §4.4"
	refRelease  = "saas-v2.md §4.5"
	refUpgrade  = "saas-v2.md §4.6"
	refChange   = "saas-v2.md §4.7"
	refNotify   = "saas-v2.md §4.8"
	refSig      = "saas-v2.md §2.2; README.md policy 1"
	refIdem     = "saas-v2.md §8.3"
	refRetry    = "saas-v2.md §8.1, §8.3"
	refTestFlag = "saas-v2.md §4.1 (testFlag), §8.4; README.md policy 6"
	refDebug    = "saas-v2.md §8.2, §8.5; README.md policy 6"
	refBadParam = "saas-v2.md §7 (000002); field tables §4.1-§4.5"
	refNoInst   = "saas-v2.md §7 (000003)"
	refLenient  = "README.md policy 7"
	refHTTP     = "saas-v2.md §1, §8.1 (non-200 is a failed call); README.md policy 7"
	refBodySign = "saas-v2.md §2.3; README.md policy 3"
	refTimeout  = "README.md policy 8 (every call has a 5 s timeout)"
)

var periodic = []string{ModePeriod, ModeOnDemand}

func suite() []checkDef {
	return []checkDef{
		// --- every mandatory interface of the charging mode -----------------------------
		{Info{ID: "iface.newInstance", Family: FamilyInterfaces, Title: "newInstance creates an instance (real-looking order)", Mandatory: true, Ref: refNew + "; " + refMatrix}, ifaceNew(false)},
		{Info{ID: "iface.newInstance.testFlag", Family: FamilyInterfaces, Title: "newInstance with testFlag \"1\" (debug / dial test)", Mandatory: true, Ref: refNew + "; " + refTestFlag}, ifaceNew(true)},
		{Info{ID: "iface.queryInstance", Family: FamilyInterfaces, Title: "queryInstance lists the created instance", Mandatory: true, Ref: refQuery + "; " + refMatrix}, ifaceQuery(false)},
		{Info{ID: "iface.queryInstance.testFlag", Family: FamilyInterfaces, Title: "queryInstance with testFlag \"1\"", Mandatory: true, Ref: refQuery + "; " + refTestFlag}, ifaceQuery(true)},
		{Info{ID: "iface.queryInstance.batch", Family: FamilyInterfaces, Title: "queryInstance with 2, then 100, comma-separated instance ids", Mandatory: true, Ref: refQuery}, ifaceQueryBatch},
		{Info{ID: "iface.refreshInstance.renewal", Family: FamilyInterfaces, Title: "refreshInstance scene RENEWAL", Mandatory: true, Ref: refRefresh + "; " + refMatrix, Modes: periodic}, ifaceRefresh("RENEWAL", false, false)},
		{Info{ID: "iface.refreshInstance.testFlag", Family: FamilyInterfaces, Title: "refreshInstance with testFlag \"1\"", Mandatory: true, Ref: refRefresh + "; " + refTestFlag, Modes: periodic}, ifaceRefresh("RENEWAL", true, false)},
		{Info{ID: "iface.refreshInstance.trialToFormal", Family: FamilyInterfaces, Title: "refreshInstance scene TRIAL_TO_FORMAL with a new productId", Mandatory: true, Ref: refRefresh, Modes: periodic}, ifaceRefresh("TRIAL_TO_FORMAL", false, false)},
		{Info{ID: "iface.refreshInstance.unsubscribeRenewal", Family: FamilyInterfaces, Title: "refreshInstance scene UNSUBSCRIBE_RENEWAL_PERIOD", Mandatory: true, Ref: refRefresh, Modes: periodic}, ifaceRefresh("UNSUBSCRIBE_RENEWAL_PERIOD", false, false)},
		{Info{ID: "iface.refreshInstance.frozen", Family: FamilyInterfaces, Title: "refreshInstance RENEWAL of a frozen instance (renewed during the freeze period), then UNFREEZE", Mandatory: true, Ref: refRefresh + "; " + refMatrix + " (freeze period: a renewal unfreezes)", Modes: periodic}, ifaceRefreshFrozen},
		{Info{ID: "iface.refreshInstance.renewalChange", Family: FamilyInterfaces, Title: "refreshInstance scene RENEWAL_CHANGE (newest CN page only)", Mandatory: false, Ref: refRefresh, Modes: periodic}, ifaceRefresh("RENEWAL_CHANGE", false, false)},
		{Info{ID: "iface.refreshInstance.expireTime17", Family: FamilyInterfaces, Title: "refreshInstance with a 17-digit expireTime (as in the doc's example)", Mandatory: false, Ref: refRefresh, Modes: periodic}, ifaceRefresh("RENEWAL", false, true)},
		{Info{ID: "iface.updateInstanceStatus", Family: FamilyInterfaces, Title: "updateInstanceStatus FREEZE then UNFREEZE", Mandatory: true, Ref: refStatus + "; " + refMatrix, Modes: periodic}, ifaceStatus(false)},
		{Info{ID: "iface.updateInstanceStatus.testFlag", Family: FamilyInterfaces, Title: "updateInstanceStatus with testFlag \"1\"", Mandatory: true, Ref: refStatus + "; " + refTestFlag, Modes: periodic}, ifaceStatus(true)},
		{Info{ID: "iface.releaseInstance", Family: FamilyInterfaces, Title: "releaseInstance releases the instance", Mandatory: true, Ref: refRelease + "; " + refMatrix}, ifaceRelease(false, false)},
		{Info{ID: "iface.releaseInstance.unsubscribe", Family: FamilyInterfaces, Title: "releaseInstance after an unsubscription (with orderId/orderLineId)", Mandatory: true, Ref: refRelease}, ifaceRelease(false, true)},
		{Info{ID: "iface.releaseInstance.frozen", Family: FamilyInterfaces, Title: "releaseInstance of a frozen instance (the release after the freeze period)", Mandatory: true, Ref: refRelease + "; " + refMatrix + " (freeze period)", Modes: periodic}, ifaceReleaseFrozen},
		{Info{ID: "iface.releaseInstance.testFlag", Family: FamilyInterfaces, Title: "releaseInstance with testFlag \"1\"", Mandatory: true, Ref: refRelease + "; " + refTestFlag}, ifaceRelease(true, false)},
		{Info{ID: "iface.upgradeInstance", Family: FamilyInterfaces, Title: "upgradeInstance applies a paid upgrade order", Mandatory: true, Ref: refUpgrade, Feature: FeatureUpgrade}, ifaceUpgrade(false)},
		{Info{ID: "iface.upgradeInstance.testFlag", Family: FamilyInterfaces, Title: "upgradeInstance with testFlag \"1\"", Mandatory: true, Ref: refUpgrade + "; " + refTestFlag, Feature: FeatureUpgrade}, ifaceUpgrade(true)},
		{Info{ID: "iface.changeInstanceCheck", Family: FamilyInterfaces, Title: "changeInstanceCheck answers with a result code", Mandatory: true, Ref: refChange, Feature: FeatureChangeCheck}, ifaceChangeCheck(false)},
		{Info{ID: "iface.changeInstanceCheck.productInfoString", Family: FamilyInterfaces, Title: "changeInstanceCheck with productInfo sent as a JSON string", Mandatory: false, Ref: refChange, Feature: FeatureChangeCheck}, ifaceChangeCheck(true)},
		{Info{ID: "iface.orderNotify", Family: FamilyInterfaces, Title: "orderNotify (signed with the general key) is acknowledged", Mandatory: true, Ref: refNotify, Feature: FeatureOrderNotify}, ifaceOrderNotify},

		// --- idempotency -----------------------------------------------------------------
		{Info{ID: "idem.newInstance.sequential", Family: FamilyIdempotency, Title: "newInstance retried with new businessIds returns the same instanceId", Mandatory: true, Ref: refNew + "; " + refIdem}, idemNewSequential(false)},
		{Info{ID: "idem.newInstance.concurrent", Family: FamilyIdempotency, Title: "concurrent newInstance retries return one instanceId", Mandatory: true, Ref: refNew + "; " + refIdem}, idemNewConcurrent},
		{Info{ID: "idem.newInstance.testFlag", Family: FamilyIdempotency, Title: "repeated debug newInstance (testFlag \"1\") returns the same instanceId", Mandatory: true, Ref: refIdem + "; " + refDebug}, idemNewSequential(true)},
		{Info{ID: "idem.newInstance.orderLines", Family: FamilyIdempotency, Title: "two lines of one order get two instances (the key is orderId + orderLineId)", Mandatory: true, Ref: refNew + "; " + refIdem}, idemNewOrderLines},
		{Info{ID: "idem.refreshInstance", Family: FamilyIdempotency, Title: "a repeated refreshInstance is harmless and succeeds; the next renewal order is applied", Mandatory: true, Ref: refRetry, Modes: periodic}, idemRefresh},
		{Info{ID: "idem.freeze", Family: FamilyIdempotency, Title: "a repeated FREEZE is harmless and succeeds", Mandatory: true, Ref: refRetry + "; " + refStatus, Modes: periodic}, idemStatus("FREEZE")},
		{Info{ID: "idem.unfreeze", Family: FamilyIdempotency, Title: "a repeated UNFREEZE is harmless and succeeds", Mandatory: true, Ref: refRetry + "; " + refStatus, Modes: periodic}, idemStatus("UNFREEZE")},
		{Info{ID: "idem.releaseInstance", Family: FamilyIdempotency, Title: "a repeated releaseInstance returns success", Mandatory: true, Ref: refRelease + "; " + refIdem}, idemRelease},
		{Info{ID: "idem.upgradeInstance", Family: FamilyIdempotency, Title: "a repeated upgradeInstance (same orderId) is harmless and succeeds; a second upgrade order is applied", Mandatory: true, Ref: refUpgrade + "; " + refIdem, Feature: FeatureUpgrade}, idemUpgrade},

		// --- security: every forged request gets 000001 and changes nothing ---------------
		{Info{ID: "sec.signature.missing", Family: FamilySecurity, Title: "a request without signature/timestamp/nonce is rejected", Mandatory: true, Ref: refSig + "; saas-v2.md §7 (000001)"}, secAttack("no signature, timestamp or nonce", func(s *session, inst *instance) []call {
			return []call{{body: releaseBody(inst.ID, false), noAuth: true, note: "unsigned"}}
		})},
		{Info{ID: "sec.signature.absent", Family: FamilySecurity, Title: "a request with timestamp and nonce but no signature is rejected", Mandatory: true, Ref: refSig + "; saas-v2.md §7 (000001)"}, secAttack("timestamp and nonce but no signature parameter", func(s *session, inst *instance) []call {
			return []call{{body: releaseBody(inst.ID, false), omitSig: true, note: "signature parameter left out; timestamp and nonce sent"}}
		})},
		{Info{ID: "sec.timestamp.missing", Family: FamilySecurity, Title: "a signed request without timestamp is rejected", Mandatory: true, Ref: refSig + "; saas-v2.md §7 (000001)"}, secAttack("no timestamp parameter", func(s *session, inst *instance) []call {
			return []call{{body: releaseBody(inst.ID, false), omitTS: true, note: "timestamp parameter left out; signed over an empty timestamp"}}
		})},
		{Info{ID: "sec.nonce.missing", Family: FamilySecurity, Title: "a signed request without nonce is rejected", Mandatory: true, Ref: refSig + "; saas-v2.md §7 (000001)"}, secAttack("no nonce parameter", func(s *session, inst *instance) []call {
			return []call{{body: releaseBody(inst.ID, false), omitNonce: true, note: "nonce parameter left out; signed over an empty nonce"}}
		})},
		{Info{ID: "sec.signature.wrong", Family: FamilySecurity, Title: "a wrong signature is rejected", Mandatory: true, Ref: refSig}, secAttack("a random signature", func(s *session, inst *instance) []call {
			return []call{{body: releaseBody(inst.ID, false), signature: strings.ToUpper(randString(64, "0123456789abcdef")), note: "random signature"}}
		})},
		{Info{ID: "sec.signature.otherKey", Family: FamilySecurity, Title: "a signature made with another key is rejected", Mandatory: true, Ref: refSig}, secAttack("a signature made with another key", func(s *session, inst *instance) []call {
			return []call{{body: releaseBody(inst.ID, false), key: "souk-check-other-" + randString(16, alnum), note: "signed with another key"}}
		})},
		{Info{ID: "sec.signature.keyKind", Family: FamilySecurity, Title: "a basic interface signed with the general (orderNotify) key, and orderNotify signed with the access key, are rejected", Mandatory: true, Ref: refSig + "; saas-v2.md §1 (one key per interface type); " + refNotify}, secKeyKind},
		{Info{ID: "sec.timestamp.stale", Family: FamilySecurity, Title: "a timestamp 90 s old (13-digit ms and 10-digit s) is rejected", Mandatory: true, Ref: refSig + " (60 s window)"}, secAttack("a timestamp 90 s in the past", func(s *session, inst *instance) []call {
			return skewed(s, inst, -90*time.Second)
		})},
		{Info{ID: "sec.timestamp.future", Family: FamilySecurity, Title: "a timestamp 90 s ahead (13-digit ms and 10-digit s) is rejected", Mandatory: true, Ref: refSig + " (60 s window)"}, secAttack("a timestamp 90 s in the future", func(s *session, inst *instance) []call {
			return skewed(s, inst, 90*time.Second)
		})},
		{Info{ID: "sec.nonce.replay", Family: FamilySecurity, Title: "a replayed request (testFlag \"0\" and \"1\") and a reused nonce are rejected", Mandatory: true, Ref: refSig + " (nonce cache)"}, secReplay},
		{Info{ID: "sec.nonce.replayDelayed", Family: FamilySecurity, Title: "a request replayed seconds later, still inside the 60 s window, is rejected", Mandatory: true, Ref: refSig + " (nonce cache kept as long as the window)"}, secReplayDelayed},
		{Info{ID: "sec.body.tampered", Family: FamilySecurity, Title: "a body that differs from the signed one is rejected", Mandatory: true, Ref: refSig + " (raw body)"}, secTampered},
		{Info{ID: "sec.auth.newInstance", Family: FamilySecurity, Title: "forged newInstance requests (testFlag 0 and 1) are rejected and create nothing", Mandatory: true, Ref: refSig + "; " + refNew}, secAuthActivity("newInstance")},
		{Info{ID: "sec.auth.queryInstance", Family: FamilySecurity, Title: "forged queryInstance requests (testFlag 0 and 1) are rejected", Mandatory: true, Ref: refSig + "; " + refQuery}, secAuthActivity("queryInstance")},
		{Info{ID: "sec.auth.refreshInstance", Family: FamilySecurity, Title: "forged refreshInstance requests (testFlag 0 and 1) are rejected and change nothing", Mandatory: true, Ref: refSig + "; " + refRefresh, Modes: periodic}, secAuthActivity("refreshInstance")},
		{Info{ID: "sec.auth.updateInstanceStatus", Family: FamilySecurity, Title: "forged updateInstanceStatus requests (testFlag 0 and 1) are rejected and change nothing", Mandatory: true, Ref: refSig + "; " + refStatus, Modes: periodic}, secAuthActivity("updateInstanceStatus")},
		{Info{ID: "sec.auth.releaseInstance", Family: FamilySecurity, Title: "forged releaseInstance requests (testFlag 0 and 1) are rejected and change nothing", Mandatory: true, Ref: refSig + "; " + refRelease}, secAuthActivity("releaseInstance")},
		{Info{ID: "sec.auth.upgradeInstance", Family: FamilySecurity, Title: "forged upgradeInstance requests (testFlag 0 and 1) are rejected and change nothing", Mandatory: true, Ref: refSig + "; " + refUpgrade, Feature: FeatureUpgrade}, secAuthActivity("upgradeInstance")},
		{Info{ID: "sec.auth.changeInstanceCheck", Family: FamilySecurity, Title: "forged changeInstanceCheck requests (testFlag 0 and 1) are rejected", Mandatory: true, Ref: refSig + "; " + refChange, Feature: FeatureChangeCheck}, secAuthActivity("changeInstanceCheck")},
		{Info{ID: "sec.auth.orderNotify", Family: FamilySecurity, Title: "forged orderNotify requests (testFlag 0 and 1) are rejected", Mandatory: true, Ref: refSig + "; " + refNotify, Feature: FeatureOrderNotify}, secAuthActivity("orderNotify")},
		{Info{ID: "sec.signature.lowercase", Family: FamilySecurity, Title: "a lower-case hex signature is accepted", Mandatory: false, Ref: refSig + " (examples in both cases)"}, secAccepted("lower-case hex signature", func(s *session, inst *instance) call {
			return call{body: queryBody(inst.ID, false), lowerHex: true, note: "lower-case hex signature"}
		})},
		{Info{ID: "sec.timestamp.seconds", Family: FamilySecurity, Title: "a 10-digit (seconds) timestamp is accepted", Mandatory: false, Ref: "saas-v2.md §2.2 [UNCONFIRMED] unit; README.md policy 1"}, secAccepted("10-digit seconds timestamp", func(s *session, inst *instance) call {
			return call{body: queryBody(inst.ID, false), timestamp: strconv.FormatInt(s.cfg.Clock.Now().Unix(), 10), note: "timestamp in seconds"}
		})},
		{Info{ID: "sec.timestamp.skew", Family: FamilySecurity, Title: "timestamps 30 s old and 30 s ahead (inside the 60 s window) are accepted", Mandatory: true, Ref: refSig + " (60 s window)"}, secAcceptedAll("timestamp inside the 60 s window", func(s *session, inst *instance) []call {
			now := s.cfg.Clock.Now()
			return []call{
				{body: queryBody(inst.ID, false), timestamp: strconv.FormatInt(now.Add(-30*time.Second).UnixMilli(), 10), note: "timestamp 30 s old"},
				{body: queryBody(inst.ID, false), timestamp: strconv.FormatInt(now.Add(30*time.Second).UnixMilli(), 10), note: "timestamp 30 s ahead"},
			}
		})},

		// --- bad input ---------------------------------------------------------------------
		{Info{ID: "input.missing", Family: FamilyInput, Title: "missing mandatory fields get 000002", Mandatory: true, Ref: refBadParam}, inputMissing},
		{Info{ID: "input.oversized", Family: FamilyInput, Title: "fields longer than their documented maximum get 000002", Mandatory: true, Ref: refBadParam}, inputOversized},
		{Info{ID: "input.illTyped", Family: FamilyInput, Title: "fields of the wrong JSON type get 000002", Mandatory: true, Ref: refBadParam + "; " + refLenient}, inputIllTyped},
		{Info{ID: "input.invalidValue", Family: FamilyInput, Title: "invalid status and expireTime values get 000002 and change nothing", Mandatory: true, Ref: refBadParam + "; " + refStatus + "; " + refRefresh, Modes: periodic}, inputInvalidValue},
		{Info{ID: "input.activity", Family: FamilyInput, Title: "an unknown or missing activity gets 000002", Mandatory: true, Ref: refBadParam + "; saas-v2.md §0 (activity)"}, inputActivity},
		{Info{ID: "input.unknownInstance", Family: FamilyInput, Title: "calls for an unknown instanceId get 000003", Mandatory: true, Ref: refNoInst}, inputUnknownInstance},
		{Info{ID: "input.unknownInstance.query", Family: FamilyInput, Title: "queryInstance for an unknown instanceId does not list it", Mandatory: false, Ref: refQuery + "; " + refNoInst}, inputUnknownQuery},
		{Info{ID: "input.malformedJSON", Family: FamilyInput, Title: "a signed body that is not a JSON object gets 000002", Mandatory: false, Ref: refBadParam}, inputMalformed},
		{Info{ID: "input.lenient", Family: FamilyInput, Title: "unknown fields are ignored and a numeric testFlag is accepted", Mandatory: false, Ref: refLenient}, inputLenient},

		// --- asynchronous creation ---------------------------------------------------------
		{Info{ID: "async.newInstance", Family: FamilyAsync, Title: "after 000004, queryInstance polling finds the instance ready in time", Mandatory: true, Ref: refNew + "; " + refMatrix + " (order of calls)"}, asyncNew},

		// --- the whole lifecycle -----------------------------------------------------------
		{Info{ID: "lifecycle.full", Family: FamilyLifecycle, Title: "create → query → renew → freeze → unfreeze → release → query", Mandatory: true, Ref: refMatrix + "; saas-v2.md §4.1-§4.5"}, lifecycleFull},
		{Info{ID: "lifecycle.dialReplay", Family: FamilyLifecycle, Title: "saved debug cases (MOCK orders, testFlag \"1\") replay twice", Mandatory: false, Ref: refDebug + "; saas-v2.md §5.1 (mock orders)"}, lifecycleDialReplay},

		// --- the answers themselves (judged over every answer of the run) ------------------
		{Info{ID: "answer.http200", Family: FamilyAnswers, Title: "every answer is HTTP 200", Mandatory: true, Ref: refHTTP}, answerHTTP200},
		{Info{ID: "answer.json", Family: FamilyAnswers, Title: "every answer is a JSON object", Mandatory: true, Ref: refResponse + "; " + refHTTP}, answerJSON},
		{Info{ID: "answer.fields", Family: FamilyAnswers, Title: "documented field names, types and lengths", Mandatory: true, Ref: refResponse + "; " + refCodes}, answerFields},
		{Info{ID: "answer.bodySign", Family: FamilyAnswers, Title: "Body-Sign, when present, is valid", Mandatory: true, Ref: refBodySign}, answerBodySign},
		{Info{ID: "answer.credentials", Family: FamilyAnswers, Title: "credentials decrypt with the SHA1PRNG key and fit 128 characters", Mandatory: true, Ref: refCred + "; " + refQuery + "; README.md policy 4"}, answerCredentials},
		{Info{ID: "answer.memo", Family: FamilyAnswers, Title: "memo writes non-ASCII characters as \\uXXXX", Mandatory: true, Ref: refQuery + " (memo)"}, answerMemo},
		{Info{ID: "answer.latency", Family: FamilyAnswers, Title: "every answer within the 5 s timeout", Mandatory: true, Ref: refTimeout}, answerLatency},
	}
}

// --- interfaces -------------------------------------------------------------------------------

func ifaceNew(test bool) func(context.Context, *session, *T) {
	return func(ctx context.Context, s *session, t *T) {
		o, ok := s.publish(t, "NEW")
		if !ok {
			return
		}
		body := newInstanceBody(o, uuid(), test)
		if !test {
			// As in the documentation's example: a real request with testFlag "0".
			body = obj("activity", "newInstance", "businessId", uuid(), "orderId", o.OrderID, "orderLineId", o.OrderLine[0].OrderLineID, "testFlag", "0")
		}
		x := s.c.send(ctx, call{body: body})
		if !t.expect(x, "newInstance was not accepted", refNew, kg.CodeSuccess, kg.CodeInProgress) {
			return
		}
		if x.Parsed.InstanceID == "" {
			t.fail(Finding{What: "the answer has no instanceId", Sent: x.sent(), Got: x.got(), Want: "instanceId: String, mandatory, at most 64 characters", Ref: refNew})
			return
		}
		t.note("instanceId %s (resultCode %s, %v)", x.Parsed.InstanceID, x.Code(), x.Latency.Round(time.Millisecond))
		qc, ok := s.cfg.Orders.(interface{ Queried(string) int })
		if !ok {
			return
		}
		if x.Code() == kg.CodeInProgress {
			// The merchant may fetch the order while it provisions.
			inst := &instance{ID: x.Parsed.InstanceID, Order: o, TestFlag: test, Async: true}
			if _, ok := s.waitReady(ctx, t, inst); !ok {
				return
			}
		}
		switch n := qc.Queried(o.OrderID); {
		case n > 0:
			t.note("the merchant called Query Order for %s %d time(s)", o.OrderID, n)
		case test:
			t.note("the merchant did not call Query Order for the debug order %s", o.OrderID)
		default:
			t.warn(Finding{What: fmt.Sprintf("the merchant never called Query Order for order %s, yet created an instance for it", o.OrderID), Sent: x.sent(), Got: x.got(),
				Want: "a V2 newInstance carries only order ids: the merchant learns what was bought (product, SKU, period, buyer) from Query Order (the documents describe the call, not an obligation)",
				Ref:  "saas-v2.md §3 step 2, §5.1"})
		}
	}
}

func ifaceQuery(test bool) func(context.Context, *session, *T) {
	return func(ctx context.Context, s *session, t *T) {
		inst, ok := s.create(ctx, t, test)
		if !ok {
			return
		}
		x := s.query(ctx, inst, "")
		if !t.expect(x, "queryInstance failed", refQuery, kg.CodeSuccess) {
			return
		}
		if !listed(x, inst.ID) {
			t.fail(Finding{What: "info does not list the instance", Sent: x.sent(), Got: x.got(), Want: "info[] with an entry whose instanceId is " + inst.ID, Ref: refQuery})
		}
	}
}

func ifaceQueryBatch(ctx context.Context, s *session, t *T) {
	a, ok := s.create(ctx, t, false)
	if !ok {
		return
	}
	b, ok := s.create(ctx, t, false)
	if !ok {
		return
	}
	x := s.c.send(ctx, call{body: queryBody(a.ID+","+b.ID, false), note: "two ids"})
	if !t.expect(x, "queryInstance with two comma-separated ids failed", refQuery, kg.CodeSuccess) {
		return
	}
	if !listed(x, a.ID) || !listed(x, b.ID) {
		t.fail(Finding{What: "info does not list both instances", Sent: x.sent(), Got: x.got(), Want: "one info entry per instance id (comma-separated, at most 100 per call)", Ref: refQuery})
		return
	}
	// A full batch: 100 ids, the documented maximum, far longer than the
	// field's 100-character Max (which the table gives for one id and the
	// text says to read leniently). The two instances come first and last,
	// so a merchant that reads only part of the list misses one; the 98
	// between them were never issued, and are shaped like the merchant's
	// own ids, in case it refuses ids of another shape.
	ids := []string{a.ID}
	for len(ids) < 99 {
		ids = append(ids, lookalike(a.ID))
	}
	ids = append(ids, b.ID)
	x = s.c.send(ctx, call{body: queryBody(strings.Join(ids, ","), false), note: "100 ids: the two instances first and last, 98 never-issued ids of the same shape between"})
	want := "000000 with an info entry for each of the two instances (queryInstance takes up to 100 comma-separated ids)"
	switch {
	case listed(x, a.ID) && listed(x, b.ID):
		t.note("a batch of 100 ids listed both instances")
	case codeIn(x, kg.CodeSuccess):
		var missing []string
		for i, id := range []string{a.ID, b.ID} {
			if !listed(x, id) {
				missing = append(missing, fmt.Sprintf("%s (id %d of 100)", id, []int{1, 100}[i]))
			}
		}
		t.fail(Finding{What: "a queryInstance with 100 comma-separated ids does not list " + strings.Join(missing, " and "), Sent: x.sent(), Got: x.got(), Want: want, Ref: refQuery})
	case codeIn(x, kg.CodeNoInstance):
		// Whether ids that do not exist spoil the whole batch is not written down.
		t.warn(Finding{What: "a queryInstance with 100 comma-separated ids, two of them existing instances, answered 000003", Sent: x.sent(), Got: x.got(),
			Want: want + "; the documents do not say how ids that do not exist are answered in a batch", Ref: refQuery})
	default:
		t.fail(Finding{What: "a queryInstance with 100 comma-separated ids (the documented maximum) was not answered: " + gotWhat(x), Sent: x.sent(), Got: x.got(), Want: want, Ref: refQuery})
	}
}

func ifaceRefresh(scene string, test, longStamp bool) func(context.Context, *session, *T) {
	return func(ctx context.Context, s *session, t *T) {
		buy := "NEW"
		if scene == "TRIAL_TO_FORMAL" {
			// Only a trial can be converted: buy one (Query Order answers trialFlag "1").
			buy = kg.OrderTypeTrial
		}
		inst, ok := s.createFrom(ctx, t, test, buy)
		if !ok {
			return
		}
		orderType := map[string]string{"RENEWAL": "RENEW", "TRIAL_TO_FORMAL": "TRIAL_TO_FORMAL", "UNSUBSCRIBE_RENEWAL_PERIOD": "UNSUBSCRIBE", "RENEWAL_CHANGE": "RENEW"}[scene]
		o, ok := s.publish(t, orderType)
		if !ok {
			return
		}
		productID := ""
		if scene == "TRIAL_TO_FORMAL" || scene == "RENEWAL_CHANGE" {
			productID = o.OrderLine[0].ProductInfo[0].ProductID
		}
		expire := inst.nextExpire()
		if longStamp {
			expire += "000"
		}
		x := s.c.send(ctx, call{body: refreshBody(o, inst.ID, scene, expire, productID, test)})
		t.expect(x, "refreshInstance "+scene+" failed", refRefresh, kg.CodeSuccess)
	}
}

// lookalike returns an id shaped like id (same length, separators and
// character classes) whose last 12 letters and digits are drawn at random;
// for an id with fewer than 8 of them, a fresh one that cannot be confused
// with the merchant's.
func lookalike(id string) string {
	b := []byte(id)
	var pos []int
	for i := len(b) - 1; i >= 0 && len(pos) < 12; i-- {
		if c := b[i]; '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' {
			pos = append(pos, i)
		}
	}
	if len(pos) < 8 || len(id) > 64 {
		return "souk-check-absent-" + uuid()
	}
	for _, i := range pos {
		switch c := b[i]; {
		case '0' <= c && c <= '9':
			b[i] = randString(1, "0123456789")[0]
		case 'a' <= c && c <= 'f':
			b[i] = randString(1, "abcdef")[0]
		case 'A' <= c && c <= 'F':
			b[i] = randString(1, "ABCDEF")[0]
		case 'a' <= c && c <= 'z':
			b[i] = randString(1, "abcdefghijklmnopqrstuvwxyz")[0]
		default:
			b[i] = randString(1, "ABCDEFGHIJKLMNOPQRSTUVWXYZ")[0]
		}
	}
	return string(b)
}

// createFrozen creates an instance and freezes it, as KooGallery does when
// it expires unrenewed (the set-up of the freeze-period checks).
func (s *session) createFrozen(ctx context.Context, t *T) (*instance, bool) {
	inst, ok := s.create(ctx, t, false)
	if !ok {
		return nil, false
	}
	x := s.c.send(ctx, call{body: statusBody(inst.ID, "FREEZE", false), note: "the instance expired: freeze"})
	if !t.expect(x, "FREEZE (set-up) failed", refStatus, kg.CodeSuccess) {
		return nil, false
	}
	return inst, true
}

// ifaceRefreshFrozen renews an expired, frozen instance: the buyer renews
// during the freeze period, KooGallery sends the renewal, then UNFREEZE
// (saas-v2.md §3: "a renewal unfreezes"; §4.4).
func ifaceRefreshFrozen(ctx context.Context, s *session, t *T) {
	inst, ok := s.createFrozen(ctx, t)
	if !ok {
		return
	}
	o, ok := s.publish(t, "RENEW")
	if !ok {
		return
	}
	x := s.c.send(ctx, call{body: refreshBody(o, inst.ID, "RENEWAL", inst.nextExpire(), "", false), note: "renewed during the freeze period"})
	if !t.expect(x, "refreshInstance RENEWAL of a frozen instance failed", refRefresh+"; "+refMatrix+" (freeze period: a renewal unfreezes)", kg.CodeSuccess) {
		return
	}
	x = s.c.send(ctx, call{body: statusBody(inst.ID, "UNFREEZE", false), note: "after the renewal: unfreeze"})
	t.expect(x, "UNFREEZE after the renewal of a frozen instance failed", refStatus, kg.CodeSuccess)
}

func ifaceStatus(test bool) func(context.Context, *session, *T) {
	return func(ctx context.Context, s *session, t *T) {
		inst, ok := s.create(ctx, t, test)
		if !ok {
			return
		}
		x := s.c.send(ctx, call{body: statusBody(inst.ID, "FREEZE", test)})
		t.expect(x, "FREEZE failed", refStatus, kg.CodeSuccess)
		x = s.c.send(ctx, call{body: statusBody(inst.ID, "UNFREEZE", test)})
		t.expect(x, "UNFREEZE failed", refStatus, kg.CodeSuccess)
	}
}

func ifaceRelease(test, unsubscribe bool) func(context.Context, *session, *T) {
	return func(ctx context.Context, s *session, t *T) {
		inst, ok := s.create(ctx, t, test)
		if !ok {
			return
		}
		body := releaseBody(inst.ID, test)
		if unsubscribe {
			o, ok := s.publish(t, "UNSUBSCRIBE")
			if !ok {
				return
			}
			body = obj(withTestFlag(test, "activity", "releaseInstance", "instanceId", inst.ID, "orderId", o.OrderID, "orderLineId", o.OrderLine[0].OrderLineID)...)
		}
		x := s.c.send(ctx, call{body: body})
		t.expect(x, "releaseInstance failed", refRelease, kg.CodeSuccess)
	}
}

// ifaceReleaseFrozen releases a frozen instance: an instance that is not
// renewed is frozen when it expires and released when the freeze period ends
// (saas-v2.md §3, §4.4, §4.5), so this is the usual release, not a corner case.
func ifaceReleaseFrozen(ctx context.Context, s *session, t *T) {
	inst, ok := s.createFrozen(ctx, t)
	if !ok {
		return
	}
	x := s.c.send(ctx, call{body: releaseBody(inst.ID, false), note: "the freeze period is over: release the frozen instance"})
	t.expect(x, "releaseInstance of a frozen instance failed", refRelease+" (called when an instance is not renewed after the freeze period); "+refMatrix, kg.CodeSuccess)
}

func ifaceUpgrade(test bool) func(context.Context, *session, *T) {
	return func(ctx context.Context, s *session, t *T) {
		inst, ok := s.create(ctx, t, test)
		if !ok {
			return
		}
		o, ok := s.publish(t, "CHANGE")
		if !ok {
			return
		}
		x := s.c.send(ctx, call{body: upgradeBody(o, inst.ID, test)})
		t.expect(x, "upgradeInstance failed", refUpgrade, kg.CodeSuccess)
	}
}

func ifaceChangeCheck(asString bool) func(context.Context, *session, *T) {
	return func(ctx context.Context, s *session, t *T) {
		inst, ok := s.create(ctx, t, false)
		if !ok {
			return
		}
		pi := obj("productId", "OFFI"+randString(18, "0123456789"), "skuCode", uuid(), "linearValue", 20)
		var piv any = json.RawMessage(pi)
		if asString {
			piv = string(pi)
		}
		x := s.c.send(ctx, call{body: obj("activity", "changeInstanceCheck", "instanceId", inst.ID, "productInfo", piv)})
		if x.Err != nil || x.Parsed == nil || len(x.Code()) != 6 {
			t.fail(Finding{What: "changeInstanceCheck got no well-formed answer: " + gotWhat(x), Sent: x.sent(), Got: x.got(),
				Want: "resultCode 000000 (the change is possible) or a refusal code 0001xx", Ref: refChange})
			return
		}
		if x.Code() == kg.CodeBadParam && asString {
			t.fail(Finding{What: "productInfo sent as a JSON string was refused as a bad parameter", Sent: x.sent(), Got: x.got(), Want: "parse productInfo whether it arrives as an object or as a string", Ref: refChange})
			return
		}
		if x.Code() != kg.CodeSuccess && !isRefusal(x.Code()) {
			t.fail(Finding{What: "a well-formed changeInstanceCheck was answered " + x.Code() + ", neither allowed nor refused", Sent: x.sent(), Got: x.got(),
				Want: "000000 when the change is possible, a refusal code 0001xx (000100-000107 and the rest of that range) otherwise; 000001-000005 are failures, not answers", Ref: refChange + "; " + refCodes})
			return
		}
		t.note("changeInstanceCheck answered %s (%s)", x.Code(), map[bool]string{true: "change allowed", false: "change refused"}[x.Code() == kg.CodeSuccess])
	}
}

// isRefusal reports whether code is a business refusal, 0001xx.
func isRefusal(code string) bool {
	if len(code) != 6 || !strings.HasPrefix(code, "0001") {
		return false
	}
	return code[4] >= '0' && code[4] <= '9' && code[5] >= '0' && code[5] <= '9'
}

func ifaceOrderNotify(ctx context.Context, s *session, t *T) {
	o, ok := s.publish(t, "NEW")
	if !ok {
		return
	}
	x := s.c.send(ctx, call{body: obj("activity", "orderNotify", "orderId", o.OrderID, "orderLineId", o.OrderLine[0].OrderLineID, "testFlag", "0")})
	t.expect(x, "orderNotify failed", refNotify, kg.CodeSuccess)
	x = s.c.send(ctx, call{body: obj("activity", "orderNotify", "orderId", o.OrderID, "orderLineId", o.OrderLine[0].OrderLineID, "testFlag", "1"), note: "debug notification"})
	t.expect(x, "orderNotify with testFlag \"1\" failed", refNotify+"; "+refTestFlag, kg.CodeSuccess)
}

// --- idempotency ------------------------------------------------------------------------------

func idemNewSequential(test bool) func(context.Context, *session, *T) {
	return func(ctx context.Context, s *session, t *T) {
		o, ok := s.publish(t, "NEW")
		if !ok {
			return
		}
		var first *exchange
		for i := 0; i < 3; i++ {
			x := s.c.send(ctx, call{body: newInstanceBody(o, uuid(), test), note: fmt.Sprintf("attempt %d, new businessId", i+1)})
			if !t.expect(x, fmt.Sprintf("newInstance attempt %d failed", i+1), refNew, kg.CodeSuccess, kg.CodeInProgress) {
				return
			}
			if first == nil {
				first = x
				continue
			}
			if x.Parsed.InstanceID != first.Parsed.InstanceID {
				t.fail(Finding{What: fmt.Sprintf("retry %d returned instanceId %q, the first call %q", i+1, x.Parsed.InstanceID, first.Parsed.InstanceID),
					Sent: first.sent() + "\nthen " + x.sent(), Got: first.got() + "\nthen " + x.got(),
					Want: "the same instanceId for the same orderId + orderLineId, never a second instance", Ref: refNew + "; " + refIdem})
				return
			}
		}
		// Another order is another instance: the instanceId is unique.
		o2, ok := s.publish(t, "NEW")
		if !ok {
			return
		}
		x := s.c.send(ctx, call{body: newInstanceBody(o2, uuid(), test), note: "another order"})
		if !t.expect(x, "newInstance of another order failed", refNew, kg.CodeSuccess, kg.CodeInProgress) || x.Parsed.InstanceID != first.Parsed.InstanceID {
			return
		}
		f := Finding{What: fmt.Sprintf("two different orders (%s, %s) got the same instanceId %q", o.OrderID, o2.OrderID, x.Parsed.InstanceID),
			Sent: first.sent() + "\nthen " + x.sent(), Got: first.got() + "\nthen " + x.got(),
			Want: "a unique instanceId per order line (the first call's businessId or a globally unique id such as a UUID)", Ref: refNew}
		if test {
			// How a merchant serves debug requests is inferred (sandbox data,
			// "like a real one"): one shared sandbox instance is a warning.
			f.Want += "; a debug request is answered like a real one (one shared sandbox instance for every debug order is not)"
			f.Ref = refNew + "; " + refTestFlag
			t.warn(f)
			return
		}
		t.fail(f)
	}
}

func idemNewConcurrent(ctx context.Context, s *session, t *T) {
	o, ok := s.publish(t, "NEW")
	if !ok {
		return
	}
	n := s.cfg.Concurrency
	xs := make([]*exchange, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			xs[i] = s.c.send(ctx, call{body: newInstanceBody(o, uuid(), false), note: fmt.Sprintf("concurrent attempt %d of %d", i+1, n)})
		}()
	}
	close(start)
	wg.Wait()
	ids := map[string]*exchange{}
	for _, x := range xs {
		if x.Code() == kg.CodeInProgress && x.Parsed.InstanceID == "" {
			t.warn(Finding{What: "a concurrent attempt answered 000004 without instanceId", Sent: x.sent(), Got: x.got(), Want: "instanceId is mandatory in the newInstance answer", Ref: refNew})
			continue
		}
		if !t.expect(x, "a concurrent newInstance attempt failed", refNew+"; "+refIdem, kg.CodeSuccess, kg.CodeInProgress) {
			continue
		}
		if x.Parsed.InstanceID != "" {
			ids[x.Parsed.InstanceID] = x
		}
	}
	if len(ids) > 1 {
		var got, sent []string
		for id, x := range ids {
			got = append(got, id)
			sent = append(sent, x.sent())
		}
		t.fail(Finding{What: fmt.Sprintf("%d concurrent attempts for one order created %d different instances: %s", n, len(ids), strings.Join(got, ", ")),
			Sent: strings.Join(sent, "\n"), Want: "one instanceId for one orderId + orderLineId, also under concurrent retries", Ref: refNew + "; " + refIdem})
		return
	}
	// One more, after the burst.
	x := s.c.send(ctx, call{body: newInstanceBody(o, uuid(), false), note: "attempt after the concurrent burst"})
	if t.expect(x, "newInstance after the concurrent burst failed", refNew, kg.CodeSuccess, kg.CodeInProgress) {
		for id := range ids {
			if x.Parsed.InstanceID != id {
				t.fail(Finding{What: fmt.Sprintf("the attempt after the burst returned %q, the burst %q", x.Parsed.InstanceID, id), Sent: x.sent(), Got: x.got(), Want: "the same instanceId", Ref: refNew + "; " + refIdem})
			}
		}
	}
}

// idemNewOrderLines buys two products in one order (Query Order lists two
// lines): each line is its own instance, and each line's retry finds its own.
func idemNewOrderLines(ctx context.Context, s *session, t *T) {
	o, err := s.orderWithLines(2)
	if err != nil {
		t.fail(Finding{What: err.Error()})
		return
	}
	var ids [2]string
	var xs [2]*exchange
	for round := 1; round <= 2; round++ {
		for i, line := range o.OrderLine {
			body := obj("activity", "newInstance", "businessId", uuid(), "orderId", o.OrderID, "orderLineId", line.OrderLineID)
			x := s.c.send(ctx, call{body: body, note: fmt.Sprintf("order line %d of 2, attempt %d", i+1, round)})
			if !t.expect(x, fmt.Sprintf("newInstance of order line %d (attempt %d) failed", i+1, round), refNew, kg.CodeSuccess, kg.CodeInProgress) {
				return
			}
			if x.Parsed.InstanceID == "" {
				t.fail(Finding{What: "newInstance answer has no instanceId", Sent: x.sent(), Got: x.got(), Want: "instanceId (String, 1-64 characters)", Ref: refNew})
				return
			}
			switch {
			case round == 1:
				ids[i], xs[i] = x.Parsed.InstanceID, x
			case x.Parsed.InstanceID != ids[i]:
				t.fail(Finding{What: fmt.Sprintf("the retry of order line %d returned instanceId %q, its first call %q", i+1, x.Parsed.InstanceID, ids[i]),
					Sent: xs[i].sent() + "\nthen " + x.sent(), Got: xs[i].got() + "\nthen " + x.got(),
					Want: "the same instanceId for the same orderId + orderLineId", Ref: refNew + "; " + refIdem})
				return
			}
		}
		if round == 1 && ids[0] == ids[1] {
			t.fail(Finding{What: fmt.Sprintf("two lines of order %s got the same instanceId %q: the second product bought was never provisioned", o.OrderID, ids[0]),
				Sent: xs[0].sent() + "\nthen " + xs[1].sent(), Got: xs[0].got() + "\nthen " + xs[1].got(),
				Want: "one instance per orderId + orderLineId (the idempotency key is the pair, not the order alone)", Ref: refNew + "; " + refIdem})
			return
		}
	}
}

func idemRefresh(ctx context.Context, s *session, t *T) {
	inst, ok := s.create(ctx, t, false)
	if !ok {
		return
	}
	o, ok := s.publish(t, "RENEW")
	if !ok {
		return
	}
	body := refreshBody(o, inst.ID, "RENEWAL", inst.nextExpire(), "", false)
	for i := 1; i <= 3; i++ {
		x := s.c.send(ctx, call{body: body, note: fmt.Sprintf("delivery %d of the same renewal", i)})
		if !t.expect(x, fmt.Sprintf("delivery %d of the same refreshInstance failed", i), refRetry+"; "+refRefresh, kg.CodeSuccess) {
			return
		}
	}
	// The next period's renewal is a new order, not a repeat: the
	// idempotency key is the order, not the instance.
	o2, ok := s.publish(t, "RENEW")
	if !ok {
		return
	}
	x := s.c.send(ctx, call{body: refreshBody(o2, inst.ID, "RENEWAL", inst.nextExpire(), "", false), note: "the next renewal: a new order, a month further"})
	t.expect(x, "a second renewal (a new order, after the first was delivered three times) failed", refRefresh+"; "+refIdem+" (the key is the order: a new renewal order is applied)", kg.CodeSuccess)
}

func idemStatus(status string) func(context.Context, *session, *T) {
	return func(ctx context.Context, s *session, t *T) {
		inst, ok := s.create(ctx, t, false)
		if !ok {
			return
		}
		if status == "UNFREEZE" {
			x := s.c.send(ctx, call{body: statusBody(inst.ID, "FREEZE", false), note: "freeze first"})
			if !t.expect(x, "FREEZE (set-up) failed", refStatus, kg.CodeSuccess) {
				return
			}
		}
		for i := 1; i <= 3; i++ {
			x := s.c.send(ctx, call{body: statusBody(inst.ID, status, false), note: fmt.Sprintf("%s delivery %d", status, i)})
			if !t.expect(x, fmt.Sprintf("%s delivery %d failed", status, i), refRetry+"; "+refStatus, kg.CodeSuccess) {
				return
			}
		}
		q := s.query(ctx, inst, "after repeated "+status)
		if !listed(q, inst.ID) {
			// The data must be kept while frozen; that queryInstance keeps
			// listing a frozen instance is an inference.
			t.warn(Finding{What: "the instance is no longer listed after repeated " + status, Sent: q.sent(), Got: q.got(), Want: "freezing keeps the instance and its data", Ref: refMatrix + " (freeze period)"})
		}
	}
}

func idemRelease(ctx context.Context, s *session, t *T) {
	inst, ok := s.create(ctx, t, false)
	if !ok {
		return
	}
	for i := 1; i <= 3; i++ {
		x := s.c.send(ctx, call{body: releaseBody(inst.ID, false), note: fmt.Sprintf("release delivery %d", i)})
		if !t.expect(x, fmt.Sprintf("release delivery %d failed", i), refRelease+" (a repeated release returns success)", kg.CodeSuccess) {
			return
		}
	}
}

func idemUpgrade(ctx context.Context, s *session, t *T) {
	inst, ok := s.create(ctx, t, false)
	if !ok {
		return
	}
	o, ok := s.publish(t, "CHANGE")
	if !ok {
		return
	}
	body := upgradeBody(o, inst.ID, false)
	for i := 1; i <= 3; i++ {
		x := s.c.send(ctx, call{body: body, note: fmt.Sprintf("upgrade delivery %d", i)})
		if !t.expect(x, fmt.Sprintf("upgrade delivery %d failed", i), refUpgrade+"; "+refIdem+" (idempotent per orderId)", kg.CodeSuccess) {
			return
		}
	}
	// A later upgrade is a new paid order, not a repeat of the first.
	o2, ok := s.publish(t, "CHANGE")
	if !ok {
		return
	}
	x := s.c.send(ctx, call{body: upgradeBody(o2, inst.ID, false), note: "a second upgrade: a new order"})
	t.expect(x, "a second upgrade (a new order, after the first was delivered three times) failed", refUpgrade+"; "+refIdem+" (idempotent per orderId: a new upgrade order is applied)", kg.CodeSuccess)
}

// --- security -----------------------------------------------------------------------------------

// secAttack creates an instance, sends each forged releaseInstance for it and
// expects 000001 and an instance that is still there after each.
func secAttack(what string, forge func(*session, *instance) []call) func(context.Context, *session, *T) {
	return func(ctx context.Context, s *session, t *T) {
		inst, ok := s.create(ctx, t, false)
		if !ok {
			return
		}
		for _, c := range forge(s, inst) {
			x := s.c.send(ctx, c)
			t.expect(x, "a releaseInstance with "+what+" was not rejected", refSig+"; saas-v2.md §7", kg.CodeAuthFailed)
			s.stillThere(ctx, t, inst, x, refSig)
		}
	}
}

// secKeyKind signs each interface type with the other type's key: the
// address is bound to one key per interface type (saas-v2.md §1), so the
// general key does not authenticate a basic interface, nor the access key an
// orderNotify. It needs a separate general key (--notify-key).
func secKeyKind(ctx context.Context, s *session, t *T) {
	if s.cfg.NotifyKey == s.cfg.AccessKey {
		t.skip("the general (orderNotify) key is the access key (no --notify-key): nothing to tell apart")
		return
	}
	ref := refSig + "; saas-v2.md §1 (one key per interface type)"
	inst, ok := s.create(ctx, t, false)
	if !ok {
		return
	}
	x := s.c.send(ctx, call{body: releaseBody(inst.ID, false), key: s.cfg.NotifyKey, note: "signed with the general (orderNotify) key, not the access key"})
	t.expect(x, "a releaseInstance signed with the general (orderNotify) key was not rejected", ref, kg.CodeAuthFailed)
	s.stillThere(ctx, t, inst, x, ref)
	if !s.cfg.OrderNotify {
		return
	}
	o, ok := s.publish(t, "NEW")
	if !ok {
		return
	}
	x = s.c.send(ctx, call{body: obj("activity", "orderNotify", "orderId", o.OrderID, "orderLineId", o.OrderLine[0].OrderLineID, "testFlag", "0"), key: s.cfg.AccessKey, note: "signed with the access key, not the general key"})
	t.expect(x, "an orderNotify signed with the access key (not the general key) was not rejected", ref+"; "+refNotify, kg.CodeAuthFailed)
}

// skewed returns correctly signed releases of inst whose timestamp is off by
// d, in milliseconds and in seconds.
func skewed(s *session, inst *instance, d time.Duration) []call {
	at := s.cfg.Clock.Now().Add(d)
	dir := "old"
	if d > 0 {
		dir = "ahead"
	}
	if d < 0 {
		d = -d
	}
	return []call{
		{body: releaseBody(inst.ID, false), timestamp: strconv.FormatInt(at.UnixMilli(), 10), note: fmt.Sprintf("timestamp %v %s (13-digit ms), correctly signed", d, dir)},
		{body: releaseBody(inst.ID, false), timestamp: strconv.FormatInt(at.Unix(), 10), note: fmt.Sprintf("timestamp %v %s (10-digit s), correctly signed", d, dir)},
	}
}

// secAcceptedAll is secAccepted for several variants.
func secAcceptedAll(what string, mk func(*session, *instance) []call) func(context.Context, *session, *T) {
	return func(ctx context.Context, s *session, t *T) {
		inst, ok := s.create(ctx, t, false)
		if !ok {
			return
		}
		for _, c := range mk(s, inst) {
			x := s.c.send(ctx, c)
			if !listed(x, inst.ID) {
				t.fail(Finding{What: "a correctly signed queryInstance with a " + what + " (" + c.note + ") was not answered: " + gotWhat(x), Sent: x.sent(), Got: x.got(), Want: "accept every timestamp within 60 s of the clock", Ref: refSig})
			}
		}
	}
}

// forgeries are the forged variants sent to every activity: a wrong
// signature, the signature parameter left out, a stale timestamp.
func forgeries(s *session, body []byte) []call {
	stale := strconv.FormatInt(s.cfg.Clock.Now().Add(-10*time.Minute).UnixMilli(), 10)
	return []call{
		{body: body, signature: strings.ToUpper(randString(64, "0123456789abcdef")), note: "forged: random signature"},
		{body: body, omitSig: true, note: "forged: signature parameter left out (timestamp and nonce sent)"},
		{body: body, timestamp: stale, note: "forged: timestamp 10 min old, correctly signed"},
	}
}

// secAuthActivity sends the forged variants of one activity, with testFlag
// "0" and "1": each must get 000001 and change nothing.
func secAuthActivity(activity string) func(context.Context, *session, *T) {
	return func(ctx context.Context, s *session, t *T) {
		for _, test := range []bool{false, true} {
			if !s.forgeActivity(ctx, t, activity, test) {
				return
			}
		}
	}
}

func (s *session) forgeActivity(ctx context.Context, t *T, activity string, test bool) bool {
	flag := "0"
	if test {
		flag = "1"
	}
	ref := refSig + "; saas-v2.md §7 (000001)"
	if activity == "newInstance" {
		return s.forgeNew(ctx, t, test, flag, ref)
	}
	var inst *instance
	if activity != "orderNotify" {
		var ok bool
		if inst, ok = s.create(ctx, t, test); !ok {
			return false
		}
	}
	var body []byte
	switch activity {
	case "queryInstance":
		body = queryBody(inst.ID, test)
	case "refreshInstance":
		o, ok := s.publish(t, "RENEW")
		if !ok {
			return false
		}
		body = refreshBody(o, inst.ID, "RENEWAL", inst.nextExpire(), "", test)
	case "updateInstanceStatus":
		body = statusBody(inst.ID, "FREEZE", test)
	case "releaseInstance":
		body = releaseBody(inst.ID, test)
	case "upgradeInstance":
		o, ok := s.publish(t, "CHANGE")
		if !ok {
			return false
		}
		body = upgradeBody(o, inst.ID, test)
	case "changeInstanceCheck":
		pi := obj("productId", "OFFI"+randString(18, "0123456789"), "skuCode", uuid(), "linearValue", 20)
		body = obj(withTestFlag(test, "activity", "changeInstanceCheck", "instanceId", inst.ID, "productInfo", json.RawMessage(pi))...)
	case "orderNotify":
		o, ok := s.publish(t, "NEW")
		if !ok {
			return false
		}
		body = obj("activity", "orderNotify", "orderId", o.OrderID, "orderLineId", o.OrderLine[0].OrderLineID, "testFlag", flag)
	default:
		panic("check: no forgery for " + activity)
	}
	for _, c := range forgeries(s, body) {
		x := s.c.send(ctx, c)
		t.expect(x, fmt.Sprintf("%s (testFlag %q) with %s was not rejected", activity, flag, strings.TrimPrefix(c.note, "forged: ")), ref, kg.CodeAuthFailed)
		if inst != nil {
			s.stillThere(ctx, t, inst, x, ref)
		}
	}
	return true
}

// forgeNew sends forged newInstance requests for a fresh order and proves
// they created nothing: the target must not have asked Query Order for the
// order (a V2 merchant learns what was bought only from Query Order,
// saas-v2.md §3 step 2, so a call shows the forged request was acted on), and
// a genuine newInstance of the same order line afterwards must still succeed.
func (s *session) forgeNew(ctx context.Context, t *T, test bool, flag, ref string) bool {
	o, ok := s.publish(t, "NEW")
	if !ok {
		return false
	}
	var last *exchange
	for _, c := range forgeries(s, newInstanceBody(o, uuid(), test)) {
		last = s.c.send(ctx, c)
		t.expect(last, fmt.Sprintf("newInstance (testFlag %q) with %s was not rejected", flag, strings.TrimPrefix(c.note, "forged: ")), ref, kg.CodeAuthFailed)
	}
	if qc, ok := s.cfg.Orders.(interface{ Queried(string) int }); ok {
		if n := qc.Queried(o.OrderID); n > 0 {
			t.fail(Finding{What: fmt.Sprintf("after only forged newInstance requests (testFlag %q) for order %s, the target called Query Order for it %d time(s): it acted on requests that failed authentication", flag, o.OrderID, n),
				Sent: last.sent(), Got: last.got(), Want: "authenticate before anything else: a forged request creates nothing and fetches nothing", Ref: ref})
		}
	}
	x := s.c.send(ctx, call{body: newInstanceBody(o, uuid(), test), note: "genuine newInstance of the order the forged requests named"})
	t.expect(x, fmt.Sprintf("a genuine newInstance (testFlag %q) after forged ones for the same order line failed", flag), refNew+"; "+ref, kg.CodeSuccess, kg.CodeInProgress)
	return true
}

// secAccepted sends a correctly signed query in a documented variant and
// expects it to be accepted.
func secAccepted(what string, mk func(*session, *instance) call) func(context.Context, *session, *T) {
	return func(ctx context.Context, s *session, t *T) {
		inst, ok := s.create(ctx, t, false)
		if !ok {
			return
		}
		x := s.c.send(ctx, mk(s, inst))
		if !listed(x, inst.ID) {
			t.fail(Finding{What: "a correctly signed queryInstance with a " + what + " was not answered: " + gotWhat(x), Sent: x.sent(), Got: x.got(), Want: "accept every documented reading of the signature rules", Ref: refSig})
		}
	}
}

func secReplay(ctx context.Context, s *session, t *T) {
	inst, ok := s.create(ctx, t, false)
	if !ok {
		return
	}
	q := s.query(ctx, inst, "original request")
	if !t.expect(q, "the original queryInstance failed", refQuery, kg.CodeSuccess) {
		return
	}
	r := s.c.resend(ctx, q, "identical replay of the previous request")
	t.expect(r, "an identical replay (same URL, nonce and body) was not rejected", refSig+" (reject a nonce seen before)", kg.CodeAuthFailed)
	x := s.c.send(ctx, call{body: releaseBody(inst.ID, false), nonce: q.Nonce, note: "correctly signed, but reusing the nonce " + clip(q.Nonce, 12)})
	t.expect(x, "a releaseInstance reusing a nonce was not rejected", refSig+" (reject a nonce seen before)", kg.CodeAuthFailed)
	s.stillThere(ctx, t, inst, x, refSig)
	// A debug request (testFlag "1") is authenticated like any other: its
	// nonce too is kept and refused the second time.
	dbg, ok := s.create(ctx, t, true)
	if !ok {
		return
	}
	q = s.query(ctx, dbg, "original debug request (testFlag \"1\")")
	if !t.expect(q, "the original debug queryInstance failed", refQuery+"; "+refTestFlag, kg.CodeSuccess) {
		return
	}
	r = s.c.resend(ctx, q, "identical replay of the previous debug request")
	t.expect(r, "an identical replay of a debug request (testFlag \"1\") was not rejected", refSig+" (reject a nonce seen before, whatever the testFlag)", kg.CodeAuthFailed)
}

// secReplayDelayed sends a query stamped 30 s in the past and replays it a
// few seconds later, still inside the 60 s window: a nonce cache that forgets
// sooner than the window lets the replay through.
func secReplayDelayed(ctx context.Context, s *session, t *T) {
	inst, ok := s.create(ctx, t, false)
	if !ok {
		return
	}
	ts := strconv.FormatInt(s.cfg.Clock.Now().Add(-30*time.Second).UnixMilli(), 10)
	q := s.c.send(ctx, call{body: queryBody(inst.ID, false), timestamp: ts, note: "original request, timestamp 30 s old"})
	if !listed(q, inst.ID) {
		t.fail(Finding{What: "the original queryInstance (timestamp 30 s old, inside the window) was not answered: " + gotWhat(q), Sent: q.sent(), Got: q.got(),
			Want: "000000 listing the instance; the delayed replay could not be tried", Ref: refSig + " (60 s window)"})
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(s.cfg.ReplayDelay):
	}
	r := s.c.resend(ctx, q, fmt.Sprintf("identical replay %v later (the timestamp is still inside the 60 s window)", s.cfg.ReplayDelay))
	t.expect(r, fmt.Sprintf("an identical replay %v after the original was not rejected", s.cfg.ReplayDelay), refSig+" (keep nonces at least as long as the 60 s window)", kg.CodeAuthFailed)
	x := s.c.send(ctx, call{body: releaseBody(inst.ID, false), nonce: q.Nonce, note: fmt.Sprintf("correctly signed, reusing the nonce %s of a request %v earlier", clip(q.Nonce, 12), s.cfg.ReplayDelay)})
	t.expect(x, fmt.Sprintf("a releaseInstance reusing a nonce seen %v earlier was not rejected", s.cfg.ReplayDelay), refSig+" (keep nonces at least as long as the 60 s window)", kg.CodeAuthFailed)
	s.stillThere(ctx, t, inst, x, refSig)
}

func secTampered(ctx context.Context, s *session, t *T) {
	inst, ok := s.create(ctx, t, false)
	if !ok {
		return
	}
	// The signature covers the release of another instance; the body asks to
	// release this one (an attacker redirecting a captured request).
	other := releaseBody(uuid(), false)
	x := s.c.send(ctx, call{body: releaseBody(inst.ID, false), signBody: other, note: "signature computed over a different body: " + string(other)})
	t.expect(x, "a releaseInstance whose body differs from the signed one was not rejected", refSig+" (HMAC over the raw body)", kg.CodeAuthFailed)
	s.stillThere(ctx, t, inst, x, refSig)
	// The signed body followed by more bytes: the signature covers the whole
	// body as sent, not its first JSON value.
	signed := queryBody(inst.ID, false)
	body := append(append([]byte{}, signed...), []byte("\n"+string(releaseBody(inst.ID, false)))...)
	y := s.c.send(ctx, call{body: body, signBody: signed, note: "signature covers only the first JSON value of the body"})
	t.expect(y, "a body with bytes appended after the signed JSON was not rejected", refSig+" (HMAC over the body exactly as sent)", kg.CodeAuthFailed)
	s.stillThere(ctx, t, inst, y, refSig)
}

// --- bad input ------------------------------------------------------------------------------------

type badCase struct {
	name string
	body []byte
}

func (s *session) expectAll(ctx context.Context, t *T, cases []badCase, ref string, codes ...string) []*exchange {
	var xs []*exchange
	for _, c := range cases {
		x := s.c.send(ctx, call{body: c.body, note: c.name})
		t.expect(x, c.name+" was not refused with "+strings.Join(codes, "/"), ref, codes...)
		xs = append(xs, x)
	}
	return xs
}

func inputMissing(ctx context.Context, s *session, t *T) {
	inst, ok := s.create(ctx, t, false)
	if !ok {
		return
	}
	o, ok := s.publish(t, "NEW")
	if !ok {
		return
	}
	line := o.OrderLine[0].OrderLineID
	cases := []badCase{
		{"newInstance without orderId", obj("activity", "newInstance", "businessId", uuid(), "orderLineId", line)},
		{"newInstance without orderLineId", obj("activity", "newInstance", "businessId", uuid(), "orderId", o.OrderID)},
		{"newInstance without businessId", obj("activity", "newInstance", "orderId", o.OrderID, "orderLineId", line)},
		{"queryInstance without instanceId", obj("activity", "queryInstance")},
		{"releaseInstance without instanceId", obj("activity", "releaseInstance")},
	}
	if s.cfg.Mode != ModeOneTime {
		r, ok := s.publish(t, "RENEW")
		if !ok {
			return
		}
		cases = append(cases,
			badCase{"updateInstanceStatus without status", obj("activity", "updateInstanceStatus", "instanceId", inst.ID)},
			badCase{"updateInstanceStatus without instanceId", obj("activity", "updateInstanceStatus", "status", "FREEZE")},
			badCase{"refreshInstance without expireTime", obj("activity", "refreshInstance", "orderId", r.OrderID, "orderLineId", r.OrderLine[0].OrderLineID, "instanceId", inst.ID, "scene", "RENEWAL")},
			badCase{"refreshInstance without scene", obj("activity", "refreshInstance", "orderId", r.OrderID, "orderLineId", r.OrderLine[0].OrderLineID, "instanceId", inst.ID, "expireTime", inst.nextExpire())},
			badCase{"refreshInstance without orderId", obj("activity", "refreshInstance", "orderLineId", r.OrderLine[0].OrderLineID, "instanceId", inst.ID, "scene", "RENEWAL", "expireTime", inst.nextExpire())},
			badCase{"refreshInstance without orderLineId", obj("activity", "refreshInstance", "orderId", r.OrderID, "instanceId", inst.ID, "scene", "RENEWAL", "expireTime", inst.nextExpire())},
			badCase{"refreshInstance without instanceId", obj("activity", "refreshInstance", "orderId", r.OrderID, "orderLineId", r.OrderLine[0].OrderLineID, "scene", "RENEWAL", "expireTime", inst.nextExpire())},
		)
	}
	if s.cfg.Upgrade {
		u, ok := s.publish(t, "CHANGE")
		if !ok {
			return
		}
		cases = append(cases,
			badCase{"upgradeInstance without orderId", obj("activity", "upgradeInstance", "instanceId", inst.ID, "orderLineId", u.OrderLine[0].OrderLineID)},
			badCase{"upgradeInstance without orderLineId", obj("activity", "upgradeInstance", "instanceId", inst.ID, "orderId", u.OrderID)},
		)
	}
	if s.cfg.OrderNotify {
		n, ok := s.publish(t, "NEW")
		if !ok {
			return
		}
		cases = append(cases,
			badCase{"orderNotify without orderId", obj("activity", "orderNotify", "orderLineId", n.OrderLine[0].OrderLineID, "testFlag", "0")},
			badCase{"orderNotify without orderLineId", obj("activity", "orderNotify", "orderId", n.OrderID, "testFlag", "0")},
		)
	}
	s.expectAll(ctx, t, cases, refBadParam+", §4.6, §4.8", kg.CodeBadParam)
	s.stillThere(ctx, t, inst, &exchange{Note: "the requests above"}, refBadParam)
}

func inputOversized(ctx context.Context, s *session, t *T) {
	o, ok := s.publish(t, "NEW")
	if !ok {
		return
	}
	line := o.OrderLine[0].OrderLineID
	long := func(prefix string, n int) string { return prefix + strings.Repeat("X", n-len(prefix)) }
	cases := []badCase{
		{"newInstance with a 65-character orderId (max 64)", obj("activity", "newInstance", "businessId", uuid(), "orderId", long(o.OrderID, 65), "orderLineId", line)},
		{"newInstance with a 65-character orderLineId (max 64)", obj("activity", "newInstance", "businessId", uuid(), "orderId", o.OrderID, "orderLineId", long(line, 65))},
		{"newInstance with a 65-character businessId (max 64)", obj("activity", "newInstance", "businessId", long(uuid(), 65), "orderId", o.OrderID, "orderLineId", line)},
		{"newInstance with a 3-character testFlag (max 2)", obj("activity", "newInstance", "businessId", uuid(), "orderId", o.OrderID, "orderLineId", line, "testFlag", "100")},
	}
	s.expectAll(ctx, t, cases, refBadParam+" (Max column of §4.1)", kg.CodeBadParam)
	// The other activities, on an existing instance, so that the length is
	// the only thing wrong (an unknown instance could be answered 000003).
	inst, ok := s.create(ctx, t, false)
	if !ok {
		return
	}
	cases = nil
	if s.cfg.Mode != ModeOneTime {
		r, ok := s.publish(t, "RENEW")
		if !ok {
			return
		}
		rl := r.OrderLine[0].OrderLineID
		cases = append(cases,
			badCase{"refreshInstance with a 65-character orderId (max 64)", obj("activity", "refreshInstance", "orderId", long(r.OrderID, 65), "orderLineId", rl, "instanceId", inst.ID, "scene", "RENEWAL", "expireTime", kg.FormatTime14(kg.Expiry(inst.Expire, "month", 1)))},
			badCase{"refreshInstance with a 65-character orderLineId (max 64)", obj("activity", "refreshInstance", "orderId", r.OrderID, "orderLineId", long(rl, 65), "instanceId", inst.ID, "scene", "RENEWAL", "expireTime", kg.FormatTime14(kg.Expiry(inst.Expire, "month", 1)))},
		)
	}
	if s.cfg.Upgrade {
		u, ok := s.publish(t, "CHANGE")
		if !ok {
			return
		}
		cases = append(cases, badCase{"upgradeInstance with a 65-character orderId (max 64)", obj("activity", "upgradeInstance", "instanceId", inst.ID, "orderId", long(u.OrderID, 65), "orderLineId", u.OrderLine[0].OrderLineID)})
	}
	if len(cases) > 0 {
		s.expectAll(ctx, t, cases, refBadParam+" (Max column of §4.3, §4.6)", kg.CodeBadParam)
		s.stillThere(ctx, t, inst, &exchange{Note: "the requests above"}, refBadParam)
	}
	// releaseInstance's orderId is optional and a merchant may not read it
	// at all: an oversized one that is not refused is a warning.
	x := s.c.send(ctx, call{body: obj("activity", "releaseInstance", "instanceId", inst.ID, "orderId", long(o.OrderID, 65), "orderLineId", line), note: "releaseInstance with a 65-character orderId (max 64)"})
	if !codeIn(x, kg.CodeBadParam) {
		t.warn(Finding{What: "releaseInstance with a 65-character orderId (max 64) was not refused with 000002: " + gotWhat(x), Sent: x.sent(), Got: x.got(),
			Want: "000002: the orderId of releaseInstance is optional but at most 64 characters (a merchant that does not read it may ignore it)", Ref: refBadParam + " (Max column of §4.5)"})
	}
}

func inputIllTyped(ctx context.Context, s *session, t *T) {
	inst, ok := s.create(ctx, t, false)
	if !ok {
		return
	}
	o, ok := s.publish(t, "NEW")
	if !ok {
		return
	}
	line := o.OrderLine[0].OrderLineID
	cases := []badCase{
		{"newInstance with orderId as an object", obj("activity", "newInstance", "businessId", uuid(), "orderId", json.RawMessage(`{"id":"`+o.OrderID+`"}`), "orderLineId", line)},
		{"newInstance with orderLineId as an array", obj("activity", "newInstance", "businessId", uuid(), "orderId", o.OrderID, "orderLineId", json.RawMessage(`["`+line+`"]`))},
		{"releaseInstance with instanceId as an array", obj("activity", "releaseInstance", "instanceId", json.RawMessage(`["`+inst.ID+`"]`))},
		{"queryInstance with instanceId as an object", obj("activity", "queryInstance", "instanceId", json.RawMessage(`{"id":"`+inst.ID+`"}`))},
	}
	if s.cfg.Mode != ModeOneTime {
		cases = append(cases, badCase{"updateInstanceStatus with status as an object", obj("activity", "updateInstanceStatus", "instanceId", inst.ID, "status", json.RawMessage(`{"value":"FREEZE"}`))})
	}
	s.expectAll(ctx, t, cases, refBadParam, kg.CodeBadParam)
	s.stillThere(ctx, t, inst, &exchange{Note: "the requests above"}, refBadParam)
}

func inputInvalidValue(ctx context.Context, s *session, t *T) {
	inst, ok := s.create(ctx, t, false)
	if !ok {
		return
	}
	r, ok := s.publish(t, "RENEW")
	if !ok {
		return
	}
	cases := []badCase{
		{"updateInstanceStatus with status PAUSE (not FREEZE/UNFREEZE)", statusBody(inst.ID, "PAUSE", false)},
		{"refreshInstance with expireTime \"next month\" (not yyyyMMddHHmmss)", refreshBody(r, inst.ID, "RENEWAL", "next month", "", false)},
		{"refreshInstance with expireTime 20261345996199 (month 13)", refreshBody(r, inst.ID, "RENEWAL", "20261345996199", "", false)},
	}
	s.expectAll(ctx, t, cases, refBadParam, kg.CodeBadParam)
	s.stillThere(ctx, t, inst, &exchange{Note: "the requests above"}, refBadParam)
}

func inputActivity(ctx context.Context, s *session, t *T) {
	inst, ok := s.create(ctx, t, false)
	if !ok {
		return
	}
	cases := []badCase{
		{"unknown activity destroyInstance", obj("activity", "destroyInstance", "instanceId", inst.ID)},
		{"body without activity", obj("instanceId", inst.ID, "status", "FREEZE")},
	}
	s.expectAll(ctx, t, cases, refBadParam, kg.CodeBadParam)
	// A case-insensitive activity match is lenient rather than wrong: warn.
	x := s.c.send(ctx, call{body: obj("activity", "RELEASEINSTANCE", "instanceId", inst.ID), note: "activity in the wrong case"})
	if !codeIn(x, kg.CodeBadParam) {
		t.warn(Finding{What: "activity RELEASEINSTANCE (wrong case) was not refused with 000002: " + gotWhat(x), Sent: x.sent(), Got: x.got(),
			Want: "activity values are case-sensitive names; an unknown one is an invalid parameter", Ref: refBadParam})
	}
	s.stillThere(ctx, t, inst, x, refBadParam)
}

func inputUnknownInstance(ctx context.Context, s *session, t *T) {
	unknown := uuid()
	var cases []badCase
	if s.cfg.Mode != ModeOneTime {
		r, ok := s.publish(t, "RENEW")
		if !ok {
			return
		}
		cases = append(cases,
			badCase{"refreshInstance for an unknown instanceId", refreshBody(r, unknown, "RENEWAL", kg.FormatTime14(kg.Expiry(s.cfg.Clock.Now(), "month", 2)), "", false)},
			badCase{"FREEZE of an unknown instanceId", statusBody(unknown, "FREEZE", false)},
			badCase{"UNFREEZE of an unknown instanceId", statusBody(unknown, "UNFREEZE", false)},
		)
	}
	if s.cfg.Upgrade {
		u, ok := s.publish(t, "CHANGE")
		if !ok {
			return
		}
		cases = append(cases, badCase{"upgradeInstance of an unknown instanceId", upgradeBody(u, unknown, false)})
	}
	s.expectAll(ctx, t, cases, refNoInst, kg.CodeNoInstance)
	x := s.c.send(ctx, call{body: releaseBody(unknown, false), note: "release of an unknown instanceId"})
	switch {
	case codeIn(x, kg.CodeNoInstance):
	case codeIn(x, kg.CodeSuccess):
		t.warn(Finding{What: "releaseInstance of an instance that never existed answered 000000", Sent: x.sent(), Got: x.got(),
			Want: "000003 (the code table lists release); a repeated release of a released instance returns success", Ref: refNoInst + "; " + refRelease})
	default:
		t.expect(x, "releaseInstance of an unknown instanceId was not refused with 000003", refNoInst, kg.CodeNoInstance)
	}
	if s.cfg.ChangeCheck && s.cfg.Mode == ModePeriod {
		// Any code but 000000 refuses a change (§4.7); allowing one for an
		// instance that does not exist is wrong, and 000003 says why.
		pi := obj("productId", "OFFI"+randString(18, "0123456789"), "skuCode", uuid(), "linearValue", 20)
		x := s.c.send(ctx, call{body: obj("activity", "changeInstanceCheck", "instanceId", unknown, "productInfo", json.RawMessage(pi)),
			note: "change check of an unknown instanceId"})
		switch {
		case codeIn(x, kg.CodeNoInstance):
		case codeIn(x, kg.CodeSuccess):
			t.fail(Finding{What: "changeInstanceCheck of an instance that never existed answered 000000 (the change is allowed)", Sent: x.sent(), Got: x.got(),
				Want: "000003 (any code but 000000 refuses the change)", Ref: refNoInst + "; " + refChange})
		case x.Err == nil && x.Parsed != nil && len(x.Code()) == 6:
			t.warn(Finding{What: "changeInstanceCheck of an unknown instanceId answered " + x.Code() + ", not 000003", Sent: x.sent(), Got: x.got(),
				Want: "000003: the instance does not exist", Ref: refNoInst + "; " + refChange})
		default:
			t.expect(x, "changeInstanceCheck of an unknown instanceId got no well-formed answer", refChange, kg.CodeNoInstance)
		}
	}
}

func inputUnknownQuery(ctx context.Context, s *session, t *T) {
	unknown := uuid()
	x := s.c.send(ctx, call{body: queryBody(unknown, false), note: "unknown instanceId"})
	switch {
	case codeIn(x, kg.CodeNoInstance):
	case codeIn(x, kg.CodeSuccess) && !listed(x, unknown):
	default:
		t.fail(Finding{What: "queryInstance for an unknown instance: " + gotWhat(x), Sent: x.sent(), Got: x.got(), Want: "000003, or 000000 without the id in info", Ref: refQuery})
	}
}

func inputMalformed(ctx context.Context, s *session, t *T) {
	cases := []badCase{
		{"truncated JSON", []byte(`{"activity":"queryInstance","instanceId":`)},
		{"a JSON array", []byte(`[{"activity":"queryInstance"}]`)},
		{"an empty body", []byte{}},
	}
	s.expectAll(ctx, t, cases, refBadParam, kg.CodeBadParam)
}

func inputLenient(ctx context.Context, s *session, t *T) {
	o, ok := s.publish(t, "NEW")
	if !ok {
		return
	}
	x := s.c.send(ctx, call{body: obj("activity", "newInstance", "businessId", uuid(), "orderId", o.OrderID, "orderLineId", o.OrderLine[0].OrderLineID,
		"testFlag", json.RawMessage(`0`), "futureField", "ignored", "nested", json.RawMessage(`{"a":[1,2]}`)), note: "numeric testFlag and unknown fields"})
	t.expect(x, "a newInstance with a numeric testFlag and unknown fields was refused", refLenient, kg.CodeSuccess, kg.CodeInProgress)
}

// --- asynchronous creation ------------------------------------------------------------------------

func asyncNew(ctx context.Context, s *session, t *T) {
	o, ok := s.publish(t, "NEW")
	if !ok {
		return
	}
	x := s.c.send(ctx, call{body: newInstanceBody(o, uuid(), false)})
	if !t.expect(x, "newInstance failed", refNew, kg.CodeSuccess, kg.CodeInProgress) {
		return
	}
	if x.Code() == kg.CodeSuccess {
		t.skip("the merchant provisions synchronously (000000): nothing to poll")
		return
	}
	if x.Parsed.InstanceID == "" {
		t.fail(Finding{What: "000004 answer without instanceId", Sent: x.sent(), Got: x.got(), Want: "instanceId is mandatory, also with 000004", Ref: refNew})
		return
	}
	inst := &instance{ID: x.Parsed.InstanceID, Order: o, Async: true}
	start := time.Now()
	if _, ok := s.waitReady(ctx, t, inst); ok {
		t.note("ready %v after the 000004 answer", time.Since(start).Round(time.Millisecond))
	}
}

// --- lifecycle ------------------------------------------------------------------------------------

func lifecycleFull(ctx context.Context, s *session, t *T) {
	inst, ok := s.create(ctx, t, false)
	if !ok {
		return
	}
	t.note("1 create: instance %s", inst.ID)
	q := s.query(ctx, inst, "2 query")
	if !listed(q, inst.ID) {
		t.fail(Finding{What: "step 2: queryInstance does not list the new instance: " + gotWhat(q), Sent: q.sent(), Got: q.got(), Want: "000000 with the instance in info", Ref: refQuery})
		return
	}
	if s.cfg.Mode != ModeOneTime {
		r, ok := s.publish(t, "RENEW")
		if !ok {
			return
		}
		steps := []struct {
			name string
			body []byte
			ref  string
		}{
			{"3 renew", refreshBody(r, inst.ID, "RENEWAL", inst.nextExpire(), "", false), refRefresh},
			{"4 freeze", statusBody(inst.ID, "FREEZE", false), refStatus},
			{"5 unfreeze", statusBody(inst.ID, "UNFREEZE", false), refStatus},
		}
		for _, st := range steps {
			x := s.c.send(ctx, call{body: st.body, note: "step " + st.name})
			if !t.expect(x, "step "+st.name+" failed", st.ref, kg.CodeSuccess) {
				return
			}
			q := s.query(ctx, inst, "query after step "+st.name)
			if !listed(q, inst.ID) {
				t.warn(Finding{What: "after step " + st.name + " queryInstance no longer lists the instance: " + gotWhat(q), Sent: q.sent(), Got: q.got(),
					Want: "the instance and its data are kept until it is released (that queryInstance lists a frozen instance is inferred)", Ref: refMatrix + " (freeze period)"})
			}
		}
	}
	x := s.c.send(ctx, call{body: releaseBody(inst.ID, false), note: "step 6 release"})
	if !t.expect(x, "step 6 release failed", refRelease, kg.CodeSuccess) {
		return
	}
	q = s.query(ctx, inst, "7 query after release")
	switch {
	case codeIn(q, kg.CodeNoInstance):
		t.note("7 query after release: 000003")
	case codeIn(q, kg.CodeSuccess):
		if listed(q, inst.ID) {
			t.warn(Finding{What: "step 7: a released instance is still listed by queryInstance", Sent: q.sent(), Got: q.got(),
				Want: "undocumented; most merchants answer 000003 (instance does not exist) after release", Ref: refRelease + "; " + refNoInst})
		} else {
			t.note("7 query after release: 000000 without the instance")
		}
	default:
		t.warn(Finding{What: "step 7: queryInstance after release: " + gotWhat(q), Sent: q.sent(), Got: q.got(), Want: "000003, or 000000 without the instance (undocumented)", Ref: refRelease + "; " + refNoInst})
	}
}

// mockOrderID is the Query Order mock order of the charging mode (saas-v2.md §5.1).
func mockOrderID(mode string) string {
	switch mode {
	case ModeOneTime:
		return "MOCKONETIMENEW"
	case ModeOnDemand:
		return "MOCKONDEMAND"
	}
	return "MOCKPERIODYEARNEW"
}

func lifecycleDialReplay(ctx context.Context, s *session, t *T) {
	o, ok := s.publish(t, "NEW")
	if !ok {
		return
	}
	o.OrderID = mockOrderID(s.cfg.Mode)
	o.OrderLine[0].OrderLineID = o.OrderID + "-000001"
	if s.cfg.Orders != nil {
		if err := s.cfg.Orders.PublishOrder(o); err != nil {
			t.fail(Finding{What: err.Error()})
			return
		}
	}
	// The saved create, query, refresh, freeze and unfreeze cases replay
	// twice (morning and afternoon); release ends the day, twice as well.
	var inst *instance
	for round := 1; round <= 2; round++ {
		tag := fmt.Sprintf("dial round %d: ", round)
		x := s.c.send(ctx, call{body: newInstanceBody(o, uuid(), true), note: tag + "create"})
		if !t.expect(x, tag+"the saved create case failed", refDebug, kg.CodeSuccess, kg.CodeInProgress) || x.Parsed.InstanceID == "" {
			return
		}
		if inst == nil {
			inst = &instance{ID: x.Parsed.InstanceID, Order: o, TestFlag: true, Expire: kg.Expiry(s.cfg.Clock.Now(), "month", 1), Async: x.Code() == kg.CodeInProgress}
			if inst.Async {
				if _, ok := s.waitReady(ctx, t, inst); !ok {
					return
				}
			}
		} else if x.Parsed.InstanceID != inst.ID {
			t.fail(Finding{What: fmt.Sprintf("%sthe saved create case returned %q, round 1 %q", tag, x.Parsed.InstanceID, inst.ID), Sent: x.sent(), Got: x.got(), Want: "the same instanceId for the same order", Ref: refIdem})
		}
		cases := []badCase{{"query", queryBody(inst.ID, true)}}
		if s.cfg.Mode != ModeOneTime {
			cases = append(cases,
				badCase{"refresh", refreshBody(o, inst.ID, "RENEWAL", inst.nextExpire(), "", true)},
				badCase{"freeze", statusBody(inst.ID, "FREEZE", true)},
				badCase{"unfreeze", statusBody(inst.ID, "UNFREEZE", true)})
		}
		for _, c := range cases {
			x := s.c.send(ctx, call{body: c.body, note: tag + c.name})
			t.expect(x, tag+"the saved "+c.name+" case failed", refDebug, kg.CodeSuccess)
		}
	}
	for round := 1; round <= 2; round++ {
		x := s.c.send(ctx, call{body: releaseBody(inst.ID, true), note: fmt.Sprintf("dial: release %d", round)})
		t.expect(x, fmt.Sprintf("the saved release case failed on replay %d", round), refDebug+"; "+refRelease, kg.CodeSuccess)
	}
}
