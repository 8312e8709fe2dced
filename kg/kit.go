package kg

import (
	"fmt"
	"strings"
)

// Kit sync interfaces (joint-kit.md §2–5). KooGallery POSTs them to the
// production address + KitPathPrefix + name.
const (
	KitTenantSync      = "tenantSync"
	KitApplicationSync = "applicationSync"
	KitAuthSync        = "authSync"
	KitSingleOrgSync   = "singleOrgSync"
	KitAllOrgSync      = "allOrgSync"

	KitPathPrefix   = "/produceAPI/v2/"
	KitPathPrefixV1 = "/produceAPI/"
)

// Kit headers (joint-kit.md §6.1).
const (
	KitHeaderSign      = "x-sign"
	KitHeaderTimestamp = "x-timestamp"
	KitHeaderNonce     = "x-nonce"
)

// Kit result codes: the kit interfaces answer with the common SaaS codes
// (joint-kit.md §1.2): CodeSuccess, CodeAuthFailed, CodeBadParam,
// CodeInternal… A clientSecret that cannot be decrypted is answered with
// CodeBadParam (Huawei's sample uses 000101, which clashes with its
// documented create-instance meaning).
func KitCodes() []string {
	return []string{CodeSuccess, CodeAuthFailed, CodeBadParam, CodeNoInstance, CodeInProgress, CodeInternal}
}

// Kit flags.
const (
	KitFlagDelete = 0
	KitFlagAdd    = 1
	KitFlagModify = 2
	KitFlagCancel = 3 // authSync only: authorisation cancelled (取消授权)
)

// Kit user roles.
const (
	RoleUser  = "user"
	RoleAdmin = "admin"
)

// AuthSyncMaxUsers is the most users one authSync carries.
const AuthSyncMaxUsers = 500

// KitRequest is a decoded kit sync request: one of *TenantSyncRequest,
// *ApplicationSyncRequest, *AuthSyncRequest, *SingleOrgSyncRequest,
// *AllOrgSyncRequest.
type KitRequest interface {
	KitName() string // the interface name, e.g. "tenantSync"
	IsTest() bool    // testFlag 1
	Tenant() string  // tenantId
}

// KitPath returns the path of a kit interface below a production address.
func KitPath(name string) string { return KitPathPrefix + name }

func checkFlag(p string, flag int, max int) error {
	if flag < 0 || flag > max {
		return &FieldError{Field: joinPath(p, "flag"), Reason: fmt.Sprintf("%d must be between 0 and %d", flag, max)}
	}
	return nil
}

func checkKitCommon(p string, testFlag int, timeStamp string) error {
	if testFlag != 0 && testFlag != 1 {
		return &FieldError{Field: joinPath(p, "testFlag"), Reason: fmt.Sprintf("%d must be 0 or 1", testFlag)}
	}
	if _, err := ParseKitTimeStamp(strings.TrimSpace(timeStamp)); err != nil {
		return &FieldError{Field: joinPath(p, "timeStamp"), Reason: err.Error()}
	}
	return nil
}

