package check

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/soukhq/souk/kg"
)

// Answer is a merchant's answer, decoded strictly: every field keeps its raw
// JSON so that its type can be judged, not coerced.
type Answer struct {
	Fields map[string]json.RawMessage

	ResultCode  string
	ResultMsg   string
	InstanceID  string
	EncryptType string
	Info        []InstanceInfo
}

// InstanceInfo is one entry of a queryInstance answer's info array.
type InstanceInfo struct {
	Fields     map[string]json.RawMessage
	InstanceID string
	AppInfo    *AppInfo
	UsageInfo  []map[string]json.RawMessage
}

// AppInfo is an instance's usage information.
type AppInfo struct {
	Fields      map[string]json.RawMessage
	FrontEndURL string
	AdminURL    string
	UserName    string
	Password    string
	Memo        string
	MemoRaw     json.RawMessage // the memo literal exactly as sent, quotes and escapes included
}

// Violation is a field of an answer that breaks the documented schema.
type Violation struct {
	Field    string
	Problem  string
	Optional bool // the rule is undocumented or unconfirmed: report a warning
	Ref      string
}

func (v Violation) String() string { return v.Field + ": " + v.Problem }

// ParseAnswer decodes an answer body. It fails only when the body is not a
// JSON object; type and length problems are reported by Validate.
func ParseAnswer(body []byte) (*Answer, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, errors.New("answer is not a JSON object")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &fields); err != nil {
		return nil, fmt.Errorf("answer is not valid JSON: %w", err)
	}
	a := &Answer{Fields: fields}
	a.ResultCode, _ = rawString(fields["resultCode"])
	a.ResultMsg, _ = rawString(fields["resultMsg"])
	a.InstanceID, _ = rawString(fields["instanceId"])
	a.EncryptType, _ = rawString(fields["encryptType"])
	if raw, ok := fields["info"]; ok {
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) == nil {
			for _, it := range items {
				var f map[string]json.RawMessage
				if json.Unmarshal(it, &f) != nil {
					a.Info = append(a.Info, InstanceInfo{})
					continue
				}
				ii := InstanceInfo{Fields: f}
				ii.InstanceID, _ = rawString(f["instanceId"])
				if ar, ok := f["appInfo"]; ok {
					var af map[string]json.RawMessage
					if json.Unmarshal(ar, &af) == nil && af != nil {
						ai := &AppInfo{Fields: af, MemoRaw: af["memo"]}
						ai.FrontEndURL, _ = rawString(af["frontEndUrl"])
						ai.AdminURL, _ = rawString(af["adminUrl"])
						ai.UserName, _ = rawString(af["userName"])
						ai.Password, _ = rawString(af["password"])
						ai.Memo, _ = rawString(af["memo"])
						ii.AppInfo = ai
					}
				}
				if ur, ok := f["usageInfo"]; ok {
					var us []map[string]json.RawMessage
					if json.Unmarshal(ur, &us) == nil {
						ii.UsageInfo = us
					}
				}
				a.Info = append(a.Info, ii)
			}
		}
	}
	return a, nil
}

// rawString returns the value of a JSON string literal; ok is false for
// anything else (including an absent field).
func rawString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

