package kit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/soukhq/souk/kg"
)

// Flags of the kit sync interfaces (joint-kit.md §2–§5, V2).
const (
	FlagDelete = 0 // delete (tenant, app, user, department)
	FlagAdd    = 1 // add
	FlagModify = 2 // modify
	FlagCancel = 3 // authSync only: cancel the authorization (取消授权)
)

// MaxUsersPerSync is the documented maximum of users in one authSync call.
const MaxUsersPerSync = 500

// maxOrgsPerSync bounds allOrgSync lists; not documented, it only guards memory.
const maxOrgsPerSync = 100000

// Common carries the fields every kit request has.
type Common struct {
	InstanceID string // empty while the seller debugs
	OrderID    string
	TenantID   string
	TestFlag   bool   // testFlag 1: debugging data (absent means 0)
	TimeStamp  string // yyyyMMddHHmmssSSS, UTC+8, as sent
}

// TenantSync is a decoded tenantSync request.
type TenantSync struct {
	Common
	TenantCode string
	Name       string
	DomainName string
	Flag       int // 0 delete, 1 add, 2 modify
}

// ApplicationSync is a decoded applicationSync request. ClientSecret is the
// Base64 RSA-OAEP ciphertext as received.
type ApplicationSync struct {
	Common
	AppID        string
	ClientID     string
	ClientSecret string
	Flag         int
}

// SyncUser is one entry of authSync's userList.
type SyncUser struct {
	UserName     string `json:"userName"`
	Name         string `json:"name"`
	OrgCode      string `json:"orgCode"`
	Position     string `json:"position,omitempty"`
	EmployeeCode string `json:"employeeCode,omitempty"`
	EmployeeType int    `json:"employeeType,omitempty"` // 1 regular, 2 intern, 3 dispatched, 4 outsourced; 0 unknown
	Role         string `json:"role"`                   // "user" or "admin"
	Enabled      bool   `json:"enabled"`
	Mobile       string `json:"mobile,omitempty"`
	Email        string `json:"email,omitempty"`
	WorkPlace    string `json:"workPlace,omitempty"`
	EntryDate    string `json:"entryDate,omitempty"`
}

// AuthSync is a decoded authSync request.
type AuthSync struct {
	Common
	AppID           string
	Users           []SyncUser
	CurrentSyncTime string
	Flag            int // 0 delete, 1 add, 2 modify, 3 cancel authorization
}

// OrgInfo is one department.
type OrgInfo struct {
	OrgCode    string `json:"orgCode"`
	OrgName    string `json:"orgName"`
	ParentCode string `json:"parentCode"` // empty for a top department
}

// SingleOrgSync is a decoded singleOrgSync request.
type SingleOrgSync struct {
	Common
	OrgInfo
	Flag int // 0 delete, 1 add, 2 modify
}

// AllOrgSync is a decoded allOrgSync request: the full, flat department list.
type AllOrgSync struct {
	Common
	Orgs []OrgInfo
}

// object is a JSON object decoded leniently: member lookup is exact first,
// then case-insensitive (one V2 mirror shows "OrgName").
type object map[string]json.RawMessage

func parseObject(data []byte, field string) (object, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		if field == "" {
			return nil, &kg.FieldError{Field: "body", Reason: "must be a JSON object"}
		}
		return nil, &kg.FieldError{Field: field, Reason: "must be a JSON object"}
	}
	var o object
	if err := json.Unmarshal(data, &o); err != nil {
		if field == "" {
			field = "body"
		}
		return nil, &kg.FieldError{Field: field, Reason: "malformed JSON: " + jsonErrText(err)}
	}
	return o, nil
}

