package kit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/kg"
)

// ErrNotFound is returned by the directory reads for an unknown tenant, app,
// user or department.
var ErrNotFound = errors.New("kit: not found")

// User states.
const (
	StateAuthorized = "authorized" // authSync add (or modify)
	StateDeleted    = "deleted"    // authSync flag 0
	StateCancelled  = "cancelled"  // authSync flag 3, authorization cancelled
)

// Tenant is an enterprise bound to the merchant's app (tenantSync).
type Tenant struct {
	TenantID   string    `json:"tenantId"`
	TenantCode string    `json:"tenantCode"`
	Name       string    `json:"name"`
	DomainName string    `json:"domainName"`
	InstanceID string    `json:"instanceId"`
	OrderID    string    `json:"orderId"`
	TestFlag   bool      `json:"testFlag"`
	Deleted    bool      `json:"deleted"`
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

// App is a tenant's app credential (applicationSync). The client secret is
// never part of it; see Service.ClientCredentials.
type App struct {
	TenantID   string    `json:"tenantId"`
	AppID      string    `json:"appId"`
	ClientID   string    `json:"clientId"`
	InstanceID string    `json:"instanceId"`
	TestFlag   bool      `json:"testFlag"`
	Deleted    bool      `json:"deleted"`
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

// User is a member of a tenant as authSync last described it for an app.
// Only State == StateAuthorized && Enabled may sign in.
type User struct {
	TenantID     string    `json:"tenantId"`
	AppID        string    `json:"appId"`
	UserName     string    `json:"userName"`
	Name         string    `json:"name"`
	OrgCode      string    `json:"orgCode"`
	Position     string    `json:"position,omitempty"`
	EmployeeCode string    `json:"employeeCode,omitempty"`
	EmployeeType int       `json:"employeeType,omitempty"`
	Role         string    `json:"role"`
	Enabled      bool      `json:"enabled"`
	Mobile       string    `json:"mobile,omitempty"`
	Email        string    `json:"email,omitempty"`
	WorkPlace    string    `json:"workPlace,omitempty"`
	EntryDate    string    `json:"entryDate,omitempty"`
	State        string    `json:"state"`
	TestFlag     bool      `json:"testFlag"`
	CreatedAt    time.Time `json:"createdAt"`
	UpdatedAt    time.Time `json:"updatedAt"`
}

// Active reports whether the user may use the app: authorized and enabled.
func (u *User) Active() bool { return u.State == StateAuthorized && u.Enabled }

// Org is a department. In a tree, Children are sorted by code; a department
// whose parent is unknown is a root.
type Org struct {
	OrgCode    string `json:"orgCode"`
	OrgName    string `json:"orgName"`
	ParentCode string `json:"parentCode"`
	Children   []*Org `json:"children,omitempty"`
}

func ms(t int64) time.Time { return time.UnixMilli(t).UTC() }

type scanner interface{ Scan(dest ...any) error }

const tenantCols = `tenant_id, tenant_code, name, domain_name, instance_id, order_id, test_flag, deleted, sync_time, created_at, updated_at`

type tenantRow struct {
	Tenant
	syncTime string
}

func scanTenant(sc scanner) (*tenantRow, error) {
	var t tenantRow
	var tf, del int
	var c, u int64
	if err := sc.Scan(&t.TenantID, &t.TenantCode, &t.Name, &t.DomainName, &t.InstanceID, &t.OrderID, &tf, &del, &t.syncTime, &c, &u); err != nil {
		return nil, err
	}
	t.TestFlag, t.Deleted, t.CreatedAt, t.UpdatedAt = tf == 1, del == 1, ms(c), ms(u)
	return &t, nil
}

const appCols = `tenant_id, app_id, client_id, instance_id, test_flag, deleted, client_secret, sync_time, created_at, updated_at`

type appRow struct {
	App
	secretEnc string
	syncTime  string
}

func scanApp(sc scanner) (*appRow, error) {
	var a appRow
	var tf, del int
	var c, u int64
	if err := sc.Scan(&a.TenantID, &a.AppID, &a.ClientID, &a.InstanceID, &tf, &del, &a.secretEnc, &a.syncTime, &c, &u); err != nil {
		return nil, err
	}
	a.TestFlag, a.Deleted, a.CreatedAt, a.UpdatedAt = tf == 1, del == 1, ms(c), ms(u)
	return &a, nil
}

const userCols = `tenant_id, app_id, user_name, name, org_code, position, employee_code, employee_type, role, enabled, mobile, email, work_place, entry_date, state, test_flag, sync_time, created_at, updated_at`

type userRow struct {
	User
	syncTime string
}

func scanUser(sc scanner) (*userRow, error) {
	var u userRow
	var en, tf int
	var c, up int64
	if err := sc.Scan(&u.TenantID, &u.AppID, &u.UserName, &u.Name, &u.OrgCode, &u.Position, &u.EmployeeCode, &u.EmployeeType,
		&u.Role, &en, &u.Mobile, &u.Email, &u.WorkPlace, &u.EntryDate, &u.State, &tf, &u.syncTime, &c, &up); err != nil {
		return nil, err
	}
	u.Enabled, u.TestFlag, u.CreatedAt, u.UpdatedAt = en == 1, tf == 1, ms(c), ms(up)
	return &u, nil
}

// Tenant returns a tenant (deleted ones included; check Deleted).
func (s *Service) Tenant(ctx context.Context, testFlag bool, tenantID string) (*Tenant, error) {
	t, err := scanTenant(s.db.QueryRow(ctx, `SELECT `+tenantCols+` FROM kit_tenants WHERE test_flag = $1 AND tenant_id = $2`, db.Bool(testFlag), tenantID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("tenant %q: %w", tenantID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("kit: read tenant: %w", err)
	}
	return &t.Tenant, nil
}

// LookupTenant finds a tenant by id as a login does: the production tenant
// when there is one that is not deleted, else the debugging (testFlag 1) one.
func (s *Service) LookupTenant(ctx context.Context, tenantID string) (*Tenant, error) {
	var firstDeleted *Tenant
	for _, tf := range []bool{false, true} {
		t, err := s.Tenant(ctx, tf, tenantID)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !t.Deleted {
			return t, nil
		}
		if firstDeleted == nil {
			firstDeleted = t
		}
	}
	if firstDeleted != nil {
		return firstDeleted, nil
	}
	return nil, fmt.Errorf("tenant %q: %w", tenantID, ErrNotFound)
}

// Apps lists a tenant's apps (deleted ones included), by appId.
func (s *Service) Apps(ctx context.Context, testFlag bool, tenantID string) ([]App, error) {
	rows, err := s.db.Query(ctx, `SELECT `+appCols+` FROM kit_apps WHERE test_flag = $1 AND tenant_id = $2 ORDER BY app_id`, db.Bool(testFlag), tenantID)
	if err != nil {
		return nil, fmt.Errorf("kit: list apps: %w", err)
	}
	defer rows.Close()
	var out []App
	for rows.Next() {
		a, err := scanApp(rows)
		if err != nil {
			return nil, fmt.Errorf("kit: list apps: %w", err)
		}
		out = append(out, a.App)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("kit: list apps: %w", err)
	}
	return out, nil
}

// App returns one app credential (deleted ones included; check Deleted).
func (s *Service) App(ctx context.Context, testFlag bool, tenantID, appID string) (*App, error) {
	a, err := scanApp(s.db.QueryRow(ctx, `SELECT `+appCols+` FROM kit_apps WHERE test_flag = $1 AND tenant_id = $2 AND app_id = $3`, db.Bool(testFlag), tenantID, appID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("app %q of tenant %q: %w", appID, tenantID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("kit: read app: %w", err)
	}
	return &a.App, nil
}

// ClientCredentials returns an app's OAuth client id and plaintext client
// secret (decrypted with the merchant's private key). Never log the secret.
func (s *Service) ClientCredentials(ctx context.Context, testFlag bool, tenantID, appID string) (clientID, clientSecret string, err error) {
	a, err := scanApp(s.db.QueryRow(ctx, `SELECT `+appCols+` FROM kit_apps WHERE test_flag = $1 AND tenant_id = $2 AND app_id = $3`, db.Bool(testFlag), tenantID, appID))
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", fmt.Errorf("app %q of tenant %q: %w", appID, tenantID, ErrNotFound)
	}
	if err != nil {
		return "", "", fmt.Errorf("kit: read app: %w", err)
	}
	if a.Deleted {
		return "", "", fmt.Errorf("app %q of tenant %q is deleted: %w", appID, tenantID, ErrNotFound)
	}
	secret, _, err := kg.DecryptClientSecret(s.cfg.PrivateKey, a.secretEnc)
	if err != nil {
		return "", "", fmt.Errorf("kit: stored client secret of app %q cannot be decrypted (was the RSA key replaced?): %w", appID, err)
	}
	return a.ClientID, secret, nil
}

// User returns a member's directory entry for an app.
func (s *Service) User(ctx context.Context, testFlag bool, tenantID, appID, userName string) (*User, error) {
	u, err := scanUser(s.db.QueryRow(ctx, `SELECT `+userCols+` FROM kit_users WHERE test_flag = $1 AND tenant_id = $2 AND app_id = $3 AND user_name = $4`,
		db.Bool(testFlag), tenantID, appID, userName))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("user %q: %w", userName, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("kit: read user: %w", err)
	}
	return &u.User, nil
}

// UserFilter selects users in Users.
type UserFilter struct {
	AppID string // "" = every app
	State string // "" = every state
	Limit int    // 0 = 1000; at most 10000
	After string // userName to continue after (pagination)
}

// Users lists a tenant's members ordered by userName then appId.
func (s *Service) Users(ctx context.Context, testFlag bool, tenantID string, f UserFilter) ([]User, error) {
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	f.Limit = min(f.Limit, 10000)
	q := `SELECT ` + userCols + ` FROM kit_users WHERE test_flag = $1 AND tenant_id = $2 AND ($3 = '' OR app_id = $3) AND ($4 = '' OR state = $4) AND user_name > $5 ORDER BY user_name, app_id LIMIT $6`
	rows, err := s.db.Query(ctx, q, db.Bool(testFlag), tenantID, f.AppID, f.State, f.After, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("kit: list users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("kit: list users: %w", err)
		}
		out = append(out, u.User)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("kit: list users: %w", err)
	}
	return out, nil
}

// Orgs lists a tenant's departments flat, by code.
func (s *Service) Orgs(ctx context.Context, testFlag bool, tenantID string) ([]Org, error) {
	return listOrgs(ctx, s.db, db.Bool(testFlag), tenantID)
}

type querier interface {
	Query(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func listOrgs(ctx context.Context, q querier, tf int, tenantID string) ([]Org, error) {
	rows, err := q.Query(ctx, `SELECT org_code, org_name, parent_code FROM kit_orgs WHERE test_flag = $1 AND tenant_id = $2 ORDER BY org_code`, tf, tenantID)
	if err != nil {
		return nil, fmt.Errorf("kit: list departments: %w", err)
	}
	defer rows.Close()
	var out []Org
	for rows.Next() {
		var g Org
		if err := rows.Scan(&g.OrgCode, &g.OrgName, &g.ParentCode); err != nil {
			return nil, fmt.Errorf("kit: list departments: %w", err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("kit: list departments: %w", err)
	}
	return out, nil
}

// Org returns one department.
func (s *Service) Org(ctx context.Context, testFlag bool, tenantID, orgCode string) (*Org, error) {
	var g Org
	err := s.db.QueryRow(ctx, `SELECT org_code, org_name, parent_code FROM kit_orgs WHERE test_flag = $1 AND tenant_id = $2 AND org_code = $3`,
		db.Bool(testFlag), tenantID, orgCode).Scan(&g.OrgCode, &g.OrgName, &g.ParentCode)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("department %q: %w", orgCode, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("kit: read department: %w", err)
	}
	return &g, nil
}

// OrgTree returns a tenant's departments as a forest: departments without a
// known parent (or caught in a parent cycle) are roots.
func (s *Service) OrgTree(ctx context.Context, testFlag bool, tenantID string) ([]*Org, error) {
	flat, err := s.Orgs(ctx, testFlag, tenantID)
	if err != nil {
		return nil, err
	}
	return BuildTree(flat), nil
}

// BuildTree links a flat department list into a forest. A department whose
// parent is missing, or whose ancestry loops, becomes a root; children are
// sorted by code.
func BuildTree(flat []Org) []*Org {
	nodes := make(map[string]*Org, len(flat))
	for i := range flat {
		g := flat[i]
		g.Children = nil
		nodes[g.OrgCode] = &g
	}
	inCycle := func(code string) bool {
		seen := map[string]bool{}
		for c := code; c != ""; {
			if seen[c] {
				return true
			}
			seen[c] = true
			n, ok := nodes[c]
			if !ok {
				return false
			}
			c = n.ParentCode
		}
		return false
	}
	var roots []*Org
	codes := make([]string, 0, len(nodes))
	for c := range nodes {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	for _, c := range codes {
		n := nodes[c]
		p, ok := nodes[n.ParentCode]
		if n.ParentCode == "" || !ok || inCycle(c) {
			roots = append(roots, n)
			continue
		}
		p.Children = append(p.Children, n)
	}
	return roots
}

// execer is a transaction (or a DB): statements with $n placeholders.
type execer interface {
	Exec(ctx context.Context, query string, args ...any) (sql.Result, error)
}

var _ execer = (*db.Tx)(nil)