func isNull(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

const (
	refResponse = "saas-v2.md §4.1-§4.7 (response tables)"
	refCodes    = "saas-v2.md §7"
	refQuery    = "saas-v2.md §4.2"
	refCred     = "saas-v2.md §6"
	refNew      = "saas-v2.md §4.1"
)

// stringField checks an optional or mandatory string field with a maximum
// length in characters.
func stringField(vs []Violation, f map[string]json.RawMessage, path, name string, mandatory bool, max int, ref string) []Violation {
	raw, ok := f[name]
	if !ok || isNull(raw) {
		if mandatory {
			vs = append(vs, Violation{Field: path + name, Problem: "mandatory field is missing", Ref: ref})
		}
		return vs
	}
	s, ok := rawString(raw)
	if !ok {
		return append(vs, Violation{Field: path + name, Problem: "must be a JSON string, got " + clip(string(raw), 60), Ref: ref})
	}
	if n := utf8.RuneCountInString(s); n > max {
		vs = append(vs, Violation{Field: path + name, Problem: fmt.Sprintf("is %d characters long, at most %d allowed", n, max), Ref: ref})
	}
	return vs
}

// Validate checks the fields every answer may carry against the documented
// response tables. activity selects the activity-specific fields
// (newInstance: instanceId; queryInstance: info). mode is the charging mode
// (pay-per-use instances must report usageInfo).
func (a *Answer) Validate(activity, mode string) []Violation {
	var vs []Violation
	f := a.Fields
	vs = stringField(vs, f, "", "resultCode", true, 6, refCodes)
	if a.ResultCode != "" && len(a.ResultCode) == 6 {
		if _, known := kg.CodeMessage(a.ResultCode); !known {
			vs = append(vs, Violation{Field: "resultCode", Problem: fmt.Sprintf("%q is not in the documented result-code table", a.ResultCode), Optional: true, Ref: refCodes})
		}
	}
	vs = stringField(vs, f, "", "resultMsg", false, 255, refResponse)
	if raw, ok := f["encryptType"]; ok && !isNull(raw) {
		if s, ok := rawString(raw); !ok || (s != "1" && s != "2") {
			vs = append(vs, Violation{Field: "encryptType", Problem: "must be the string \"1\" (AES-256) or \"2\" (AES-128), got " + clip(string(raw), 40), Ref: refCred})
		}
	}
	switch activity {
	case "newInstance":
		mandatory := a.ResultCode == kg.CodeSuccess || a.ResultCode == kg.CodeInProgress
		vs = stringField(vs, f, "", "instanceId", mandatory, 64, refNew)
	case "queryInstance":
		vs = append(vs, a.validateInfo(mode)...)
	}
	return vs
}

func (a *Answer) validateInfo(mode string) []Violation {
	var vs []Violation
	raw, ok := a.Fields["info"]
	if !ok || isNull(raw) {
		return nil // optional
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return []Violation{{Field: "info", Problem: "must be an array of InstanceInfo, got " + clip(string(raw), 60), Ref: refQuery}}
	}
	for i, it := range items {
		p := fmt.Sprintf("info[%d].", i)
		var f map[string]json.RawMessage
		if json.Unmarshal(it, &f) != nil || f == nil {
			vs = append(vs, Violation{Field: fmt.Sprintf("info[%d]", i), Problem: "must be an object", Ref: refQuery})
			continue
		}
		vs = stringField(vs, f, p, "instanceId", true, 64, refQuery)
		if ar, ok := f["appInfo"]; ok && !isNull(ar) {
			var af map[string]json.RawMessage
			if json.Unmarshal(ar, &af) != nil || af == nil {
				vs = append(vs, Violation{Field: p + "appInfo", Problem: "must be an object", Ref: refQuery})
			} else {
				ap := p + "appInfo."
				vs = stringField(vs, af, ap, "frontEndUrl", true, 512, refQuery)
				vs = stringField(vs, af, ap, "adminUrl", false, 512, refQuery)
				vs = stringField(vs, af, ap, "userName", false, 128, refQuery+", "+refCred)
				vs = stringField(vs, af, ap, "password", false, 128, refQuery+", "+refCred)
				vs = stringField(vs, af, ap, "memo", false, 1024, refQuery)
				if m, ok := af["memo"]; ok {
					for j := 0; j < len(m); j++ {
						if m[j] >= 0x80 {
							vs = append(vs, Violation{Field: ap + "memo", Problem: "contains raw non-ASCII characters; they must be written as \\uXXXX escapes", Ref: refQuery})
							break
						}
					}
				}
			}
		} else {
			vs = append(vs, Violation{Field: p + "appInfo", Problem: "is absent: the buyer sees no usage information (allowed only when the merchant sends it by SMS or e-mail)", Optional: true, Ref: refQuery})
		}
		ur, hasUsage := f["usageInfo"]
		if hasUsage && !isNull(ur) {
			var us []json.RawMessage
			if json.Unmarshal(ur, &us) != nil {
				vs = append(vs, Violation{Field: p + "usageInfo", Problem: "must be an array of UsageInfo", Ref: refQuery})
			} else {
				if len(us) == 0 && mode == ModeOnDemand {
					vs = append(vs, Violation{Field: p + "usageInfo", Problem: "is empty: pay-per-use instances must report at least one usage entry", Ref: refQuery})
				}
				for j, u := range us {
					up := fmt.Sprintf("%susageInfo[%d].", p, j)
					var uf map[string]json.RawMessage
					if json.Unmarshal(u, &uf) != nil || uf == nil {
						vs = append(vs, Violation{Field: up[:len(up)-1], Problem: "must be an object", Ref: refQuery})
						continue
					}
					vs = stringField(vs, uf, up, "relatedInstanceId", false, 64, refQuery)
					vs = stringField(vs, uf, up, "dashboardUrl", false, 512, refQuery)
					vs = stringField(vs, uf, up, "statisticalTime", true, 20, refQuery)
					if st, ok := rawString(uf["statisticalTime"]); ok && !isUTCMillisStamp(st) {
						vs = append(vs, Violation{Field: up + "statisticalTime", Problem: fmt.Sprintf("%q is not a yyyyMMddHHmmssSSS time", st), Ref: refQuery})
					}
					vs = append(vs, usageValue(up, uf["usageValue"])...)
				}
			}
		} else if mode == ModeOnDemand {
			vs = append(vs, Violation{Field: p + "usageInfo", Problem: "is absent: pay-per-use instances must report their usage", Ref: refQuery})
		}
	}
	return vs
}

// usageValue checks a Double(12,4): a number with at most 4 decimals and
// at most 12 significant digits. A numeric string is tolerated with a warning.
func usageValue(p string, raw json.RawMessage) []Violation {
	if isNull(raw) {
		return []Violation{{Field: p + "usageValue", Problem: "mandatory field is missing", Ref: refQuery}}
	}
	text := string(raw)
	var vs []Violation
	if s, ok := rawString(raw); ok {
		vs = append(vs, Violation{Field: p + "usageValue", Problem: "is a string; the table types it Double(12,4)", Optional: true, Ref: refQuery})
		text = s
	} else if raw[0] == '{' || raw[0] == '[' || raw[0] == 't' || raw[0] == 'f' {
		return []Violation{{Field: p + "usageValue", Problem: "must be a number, got " + clip(text, 40), Ref: refQuery}}
	}
	if _, err := strconv.ParseFloat(text, 64); err != nil {
		return append(vs, Violation{Field: p + "usageValue", Problem: fmt.Sprintf("%q is not a number", text), Ref: refQuery})
	}
	intPart, frac := text, ""
	if i := bytes.IndexAny([]byte(text), ".eE"); i >= 0 {
		intPart, frac = text[:i], text[i+1:]
		if text[i] != '.' {
			return vs // exponent form: leave it
		}
	}
	if len(frac) > 4 {
		vs = append(vs, Violation{Field: p + "usageValue", Problem: fmt.Sprintf("%s has more than 4 decimals", text), Ref: refQuery})
	}
	if len(intPart) > 0 && intPart[0] == '-' {
		intPart = intPart[1:]
	}
	if len(intPart) > 8 {
		vs = append(vs, Violation{Field: p + "usageValue", Problem: fmt.Sprintf("%s exceeds Double(12,4)", text), Ref: refQuery})
	}
	return vs
}

func isUTCMillisStamp(s string) bool {
	if len(s) != 17 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	m, _ := strconv.Atoi(s[4:6])
	d, _ := strconv.Atoi(s[6:8])
	h, _ := strconv.Atoi(s[8:10])
	mi, _ := strconv.Atoi(s[10:12])
	se, _ := strconv.Atoi(s[12:14])
	return m >= 1 && m <= 12 && d >= 1 && d <= 31 && h < 24 && mi < 60 && se < 60
}