func jsonErrText(err error) string {
	s := err.Error()
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

func (o object) raw(names ...string) (json.RawMessage, string, bool) {
	for _, n := range names {
		if v, ok := o[n]; ok && !isNull(v) {
			return v, n, true
		}
	}
	for _, n := range names {
		for k, v := range o {
			if strings.EqualFold(k, n) && !isNull(v) {
				return v, k, true
			}
		}
	}
	return nil, names[0], false
}

func isNull(v json.RawMessage) bool {
	return string(bytes.TrimSpace(v)) == "null"
}

// str reads a string member; numbers and booleans are accepted as their text
// (policy 7). Absent or null is "".
func (o object) str(prefix string, names ...string) (string, error) {
	v, _, ok := o.raw(names...)
	if !ok {
		return "", nil
	}
	return scalarText(v, prefix+names[0])
}

func scalarText(v json.RawMessage, field string) (string, error) {
	v = bytes.TrimSpace(v)
	switch {
	case len(v) == 0:
		return "", nil
	case v[0] == '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", &kg.FieldError{Field: field, Reason: "malformed string"}
		}
		return s, nil
	case v[0] == '-' || (v[0] >= '0' && v[0] <= '9'):
		var n json.Number
		if err := json.Unmarshal(v, &n); err != nil {
			return "", &kg.FieldError{Field: field, Reason: "malformed number"}
		}
		return n.String(), nil
	case string(v) == "true" || string(v) == "false":
		return string(v), nil
	}
	return "", &kg.FieldError{Field: field, Reason: "must be a string"}
}

// integer reads an integer member given as a JSON number or a string of
// digits. present is false when the member is absent, null or "".
func (o object) integer(prefix string, names ...string) (n int, present bool, err error) {
	s, err := o.str(prefix, names...)
	if err != nil {
		return 0, false, &kg.FieldError{Field: prefix + names[0], Reason: "must be an integer"}
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false, nil
	}
	n, err = strconv.Atoi(s)
	if err != nil {
		// 1.0 from a float-minded encoder
		if f, ferr := strconv.ParseFloat(s, 64); ferr == nil && f == float64(int(f)) {
			return int(f), true, nil
		}
		return 0, false, &kg.FieldError{Field: prefix + names[0], Reason: fmt.Sprintf("must be an integer, got %q", truncate(s, 20))}
	}
	return n, true, nil
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

// checkLen enforces the documented maximum length (in characters).
func checkLen(field, v string, max int) error {
	if !utf8.ValidString(v) {
		return &kg.FieldError{Field: field, Reason: "must be valid UTF-8"}
	}
	if strings.IndexByte(v, 0) >= 0 { // valid UTF-8, but no PostgreSQL text can hold it
		return &kg.FieldError{Field: field, Reason: `contains a NUL character (\u0000)`}
	}
	if n := utf8.RuneCountInString(v); n > max {
		return &kg.FieldError{Field: field, Reason: fmt.Sprintf("is %d characters, at most %d allowed", n, max)}
	}
	return nil
}

func required(field, v string) error {
	if strings.TrimSpace(v) == "" {
		return &kg.FieldError{Field: field, Reason: "is required"}
	}
	return nil
}

func decodeCommon(o object) (Common, error) {
	var c Common
	var err error
	if c.InstanceID, err = o.str("", "instanceId"); err != nil {
		return c, err
	}
	if c.OrderID, err = o.str("", "orderId"); err != nil {
		return c, err
	}
	if c.TenantID, err = o.str("", "tenantId"); err != nil {
		return c, err
	}
	if c.TimeStamp, err = o.str("", "timeStamp"); err != nil {
		return c, err
	}
	tf, present, err := o.integer("", "testFlag")
	if err != nil {
		return c, err
	}
	if present && tf != 0 && tf != 1 {
		return c, &kg.FieldError{Field: "testFlag", Reason: fmt.Sprintf("must be 0 or 1, got %d", tf)}
	}
	c.TestFlag = tf == 1
	for _, f := range []struct {
		name, v string
		max     int
	}{{"instanceId", c.InstanceID, 64}, {"orderId", c.OrderID, 64}, {"tenantId", c.TenantID, 64}, {"timeStamp", c.TimeStamp, 32}} {
		if err := checkLen(f.name, f.v, f.max); err != nil {
			return c, err
		}
	}
	if err := required("tenantId", c.TenantID); err != nil {
		return c, err
	}
	return c, nil
}

func decodeFlag(o object, max int) (int, error) {
	f, present, err := o.integer("", "flag")
	if err != nil {
		return 0, err
	}
	if !present {
		return 0, &kg.FieldError{Field: "flag", Reason: "is required"}
	}
	if f < 0 || f > max {
		return 0, &kg.FieldError{Field: "flag", Reason: fmt.Sprintf("must be between 0 and %d, got %d", max, f)}
	}
	return f, nil
}

// DecodeTenantSync decodes and validates a tenantSync body. Errors are
// *kg.FieldError naming the field.
func DecodeTenantSync(body []byte) (*TenantSync, error) {
	o, err := parseObject(body, "")
	if err != nil {
		return nil, err
	}
	r := &TenantSync{}
	if r.Common, err = decodeCommon(o); err != nil {
		return nil, err
	}
	if r.Flag, err = decodeFlag(o, FlagModify); err != nil {
		return nil, err
	}
	if r.TenantCode, err = o.str("", "tenantCode"); err != nil {
		return nil, err
	}
	if r.Name, err = o.str("", "name"); err != nil {
		return nil, err
	}
	if r.DomainName, err = o.str("", "domainName"); err != nil {
		return nil, err
	}
	r.DomainName = strings.TrimRight(strings.TrimSpace(r.DomainName), "/")
	for _, f := range []struct {
		name, v string
		max     int
	}{{"tenantCode", r.TenantCode, 64}, {"name", r.Name, 255}, {"domainName", r.DomainName, 255}} {
		if err := checkLen(f.name, f.v, f.max); err != nil {
			return nil, err
		}
	}
	if r.Flag == FlagDelete {
		return r, nil // a delete needs only the tenant
	}
	if r.Flag == FlagAdd {
		if err := required("tenantCode", r.TenantCode); err != nil {
			return nil, err
		}
	}
	if err := required("name", r.Name); err != nil {
		return nil, err
	}
	if err := required("domainName", r.DomainName); err != nil {
		return nil, err
	}
	if err := checkDomain(r.DomainName); err != nil {
		return nil, err
	}
	return r, nil
}

// checkDomain requires an absolute http(s) URL without query or fragment:
// the base of the tenant's OAuth endpoints.
func checkDomain(d string) error {
	u, err := url.Parse(d)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return &kg.FieldError{Field: "domainName", Reason: "must be an absolute http(s) URL such as https://example.tenantaccount.com"}
	}
	return nil
}

