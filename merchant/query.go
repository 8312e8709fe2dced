package merchant

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/soukhq/souk/kg"
)

// QueryInstances answers queryInstance for up to 100 ids: the appInfo of
// every ready instance (credentials encrypted per the product's setting with
// the access key that verified the request) and, for pay-per-use instances,
// their usageInfo. Unknown ids (and released real instances) are left out;
// when none is known → 000003;
// when none is ready: 000004 while one is still provisioning, else the
// refusal (code and message) of the first failed one.
func (m *Merchant) QueryInstances(ctx context.Context, ids []string, keyIndex int) (*reply, error) {
	out := &reply{}
	known, pending := 0, 0
	var failure *Failure
	encSet := false
	for _, id := range ids {
		inst, err := loadInstance(ctx, m.db, id)
		if errors.Is(err, errNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("queryInstance: %w", err)
		}
		src := inst
		if inst.AliasOf != "" {
			if c, err := loadInstance(ctx, m.db, inst.AliasOf); err == nil {
				src = c
			} else if !errors.Is(err, errNotFound) {
				return nil, fmt.Errorf("queryInstance: %w", err)
			}
		}
		if src.Status == StatusReleased && !src.TestFlag {
			// Released: no longer an instance of the buyer's (as the
			// lifecycle calls answer, 000003). A sandbox instance stays
			// listed: the dial tests replay create → query after release.
			continue
		}
		known++
		if src.Phase == PhaseFailed && src.Failure != nil {
			if failure == nil {
				failure = src.Failure
			}
			continue
		}
		if src.Phase != PhaseReady || src.AppInfo == nil {
			pending++
			continue
		}
		if !encSet {
			out.EncryptType = m.cfg.encryptTypeFor(src.ProductID)
			encSet = true
		}
		app, err := m.wireAppInfo(src.AppInfo, out.EncryptType, keyIndex)
		if err != nil {
			return nil, fmt.Errorf("queryInstance %s: %w", id, err)
		}
		info := kg.InstanceInfo{InstanceID: id, AppInfo: app}
		if src.ChargingMode == ChargingOnDemand || src.ChargingMode == ChargingOnDemandPkg {
			info.UsageInfo = wireUsageInfo(src, m.clock.Now())
		}
		out.Info = append(out.Info, info)
	}
	switch {
	case known == 0:
		return nil, kg.NewResultError(kg.CodeNoInstance, "no such instance")
	case len(out.Info) == 0 && pending > 0:
		return nil, kg.NewResultError(kg.CodeInProgress, "instance is still being provisioned")
	case len(out.Info) == 0 && failure != nil:
		return nil, kg.NewResultError(failure.ResultCode, failure.ResultMsg)
	}
	return out, nil
}

func (m *Merchant) wireAppInfo(a *AppInfo, encryptType string, keyIndex int) (*kg.AppInfo, error) {
	w := &kg.AppInfo{FrontEndURL: a.FrontEndURL, AdminURL: a.AdminURL, UserName: a.UserName, Password: a.Password, Memo: a.Memo}
	if encryptType == "" {
		return w, nil
	}
	if keyIndex < 0 || keyIndex >= len(m.cfg.AccessKeys) {
		keyIndex = 0
	}
	key := m.cfg.AccessKeys[keyIndex]
	var err error
	if w.UserName != "" {
		if w.UserName, err = kg.EncryptCredential(key, encryptType, w.UserName, m.rand); err != nil {
			return nil, fmt.Errorf("encrypt userName: %w", err)
		}
	}
	if w.Password != "" {
		if w.Password, err = kg.EncryptCredential(key, encryptType, w.Password, m.rand); err != nil {
			return nil, fmt.Errorf("encrypt password: %w", err)
		}
	}
	return w, nil
}

// wireUsageInfo is the instance's usageInfo, or a zero usage now when the
// app has reported none yet (pay-per-use instances must return usage).
// statisticalTime is mandatory and never goes out empty: an entry stored
// without a valid one (before souk required it) is stamped now, the time
// souk last knew the value to hold.
func wireUsageInfo(in *Instance, now time.Time) []kg.UsageInfo {
	if len(in.UsageInfo) == 0 {
		return []kg.UsageInfo{{UsageValue: "0", StatisticalTime: statisticalTime(now)}}
	}
	out := make([]kg.UsageInfo, len(in.UsageInfo))
	for i, u := range in.UsageInfo {
		st := u.StatisticalTime
		if _, err := kg.ParseTime17(st); err != nil {
			st = statisticalTime(now)
		}
		out[i] = kg.UsageInfo{RelatedInstanceID: u.RelatedInstanceID, UsageValue: kg.Number(u.UsageValue), StatisticalTime: st, DashboardURL: u.DashboardURL}
	}
	return out
}