func requireUnlessDelete(p string, flag int, fields map[string]string) error {
	if flag == KitFlagDelete {
		return nil
	}
	for _, name := range sortedKeys(fields) {
		if strings.TrimSpace(fields[name]) == "" {
			return &FieldError{Field: joinPath(p, name), Reason: fmt.Sprintf("is required when flag is %d", flag)}
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// TenantSyncRequest is tenantSync (joint-kit.md §2). InstanceID and OrderID
// are empty while the seller debugs. Flag: 0 delete, 1 add, 2 modify.
type TenantSyncRequest struct {
	DomainName string `json:"domainName" kg:"max=255"`
	Flag       int    `json:"flag" kg:"req"`
	InstanceID string `json:"instanceId" kg:"max=64"`
	Name       string `json:"name" kg:"max=255"`
	OrderID    string `json:"orderId" kg:"max=64"`
	TenantCode string `json:"tenantCode" kg:"max=64"`
	TenantID   string `json:"tenantId" kg:"req,max=64"`
	TestFlag   int    `json:"testFlag"`
	TimeStamp  string `json:"timeStamp" kg:"req,max=32"`
}

func (r *TenantSyncRequest) KitName() string { return KitTenantSync }
func (r *TenantSyncRequest) IsTest() bool    { return r.TestFlag == 1 }
func (r *TenantSyncRequest) Tenant() string  { return r.TenantID }
func (r *TenantSyncRequest) validate(p string) error {
	if err := checkFlag(p, r.Flag, KitFlagModify); err != nil {
		return err
	}
	if err := requireUnlessDelete(p, r.Flag, map[string]string{"name": r.Name, "domainName": r.DomainName}); err != nil {
		return err
	}
	if r.Flag == KitFlagAdd && strings.TrimSpace(r.TenantCode) == "" {
		return &FieldError{Field: joinPath(p, "tenantCode"), Reason: "is required when flag is 1"}
	}
	return checkKitCommon(p, r.TestFlag, r.TimeStamp)
}

// ApplicationSyncRequest is applicationSync (joint-kit.md §3). ClientSecret is
// the RSA-OAEP ciphertext; decrypt it with DecryptClientSecret.
type ApplicationSyncRequest struct {
	AppID        string `json:"appId" kg:"req,max=64"`
	ClientID     string `json:"clientId" kg:"max=64"`
	ClientSecret string `json:"clientSecret" kg:"max=4096"`
	Flag         int    `json:"flag" kg:"req"`
	InstanceID   string `json:"instanceId" kg:"max=64"`
	TenantID     string `json:"tenantId" kg:"req,max=64"`
	TestFlag     int    `json:"testFlag"`
	TimeStamp    string `json:"timeStamp" kg:"req,max=32"`
}

func (r *ApplicationSyncRequest) KitName() string { return KitApplicationSync }
func (r *ApplicationSyncRequest) IsTest() bool    { return r.TestFlag == 1 }
func (r *ApplicationSyncRequest) Tenant() string  { return r.TenantID }
func (r *ApplicationSyncRequest) validate(p string) error {
	if err := checkFlag(p, r.Flag, KitFlagModify); err != nil {
		return err
	}
	if err := requireUnlessDelete(p, r.Flag, map[string]string{"clientId": r.ClientID, "clientSecret": r.ClientSecret}); err != nil {
		return err
	}
	return checkKitCommon(p, r.TestFlag, r.TimeStamp)
}

// AuthSyncRequest is authSync (joint-kit.md §4). UserList arrives as an array
// (V2) or a string holding one (V1); at most 500 users.
// Flag: 0 delete, 1 add, 2 modify, 3 cancel authorisation.
type AuthSyncRequest struct {
	AppID           string    `json:"appId" kg:"req,max=64"`
	CurrentSyncTime string    `json:"currentSyncTime" kg:"max=20"`
	Flag            int       `json:"flag" kg:"req"`
	InstanceID      string    `json:"instanceId" kg:"max=64"`
	TenantID        string    `json:"tenantId" kg:"req,max=64"`
	TestFlag        int       `json:"testFlag"`
	TimeStamp       string    `json:"timeStamp" kg:"req,max=32"`
	UserList        []KitUser `json:"userList" kg:"req,maxitems=500"`
}

func (r *AuthSyncRequest) KitName() string { return KitAuthSync }
func (r *AuthSyncRequest) IsTest() bool    { return r.TestFlag == 1 }
func (r *AuthSyncRequest) Tenant() string  { return r.TenantID }
func (r *AuthSyncRequest) validate(p string) error {
	if err := checkFlag(p, r.Flag, KitFlagCancel); err != nil {
		return err
	}
	if len(r.UserList) == 0 {
		return &FieldError{Field: joinPath(p, "userList"), Reason: "is empty"}
	}
	for i := range r.UserList {
		up := fmt.Sprintf("%s[%d]", joinPath(p, "userList"), i)
		if err := r.UserList[i].check(up, r.Flag); err != nil {
			return err
		}
	}
	if r.CurrentSyncTime != "" {
		if _, err := ParseKitTimeStamp(r.CurrentSyncTime); err != nil {
			return &FieldError{Field: joinPath(p, "currentSyncTime"), Reason: err.Error()}
		}
	}
	return checkKitCommon(p, r.TestFlag, r.TimeStamp)
}

// KitUser is one user of authSync. Enable is normalised to "true"/"false"
// (it arrives as a string or a boolean); EntryDate, EmployeeType and
// WorkPlace are read from the top level or from the V1 extension object.
type KitUser struct {
	UserName     string            `json:"userName" kg:"req,max=64"`
	Name         string            `json:"name" kg:"max=64"`
	OrgCode      string            `json:"orgCode" kg:"max=64"`
	Position     string            `json:"position,omitempty" kg:"max=64"`
	EmployeeCode string            `json:"employeeCode,omitempty" kg:"max=64"`
	EmployeeType string            `json:"employeeType,omitempty" kg:"max=11"`
	Role         string            `json:"role" kg:"max=32"`
	Enable       string            `json:"enable" kg:"max=8"`
	Mobile       string            `json:"mobile,omitempty" kg:"max=32"`
	Email        string            `json:"email,omitempty" kg:"max=128"`
	WorkPlace    string            `json:"workPlace,omitempty" kg:"max=256"`
	EntryDate    string            `json:"entryDate,omitempty" kg:"max=32"`
	Extension    *KitUserExtension `json:"extension,omitempty"`
}

// KitUserExtension is the V1 "extension" object of a user.
type KitUserExtension struct {
	EntryDate    string `json:"entryDate,omitempty" kg:"max=32"`
	EmployeeType string `json:"employeeType,omitempty" kg:"max=11"`
	WorkPlace    string `json:"workPlace,omitempty" kg:"max=256"`
}

// Enabled reports whether the user is enabled.
func (u *KitUser) Enabled() bool { return u.Enable == "true" }

// IsAdmin reports whether the user has the admin role.
func (u *KitUser) IsAdmin() bool { return u.Role == RoleAdmin }

func (u *KitUser) check(p string, flag int) error {
	if x := u.Extension; x != nil {
		if u.EntryDate == "" {
			u.EntryDate = x.EntryDate
		}
		if u.EmployeeType == "" {
			u.EmployeeType = x.EmployeeType
		}
		if u.WorkPlace == "" {
			u.WorkPlace = x.WorkPlace
		}
	}
	addOrModify := flag == KitFlagAdd || flag == KitFlagModify
	switch e := strings.ToLower(strings.TrimSpace(u.Enable)); e {
	case "true", "false":
		u.Enable = e
	case "":
		if addOrModify {
			return &FieldError{Field: joinPath(p, "enable"), Reason: fmt.Sprintf("is required when flag is %d", flag)}
		}
	default:
		return &FieldError{Field: joinPath(p, "enable"), Reason: fmt.Sprintf("%q must be \"true\" or \"false\"", u.Enable)}
	}
	switch r := strings.ToLower(strings.TrimSpace(u.Role)); r {
	case RoleUser, RoleAdmin:
		u.Role = r
	case "":
		if addOrModify {
			return &FieldError{Field: joinPath(p, "role"), Reason: fmt.Sprintf("is required when flag is %d", flag)}
		}
	default:
		return &FieldError{Field: joinPath(p, "role"), Reason: fmt.Sprintf("%q must be user or admin", u.Role)}
	}
	if addOrModify {
		if err := requireUnlessDelete(p, flag, map[string]string{"name": u.Name, "orgCode": u.OrgCode}); err != nil {
			return err
		}
	}
	return nil
}

// SingleOrgSyncRequest is singleOrgSync (joint-kit.md §5.1). ParentCode is
// empty only for a top-level department. Flag: 0 delete, 1 add, 2 modify.
type SingleOrgSyncRequest struct {
	Flag       int    `json:"flag" kg:"req"`
	InstanceID string `json:"instanceId" kg:"max=64"`
	OrgCode    string `json:"orgCode" kg:"req,max=64"`
	OrgName    string `json:"orgName" kg:"max=128,alias=name"`
	ParentCode string `json:"parentCode" kg:"max=64"`
	TenantID   string `json:"tenantId" kg:"req,max=64"`
	TestFlag   int    `json:"testFlag"`
	TimeStamp  string `json:"timeStamp" kg:"req,max=32"`
}

func (r *SingleOrgSyncRequest) KitName() string { return KitSingleOrgSync }
func (r *SingleOrgSyncRequest) IsTest() bool    { return r.TestFlag == 1 }
func (r *SingleOrgSyncRequest) Tenant() string  { return r.TenantID }
func (r *SingleOrgSyncRequest) validate(p string) error {
	if err := checkFlag(p, r.Flag, KitFlagModify); err != nil {
		return err
	}
	if err := requireUnlessDelete(p, r.Flag, map[string]string{"orgName": r.OrgName}); err != nil {
		return err
	}
	return checkKitCommon(p, r.TestFlag, r.TimeStamp)
}

// AllOrgSyncRequest is allOrgSync (joint-kit.md §5.2): a flat list of
// departments, as an array (V2), a string holding one (even with unquoted
// keys), or V1's "orgInfo".
type AllOrgSyncRequest struct {
	Flag        *int      `json:"flag,omitempty"`
	InstanceID  string    `json:"instanceId" kg:"max=64"`
	OrgInfoList []OrgInfo `json:"orgInfoList" kg:"req,alias=orgInfo"`
	TenantID    string    `json:"tenantId" kg:"req,max=64"`
	TestFlag    int       `json:"testFlag"`
	TimeStamp   string    `json:"timeStamp" kg:"req,max=32"`
}

func (r *AllOrgSyncRequest) KitName() string { return KitAllOrgSync }
func (r *AllOrgSyncRequest) IsTest() bool    { return r.TestFlag == 1 }
func (r *AllOrgSyncRequest) Tenant() string  { return r.TenantID }
func (r *AllOrgSyncRequest) validate(p string) error {
	seen := make(map[string]bool, len(r.OrgInfoList))
	for i, o := range r.OrgInfoList {
		if seen[o.OrgCode] {
			return &FieldError{Field: fmt.Sprintf("%s[%d].orgCode", joinPath(p, "orgInfoList"), i), Reason: fmt.Sprintf("%q is listed twice", o.OrgCode)}
		}
		seen[o.OrgCode] = true
	}
	return checkKitCommon(p, r.TestFlag, r.TimeStamp)
}

// OrgInfo is one department of allOrgSync. The name is read from orgName,
// name (V1) or OrgName.
type OrgInfo struct {
	OrgCode    string `json:"orgCode" kg:"req,max=64"`
	OrgName    string `json:"orgName" kg:"req,max=128,alias=name"`
	ParentCode string `json:"parentCode" kg:"max=64"`
}

// NewKitRequest returns an empty request struct for a kit interface name, or nil.
func NewKitRequest(name string) KitRequest {
	switch name {
	case KitTenantSync:
		return &TenantSyncRequest{}
	case KitApplicationSync:
		return &ApplicationSyncRequest{}
	case KitAuthSync:
		return &AuthSyncRequest{}
	case KitSingleOrgSync:
		return &SingleOrgSyncRequest{}
	case KitAllOrgSync:
		return &AllOrgSyncRequest{}
	}
	return nil
}

// KitNameFromPath returns the kit interface a request path addresses: the
// last path segment ("/base/produceAPI/v2/authSync" → "authSync"), or "" when
// it is not a kit interface.
func KitNameFromPath(path string) string {
	path = strings.TrimRight(path, "/")
	name := path[strings.LastIndexByte(path, '/')+1:]
	if NewKitRequest(name) == nil {
		return ""
	}
	return name
}

// DecodeKitRequest decodes and validates a kit sync body for the interface
// named by path (its last segment, see KitNameFromPath). Problems are
// *FieldError naming the member (→ 000002); an unknown interface is a
// FieldError on "path".
func DecodeKitRequest(path string, body []byte) (KitRequest, error) {
	name := KitNameFromPath(path)
	if name == "" {
		if len(path) > 64 {
			path = path[:64] + "…"
		}
		return nil, &FieldError{Field: "path", Reason: fmt.Sprintf("%q is not a kit interface", path)}
	}
	req := NewKitRequest(name)
	if err := decodeLenient(body, req); err != nil {
		return nil, err
	}
	return req, nil
}

// EncodeKitRequest serializes a kit request as souk's market sends it:
// compact, top-level keys sorted (so raw and sorted x-sign readings agree).
func EncodeKitRequest(r KitRequest) ([]byte, error) {
	b, err := marshalCompact(r)
	if err != nil {
		return nil, err
	}
	return KitBody(b)
}