// DecodeApplicationSync decodes and validates an applicationSync body.
func DecodeApplicationSync(body []byte) (*ApplicationSync, error) {
	o, err := parseObject(body, "")
	if err != nil {
		return nil, err
	}
	r := &ApplicationSync{}
	if r.Common, err = decodeCommon(o); err != nil {
		return nil, err
	}
	if r.Flag, err = decodeFlag(o, FlagModify); err != nil {
		return nil, err
	}
	if r.AppID, err = o.str("", "appId"); err != nil {
		return nil, err
	}
	if r.ClientID, err = o.str("", "clientId"); err != nil {
		return nil, err
	}
	if r.ClientSecret, err = o.str("", "clientSecret"); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"appId", r.AppID, 64}, {"clientId", r.ClientID, 64}, {"clientSecret", r.ClientSecret, 4096}} {
		if err := checkLen(f.name, f.v, f.max); err != nil {
			return nil, err
		}
	}
	if err := required("appId", r.AppID); err != nil {
		return nil, err
	}
	if r.Flag == FlagDelete {
		return r, nil
	}
	if err := required("clientId", r.ClientID); err != nil {
		return nil, err
	}
	if err := required("clientSecret", r.ClientSecret); err != nil {
		return nil, err
	}
	return r, nil
}

// DecodeAuthSync decodes and validates an authSync body. userList may be a
// JSON array (V2) or a string holding one (V1); enable may be "true"/"false"
// or a boolean; entryDate, employeeType and workPlace may sit at the top of a
// user or inside its "extension" object.
func DecodeAuthSync(body []byte) (*AuthSync, error) {
	o, err := parseObject(body, "")
	if err != nil {
		return nil, err
	}
	r := &AuthSync{}
	if r.Common, err = decodeCommon(o); err != nil {
		return nil, err
	}
	if r.Flag, err = decodeFlag(o, FlagCancel); err != nil {
		return nil, err
	}
	if r.AppID, err = o.str("", "appId"); err != nil {
		return nil, err
	}
	if err := checkLen("appId", r.AppID, 64); err != nil {
		return nil, err
	}
	if err := required("appId", r.AppID); err != nil {
		return nil, err
	}
	if r.CurrentSyncTime, err = o.str("", "currentSyncTime"); err != nil {
		return nil, err
	}
	if err := checkLen("currentSyncTime", r.CurrentSyncTime, 32); err != nil {
		return nil, err
	}
	raw, _, ok := o.raw("userList")
	if !ok {
		return nil, &kg.FieldError{Field: "userList", Reason: "is required"}
	}
	items, err := arrayOrString(raw, "userList", false)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, &kg.FieldError{Field: "userList", Reason: "must not be empty"}
	}
	if len(items) > MaxUsersPerSync {
		return nil, &kg.FieldError{Field: "userList", Reason: fmt.Sprintf("has %d users, at most %d allowed", len(items), MaxUsersPerSync)}
	}
	seen := make(map[string]int, len(items))
	for i, it := range items {
		u, err := decodeUser(it, fmt.Sprintf("userList[%d].", i), r.Flag)
		if err != nil {
			return nil, err
		}
		if j, dup := seen[u.UserName]; dup {
			r.Users[j] = u // the last entry for a userName wins
			continue
		}
		seen[u.UserName] = len(r.Users)
		r.Users = append(r.Users, u)
	}
	return r, nil
}

