package sellertools

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/soukhq/souk/market"
)

// Param is one parameter of an interface tab of the debugging tool.
type Param struct {
	Name     string   `json:"name"`
	Required bool     `json:"required"`
	MaxLen   int      `json:"maxLength"`
	Choices  []string `json:"choices,omitempty"`
	Object   bool     `json:"object,omitempty"` // the value is a JSON object (changeInstanceCheck.productInfo)
	Doc      string   `json:"description"`
}

// Interface is one tab of the debugging tool: a production interface, the key
// type that signs it and its body parameters (activity excluded).
type Interface struct {
	Activity string  `json:"activity"`
	Title    string  `json:"title"` // the Seller Center tab
	KeyType  string  `json:"keyType"`
	Params   []Param `json:"params"`
}

var testFlagParam = Param{Name: "testFlag", MaxLen: 2, Choices: []string{"1", "0"}, Doc: `"1" marks a debugging request (default in the tool and the dial tests)`}

// interfaces lists the tabs in dial-test replay order: creation first,
// release last, so that a replay can run on one instance.
var interfaces = []Interface{
	{Activity: "newInstance", Title: "创建实例 (create instance)", KeyType: market.KeyBasic, Params: []Param{
		{Name: "orderId", Required: true, MaxLen: 64, Doc: "order ID; a MOCK… order so that Query Order answers debugging data"},
		{Name: "orderLineId", Required: true, MaxLen: 64, Doc: "order line ID (<orderId>-000001 for MOCK orders)"},
		{Name: "businessId", Required: true, MaxLen: 64, Doc: "KooGallery business ID; fresh on every call (dial tests draw a new one)"},
		testFlagParam,
	}},
	{Activity: "queryInstance", Title: "查询实例 (query instance)", KeyType: market.KeyBasic, Params: []Param{
		{Name: "instanceId", Required: true, MaxLen: 6500, Doc: "one instance ID or up to 100 comma-separated IDs; default: the instance of the saved newInstance case"},
		testFlagParam,
	}},
	{Activity: "refreshInstance", Title: "更新实例 (update instance)", KeyType: market.KeyBasic, Params: []Param{
		{Name: "scene", Required: true, MaxLen: 64, Choices: []string{"RENEWAL", "TRIAL_TO_FORMAL", "UNSUBSCRIBE_RENEWAL_PERIOD", "RENEWAL_CHANGE"}, Doc: "what changed"},
		{Name: "orderId", Required: true, MaxLen: 64, Doc: "the renewal (or conversion, or cancelled renewal) order"},
		{Name: "orderLineId", Required: true, MaxLen: 64, Doc: "order line ID"},
		{Name: "instanceId", Required: true, MaxLen: 64, Doc: "the instance"},
		{Name: "productId", MaxLen: 64, Doc: "the new productId when the period type changes or on trial→paid (optional)"},
		{Name: "expireTime", Required: true, MaxLen: 20, Doc: "new expiry, yyyyMMddHHmmss UTC"},
		testFlagParam,
	}},
	{Activity: "upgradeInstance", Title: "升级实例 (upgrade instance)", KeyType: market.KeyBasic, Params: []Param{
		{Name: "instanceId", Required: true, MaxLen: 64, Doc: "the instance"},
		{Name: "orderId", Required: true, MaxLen: 64, Doc: "the upgrade order"},
		{Name: "orderLineId", Required: true, MaxLen: 64, Doc: "order line ID"},
		testFlagParam,
	}},
	{Activity: "changeInstanceCheck", Title: "续费变更校验 (verify change upon renewal)", KeyType: market.KeyBasic, Params: []Param{
		{Name: "instanceId", Required: true, MaxLen: 64, Doc: "the instance"},
		{Name: "productInfo", Required: true, Object: true, MaxLen: 2048, Doc: `target product, a JSON object {"productId","skuCode","linearValue"}`},
		testFlagParam,
	}},
	{Activity: "updateInstanceStatus", Title: "更新实例状态 (freeze / unfreeze)", KeyType: market.KeyBasic, Params: []Param{
		{Name: "instanceId", Required: true, MaxLen: 64, Doc: "the instance"},
		{Name: "status", Required: true, MaxLen: 32, Choices: []string{"FREEZE", "UNFREEZE"}, Doc: "FREEZE or UNFREEZE"},
		testFlagParam,
	}},
	{Activity: "orderNotify", Title: "订单通知 (order notification)", KeyType: market.KeyGeneral, Params: []Param{
		{Name: "orderId", Required: true, MaxLen: 64, Doc: "the order"},
		{Name: "orderLineId", Required: true, MaxLen: 64, Doc: "order line ID"},
		{Name: "testFlag", Required: true, MaxLen: 2, Choices: []string{"1", "0"}, Doc: `"1" marks a debugging request`},
	}},
	{Activity: "releaseInstance", Title: "释放实例 (release instance)", KeyType: market.KeyBasic, Params: []Param{
		{Name: "instanceId", Required: true, MaxLen: 64, Doc: "the instance"},
		{Name: "orderId", MaxLen: 64, Doc: "the unsubscribe order, when the release comes from one (optional)"},
		{Name: "orderLineId", MaxLen: 64, Doc: "order line ID (optional)"},
		testFlagParam,
	}},
}

// Interfaces returns the debugging tool's interface tabs, in replay order.
func Interfaces() []Interface {
	out := make([]Interface, len(interfaces))
	for i, in := range interfaces {
		in.Params = slices.Clone(in.Params)
		out[i] = in
	}
	return out
}