func decodeUser(data json.RawMessage, prefix string, flag int) (SyncUser, error) {
	var u SyncUser
	o, err := parseObject(data, strings.TrimSuffix(prefix, "."))
	if err != nil {
		return u, err
	}
	var ext object
	if raw, _, ok := o.raw("extension"); ok {
		items := bytes.TrimSpace(raw)
		if len(items) > 0 && items[0] == '"' { // an extension sent as a JSON string
			var s string
			if json.Unmarshal(items, &s) == nil {
				items = []byte(s)
			}
		}
		if ext, err = parseObject(items, prefix+"extension"); err != nil {
			return u, err
		}
	}
	fields := []struct {
		dst  *string
		name string
		max  int
		ext  bool
	}{
		{&u.UserName, "userName", 64, false},
		{&u.Name, "name", 64, false},
		{&u.OrgCode, "orgCode", 64, false},
		{&u.Position, "position", 64, false},
		{&u.EmployeeCode, "employeeCode", 64, false},
		{&u.Mobile, "mobile", 32, false},
		{&u.Email, "email", 128, false},
		{&u.WorkPlace, "workPlace", 255, true},
		{&u.EntryDate, "entryDate", 32, true},
	}
	for _, f := range fields {
		v, err := o.str(prefix, f.name)
		if err != nil {
			return u, err
		}
		if v == "" && f.ext && ext != nil {
			if v, err = ext.str(prefix+"extension.", f.name); err != nil {
				return u, err
			}
		}
		if err := checkLen(prefix+f.name, v, f.max); err != nil {
			return u, err
		}
		*f.dst = v
	}
	if err := required(prefix+"userName", u.UserName); err != nil {
		return u, err
	}
	et, present, err := o.integer(prefix, "employeeType")
	if err != nil {
		return u, err
	}
	if !present && ext != nil {
		if et, present, err = ext.integer(prefix+"extension.", "employeeType"); err != nil {
			return u, err
		}
	}
	if present && (et < 0 || et > 99) {
		return u, &kg.FieldError{Field: prefix + "employeeType", Reason: fmt.Sprintf("must be 1..4, got %d", et)}
	}
	u.EmployeeType = et
	role, err := o.str(prefix, "role")
	if err != nil {
		return u, err
	}
	role = strings.ToLower(strings.TrimSpace(role))
	enable, err := o.str(prefix, "enable", "enabled")
	if err != nil {
		return u, err
	}
	enable = strings.ToLower(strings.TrimSpace(enable))
	if flag == FlagDelete || flag == FlagCancel {
		// only the userName identifies the user; other fields are kept if valid
		if role != "user" && role != "admin" {
			role = ""
		}
		u.Role, u.Enabled = role, enable != "false"
		return u, nil
	}
	if err := required(prefix+"name", u.Name); err != nil {
		return u, err
	}
	switch role {
	case "user", "admin":
		u.Role = role
	case "":
		return u, &kg.FieldError{Field: prefix + "role", Reason: "is required (user or admin)"}
	default:
		return u, &kg.FieldError{Field: prefix + "role", Reason: fmt.Sprintf("must be user or admin, got %q", truncate(role, 32))}
	}
	switch enable {
	case "true", "1":
		u.Enabled = true
	case "false", "0":
		u.Enabled = false
	case "":
		return u, &kg.FieldError{Field: prefix + "enable", Reason: `is required ("true" or "false")`}
	default:
		return u, &kg.FieldError{Field: prefix + "enable", Reason: fmt.Sprintf(`must be "true" or "false", got %q`, truncate(enable, 16))}
	}
	return u, nil
}

// arrayOrString returns the elements of a JSON array given directly or as a
// JSON string holding one. With lenientKeys, a string whose object keys are
// unquoted (the V2 allOrgSync example) is accepted too.
func arrayOrString(raw json.RawMessage, field string, lenientKeys bool) ([]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, &kg.FieldError{Field: field, Reason: "malformed string"}
		}
		raw = bytes.TrimSpace([]byte(s))
		if len(raw) == 0 {
			return nil, nil
		}
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err == nil {
			return items, nil
		}
		if lenientKeys {
			fixed, ok := quoteBareKeys(raw)
			if ok {
				if err := json.Unmarshal(fixed, &items); err == nil {
					return items, nil
				}
			}
		}
		return nil, &kg.FieldError{Field: field, Reason: "string does not hold a JSON array"}
	}
	if len(raw) == 0 || raw[0] != '[' {
		return nil, &kg.FieldError{Field: field, Reason: "must be an array"}
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, &kg.FieldError{Field: field, Reason: "malformed array: " + jsonErrText(err)}
	}
	return items, nil
}

// quoteBareKeys rewrites `{orgCode:"1", orgName:'x'}`-style text into JSON:
// bare identifiers in key position get double quotes; single-quoted strings
// become double-quoted. ok is false when the text cannot be rewritten.
func quoteBareKeys(in []byte) ([]byte, bool) {
	var out bytes.Buffer
	out.Grow(len(in) + len(in)/4)
	expectKey := false
	for i := 0; i < len(in); i++ {
		c := in[i]
		switch {
		case c == '"' || c == '\'':
			// copy a string literal, converting single quotes
			quote := c
			out.WriteByte('"')
			i++
			for ; i < len(in); i++ {
				ch := in[i]
				if ch == '\\' && i+1 < len(in) {
					out.WriteByte(ch)
					out.WriteByte(in[i+1])
					i++
					continue
				}
				if ch == quote {
					break
				}
				if ch == '"' && quote == '\'' {
					out.WriteString(`\"`)
					continue
				}
				out.WriteByte(ch)
			}
			if i >= len(in) {
				return nil, false
			}
			out.WriteByte('"')
			expectKey = false
		case c == '{' || c == ',':
			out.WriteByte(c)
			expectKey = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			out.WriteByte(c)
		case expectKey && isIdentByte(c):
			j := i
			for j < len(in) && isIdentByte(in[j]) {
				j++
			}
			out.WriteByte('"')
			out.Write(in[i:j])
			out.WriteByte('"')
			i = j - 1
			expectKey = false
		default:
			out.WriteByte(c)
			expectKey = false
		}
	}
	return out.Bytes(), true
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '$' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

func decodeOrg(o object, prefix string, needName bool) (OrgInfo, error) {
	var g OrgInfo
	var err error
	if g.OrgCode, err = o.str(prefix, "orgCode"); err != nil {
		return g, err
	}
	if g.OrgName, err = o.str(prefix, "orgName", "name"); err != nil {
		return g, err
	}
	if g.ParentCode, err = o.str(prefix, "parentCode"); err != nil {
		return g, err
	}
	g.OrgCode = strings.TrimSpace(g.OrgCode)
	g.ParentCode = strings.TrimSpace(g.ParentCode)
	for _, f := range []struct {
		name, v string
		max     int
	}{{"orgCode", g.OrgCode, 64}, {"orgName", g.OrgName, 128}, {"parentCode", g.ParentCode, 64}} {
		if err := checkLen(prefix+f.name, f.v, f.max); err != nil {
			return g, err
		}
	}
	if err := required(prefix+"orgCode", g.OrgCode); err != nil {
		return g, err
	}
	if needName {
		if err := required(prefix+"orgName", g.OrgName); err != nil {
			return g, err
		}
	}
	if g.ParentCode == g.OrgCode {
		g.ParentCode = "" // a department cannot be its own parent
	}
	return g, nil
}

// DecodeSingleOrgSync decodes and validates a singleOrgSync body.
func DecodeSingleOrgSync(body []byte) (*SingleOrgSync, error) {
	o, err := parseObject(body, "")
	if err != nil {
		return nil, err
	}
	r := &SingleOrgSync{}
	if r.Common, err = decodeCommon(o); err != nil {
		return nil, err
	}
	if r.Flag, err = decodeFlag(o, FlagModify); err != nil {
		return nil, err
	}
	if r.OrgInfo, err = decodeOrg(o, "", r.Flag != FlagDelete); err != nil {
		return nil, err
	}
	return r, nil
}

// DecodeAllOrgSync decodes and validates an allOrgSync body. The list may be
// orgInfoList (V2) or orgInfo (V1), an array or a string holding one (keys
// possibly unquoted); a department's name may be orgName, name or OrgName.
func DecodeAllOrgSync(body []byte) (*AllOrgSync, error) {
	o, err := parseObject(body, "")
	if err != nil {
		return nil, err
	}
	r := &AllOrgSync{}
	if r.Common, err = decodeCommon(o); err != nil {
		return nil, err
	}
	raw, name, ok := o.raw("orgInfoList", "orgInfo")
	if !ok {
		return nil, &kg.FieldError{Field: "orgInfoList", Reason: "is required"}
	}
	items, err := arrayOrString(raw, name, true)
	if err != nil {
		return nil, err
	}
	if len(items) > maxOrgsPerSync {
		return nil, &kg.FieldError{Field: name, Reason: fmt.Sprintf("has %d departments, at most %d allowed", len(items), maxOrgsPerSync)}
	}
	seen := make(map[string]int, len(items))
	for i, it := range items {
		prefix := fmt.Sprintf("%s[%d].", name, i)
		io, err := parseObject(it, strings.TrimSuffix(prefix, "."))
		if err != nil {
			return nil, err
		}
		g, err := decodeOrg(io, prefix, true)
		if err != nil {
			return nil, err
		}
		if j, dup := seen[g.OrgCode]; dup {
			r.Orgs[j] = g
			continue
		}
		seen[g.OrgCode] = len(r.Orgs)
		r.Orgs = append(r.Orgs, g)
	}
	return r, nil
}