// lookupInterface returns the tab of an activity.
func lookupInterface(activity string) (Interface, bool) {
	for _, in := range interfaces {
		if in.Activity == activity {
			return in, true
		}
	}
	return Interface{}, false
}

// replayRank orders activities for a replay.
func replayRank(activity string) int {
	for i, in := range interfaces {
		if in.Activity == activity {
			return i
		}
	}
	return len(interfaces)
}

func activityNames() string {
	names := make([]string, len(interfaces))
	for i, in := range interfaces {
		names[i] = in.Activity
	}
	return strings.Join(names, ", ")
}

// buildBody validates params against the interface and writes the JSON body:
// activity first, then the parameters in the documented order, optional
// empty ones left out. Every value is a JSON string except object parameters.
func buildBody(in Interface, params map[string]string) ([]byte, error) {
	known := map[string]bool{}
	for _, p := range in.Params {
		known[p.Name] = true
	}
	for k := range params {
		if !known[k] {
			return nil, badField("params."+k, "is not a parameter of %s", in.Activity)
		}
	}
	var b bytes.Buffer
	b.WriteString(`{"activity":`)
	writeJSONString(&b, in.Activity)
	for _, p := range in.Params {
		v := params[p.Name]
		field := "params." + p.Name
		if v == "" {
			if p.Required {
				return nil, badField(field, "is required")
			}
			continue
		}
		if p.MaxLen > 0 && len(v) > p.MaxLen {
			return nil, badField(field, "is longer than %d characters", p.MaxLen)
		}
		if len(p.Choices) > 0 && !slices.Contains(p.Choices, v) {
			return nil, badField(field, "must be one of %s", strings.Join(p.Choices, ", "))
		}
		b.WriteByte(',')
		writeJSONString(&b, p.Name)
		b.WriteByte(':')
		if p.Object {
			var obj map[string]any
			if err := json.Unmarshal([]byte(v), &obj); err != nil || obj == nil {
				return nil, badField(field, "must be a JSON object")
			}
			var c bytes.Buffer
			if err := json.Compact(&c, []byte(v)); err != nil {
				return nil, badField(field, "must be a JSON object: %v", err)
			}
			b.Write(c.Bytes())
			continue
		}
		writeJSONString(&b, v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc, _ := json.Marshal(s) // a string always marshals
	b.Write(enc)
}

// mandatory is the interface matrix (saas-v2.md §3): the interfaces a product
// must have passing saved cases for, per charging mode.
var mandatory = map[string][]string{
	market.ModeOneTime:     {"newInstance", "queryInstance", "releaseInstance"},
	market.ModePeriod:      {"newInstance", "queryInstance", "refreshInstance", "updateInstanceStatus", "releaseInstance"},
	market.ModeOnDemand:    {"newInstance", "queryInstance", "refreshInstance", "updateInstanceStatus", "releaseInstance"},
	market.ModeOnDemandPkg: {"newInstance", "queryInstance", "refreshInstance", "updateInstanceStatus", "releaseInstance"},
}

// Requirement is one interface a product needs a saved case for, and why.
type Requirement struct {
	Activity string   `json:"activity"`
	Because  []string `json:"because"` // charging modes and product options that require it
}

// Requirements returns the interfaces a product must debug and save before it
// can go on sale: the mandatory ones of each charging mode of its plans,
// upgradeInstance when it allows upgrades, changeInstanceCheck when it allows
// a change upon renewal, orderNotify when it subscribes to order notification.
func Requirements(p market.Product) []Requirement {
	why := map[string][]string{}
	add := func(activity, reason string) {
		if !slices.Contains(why[activity], reason) {
			why[activity] = append(why[activity], reason)
		}
	}
	for _, pl := range p.Plans {
		for _, a := range mandatory[pl.ChargingMode] {
			add(a, pl.ChargingMode)
		}
	}
	if p.UpgradeAllowed {
		add("upgradeInstance", "upgradeAllowed")
	}
	if p.RenewalChangeAllowed {
		add("changeInstanceCheck", "renewalChangeAllowed")
	}
	if p.OrderNotify {
		add("orderNotify", "orderNotify")
	}
	var out []Requirement
	for _, in := range interfaces {
		if r, ok := why[in.Activity]; ok {
			out = append(out, Requirement{Activity: in.Activity, Because: r})
		}
	}
	return out
}

// mockOrder returns the debugging order of the product's main charging mode.
func mockOrder(p market.Product) string {
	mode := ""
	for _, pl := range p.Plans {
		if pl.ChargingMode == market.ModePeriod {
			mode = market.ModePeriod
			break
		}
		if mode == "" {
			mode = pl.ChargingMode
		}
	}
	switch mode {
	case market.ModeOneTime:
		return "MOCKONETIMENEW"
	case market.ModeOnDemand:
		return "MOCKONDEMAND"
	case market.ModeOnDemandPkg:
		return "MOCKONDEMANDPKG"
	default:
		return "MOCKPERIODYEARNEW"
	}
}

// defaultCaseName names a case after its activity, and its scene or status
// where one interface has several cases.
func defaultCaseName(activity string, params map[string]string) string {
	switch activity {
	case "refreshInstance":
		if s := params["scene"]; s != "" {
			return activity + ":" + s
		}
	case "updateInstanceStatus":
		if s := params["status"]; s != "" {
			return activity + ":" + s
		}
	}
	return activity
}

func checkName(name string) error {
	if name == "" || len(name) > 100 {
		return badField("name", "must be 1 to 100 characters")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return badField("name", "must not contain control characters")
		}
	}
	return nil
}

func describeInterfaces() string { return fmt.Sprintf("one of %s", activityNames()) }
