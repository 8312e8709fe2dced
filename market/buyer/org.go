package buyer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/market/idp"
)

// Enterprise is a buyer's enterprise (a tenant at the merchants).
type Enterprise struct {
	ID         string    `json:"tenantId"`
	Code       string    `json:"tenantCode"`
	Name       string    `json:"name"`
	CustomerID string    `json:"customerId,omitempty"`
	DomainName string    `json:"domainName"`
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

// EnterpriseInput creates an enterprise.
type EnterpriseInput struct {
	Code       string `json:"tenantCode"` // "" = generated
	Name       string `json:"name"`
	CustomerID string `json:"customerId"`
}

// Department is a node of an enterprise's department tree.
type Department struct {
	OrgCode    string    `json:"orgCode"`
	OrgName    string    `json:"orgName"`
	ParentCode string    `json:"parentCode"`
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

// DepartmentInput creates a department.
type DepartmentInput struct {
	OrgCode    string `json:"orgCode"` // "" = generated
	OrgName    string `json:"orgName"`
	ParentCode string `json:"parentCode"`
}

// DepartmentPatch changes a department; nil fields stay.
type DepartmentPatch struct {
	OrgName    *string `json:"orgName"`
	ParentCode *string `json:"parentCode"`
}

var (
	codeRE     = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	userNameRE = regexp.MustCompile(`^[A-Za-z0-9_.@-]{1,64}$`)
)

func checkText(field, v string, max int, required bool) error {
	if required && strings.TrimSpace(v) == "" {
		return invalid(field, "is required")
	}
	if !utf8.ValidString(v) {
		return invalid(field, "is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(v); n > max {
		return invalid(field, "is longer than %d characters", max)
	}
	if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return invalid(field, "contains control characters")
	}
	return nil
}

// ---- enterprises ----

// CreateEnterprise creates an enterprise.
func (c *Center) CreateEnterprise(ctx context.Context, in EnterpriseInput) (Enterprise, error) {
	if err := checkText("name", in.Name, 255, true); err != nil {
		return Enterprise{}, err
	}
	if in.Code == "" {
		code, err := c.randomDigits(10)
		if err != nil {
			return Enterprise{}, err
		}
		in.Code = "t" + code
	}
	if !codeRE.MatchString(in.Code) {
		return Enterprise{}, invalid("tenantCode", "must be 1-64 letters, digits, '_', '.' or '-'")
	}
	id, err := c.randomHex(16)
	if err != nil {
		return Enterprise{}, err
	}
	now := c.clock.Now()
	e := Enterprise{ID: id, Code: in.Code, Name: in.Name, CustomerID: in.CustomerID, DomainName: c.domainName, CreatedAt: now.UTC(), UpdatedAt: now.UTC()}
	_, err = c.db.Exec(ctx, `INSERT INTO buyer_enterprises (id, code, name, customer_id, domain_name, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$6)`,
		e.ID, e.Code, e.Name, e.CustomerID, e.DomainName, db.Millis(now))
	if db.IsUniqueViolation(err) {
		return Enterprise{}, conflict("enterprise code %q is taken", in.Code)
	}
	if err != nil {
		return Enterprise{}, fmt.Errorf("buyer: create enterprise: %w", err)
	}
	return Enterprise{ID: e.ID, Code: e.Code, Name: e.Name, CustomerID: e.CustomerID, DomainName: e.DomainName,
		CreatedAt: db.FromMillis(db.Millis(now)), UpdatedAt: db.FromMillis(db.Millis(now))}, nil
}

type queryRower interface {
	QueryRow(ctx context.Context, query string, args ...any) *sql.Row
}

func getEnterprise(ctx context.Context, q queryRower, id string) (Enterprise, error) {
	var e Enterprise
	var created, updated int64
	err := q.QueryRow(ctx, `SELECT id, code, name, customer_id, domain_name, created_at, updated_at FROM buyer_enterprises WHERE id = $1`, id).
		Scan(&e.ID, &e.Code, &e.Name, &e.CustomerID, &e.DomainName, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return Enterprise{}, notFound("enterprise %q not found", id)
	}
	if err != nil {
		return Enterprise{}, fmt.Errorf("buyer: enterprise: %w", err)
	}
	e.CreatedAt, e.UpdatedAt = db.FromMillis(created), db.FromMillis(updated)
	return e, nil
}

// Enterprise returns an enterprise.
func (c *Center) Enterprise(ctx context.Context, id string) (Enterprise, error) {
	return getEnterprise(ctx, c.db, id)
}

// Enterprises lists enterprises (of one customer unless customerID is "").
func (c *Center) Enterprises(ctx context.Context, customerID string) ([]Enterprise, error) {
	rows, err := c.db.Query(ctx, `SELECT id, code, name, customer_id, domain_name, created_at, updated_at FROM buyer_enterprises
		WHERE $1 = '' OR customer_id = $1 ORDER BY created_at, id`, customerID)
	if err != nil {
		return nil, fmt.Errorf("buyer: enterprises: %w", err)
	}
	defer rows.Close()
	out := []Enterprise{}
	for rows.Next() {
		var e Enterprise
		var created, updated int64
		if err := rows.Scan(&e.ID, &e.Code, &e.Name, &e.CustomerID, &e.DomainName, &created, &updated); err != nil {
			return nil, fmt.Errorf("buyer: enterprises: %w", err)
		}
		e.CreatedAt, e.UpdatedAt = db.FromMillis(created), db.FromMillis(updated)
		out = append(out, e)
	}
	return out, rows.Err()
}

// RenameEnterprise changes the enterprise's name (tenantSync flag 2 to every bound app).
func (c *Center) RenameEnterprise(ctx context.Context, id, name string) (Enterprise, []Message, error) {
	if err := checkText("name", name, 255, true); err != nil {
		return Enterprise{}, nil, err
	}
	var e Enterprise
	msgs, err := c.change(ctx, id, func(ctx context.Context, tx *db.Tx, now time.Time, o *outbox) error {
		if _, err := tx.Exec(ctx, `UPDATE buyer_enterprises SET name = $1, updated_at = $2 WHERE id = $3`, name, db.Millis(now), id); err != nil {
			return fmt.Errorf("buyer: rename enterprise: %w", err)
		}
		var err error
		if e, err = getEnterprise(ctx, tx, id); err != nil {
			return err
		}
		bs, err := bindingRefs(ctx, tx, id)
		if err != nil {
			return err
		}
		for _, b := range bs {
			if err := o.tenantSync(ctx, b, e, FlagModify); err != nil {
				return err
			}
		}
		return nil
	})
	return e, msgs, err
}

// ---- departments ----

func loadDepartments(ctx context.Context, tx *db.Tx, enterpriseID string) ([]Department, error) {
	rows, err := tx.Query(ctx, `SELECT org_code, org_name, parent_code, created_at, updated_at FROM buyer_departments WHERE enterprise_id = $1 ORDER BY org_code`, enterpriseID)
	if err != nil {
		return nil, fmt.Errorf("buyer: departments: %w", err)
	}
	defer rows.Close()
	out := []Department{}
	for rows.Next() {
		var d Department
		var created, updated int64
		if err := rows.Scan(&d.OrgCode, &d.OrgName, &d.ParentCode, &created, &updated); err != nil {
			return nil, fmt.Errorf("buyer: departments: %w", err)
		}
		d.CreatedAt, d.UpdatedAt = db.FromMillis(created), db.FromMillis(updated)
		out = append(out, d)
	}
	return out, rows.Err()
}

// DepartmentNode is a department with its sub-departments.
type DepartmentNode struct {
	Department
	Children []*DepartmentNode `json:"children,omitempty"`
}

// DepartmentTree nests a flat department list (children sorted by code).
// A department whose parent is not in the list is a root.
func DepartmentTree(ds []Department) []*DepartmentNode {
	nodes := make(map[string]*DepartmentNode, len(ds))
	for _, d := range ds {
		nodes[d.OrgCode] = &DepartmentNode{Department: d}
	}
	roots := []*DepartmentNode{}
	for _, d := range ds { // ds is sorted by code, so children come out sorted
		n := nodes[d.OrgCode]
		if p, ok := nodes[d.ParentCode]; ok && d.ParentCode != d.OrgCode {
			p.Children = append(p.Children, n)
		} else {
			roots = append(roots, n)
		}
	}
	return roots
}

// Departments lists the enterprise's departments (a flat list; parentCode
// links the tree, "" at the top).
func (c *Center) Departments(ctx context.Context, enterpriseID string) ([]Department, error) {
	var out []Department
	err := c.db.TxOptions(ctx, &sql.TxOptions{ReadOnly: true}, func(tx *db.Tx) error {
		if _, err := getEnterprise(ctx, tx, enterpriseID); err != nil {
			return err
		}
		var err error
		out, err = loadDepartments(ctx, tx, enterpriseID)
		return err
	})
	return out, err
}

func getDepartment(ctx context.Context, tx *db.Tx, enterpriseID, code string) (Department, error) {
	var d Department
	var created, updated int64
	err := tx.QueryRow(ctx, `SELECT org_code, org_name, parent_code, created_at, updated_at FROM buyer_departments WHERE enterprise_id = $1 AND org_code = $2`,
		enterpriseID, code).Scan(&d.OrgCode, &d.OrgName, &d.ParentCode, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return Department{}, notFound("department %q not found", code)
	}
	if err != nil {
		return Department{}, fmt.Errorf("buyer: department: %w", err)
	}
	d.CreatedAt, d.UpdatedAt = db.FromMillis(created), db.FromMillis(updated)
	return d, nil
}

// CreateDepartment adds a department (singleOrgSync flag 1 to every bound app).
func (c *Center) CreateDepartment(ctx context.Context, enterpriseID string, in DepartmentInput) (Department, []Message, error) {
	if err := checkText("orgName", in.OrgName, 128, true); err != nil {
		return Department{}, nil, err
	}
	if in.OrgCode == "" {
		code, err := c.randomDigits(9)
		if err != nil {
			return Department{}, nil, err
		}
		in.OrgCode = code
	}
	if !codeRE.MatchString(in.OrgCode) {
		return Department{}, nil, invalid("orgCode", "must be 1-64 letters, digits, '_', '.' or '-'")
	}
	var d Department
	msgs, err := c.change(ctx, enterpriseID, func(ctx context.Context, tx *db.Tx, now time.Time, o *outbox) error {
		if _, err := getEnterprise(ctx, tx, enterpriseID); err != nil {
			return err
		}
		if in.ParentCode != "" {
			if _, err := getDepartment(ctx, tx, enterpriseID, in.ParentCode); err != nil {
				if IsNotFound(err) {
					return invalid("parentCode", "department %q does not exist", in.ParentCode)
				}
				return err
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO buyer_departments (enterprise_id, org_code, org_name, parent_code, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$5)`,
			enterpriseID, in.OrgCode, in.OrgName, in.ParentCode, db.Millis(now))
		if db.IsUniqueViolation(err) {
			return conflict("a department with code %q, or named %q under the same parent, exists", in.OrgCode, in.OrgName)
		}
		if err != nil {
			return fmt.Errorf("buyer: create department: %w", err)
		}
		d = Department{OrgCode: in.OrgCode, OrgName: in.OrgName, ParentCode: in.ParentCode, CreatedAt: db.FromMillis(db.Millis(now)), UpdatedAt: db.FromMillis(db.Millis(now))}
		bs, err := bindingRefs(ctx, tx, enterpriseID)
		if err != nil {
			return err
		}
		for _, b := range bs {
			if err := o.singleOrgSync(ctx, b, d, FlagAdd); err != nil {
				return err
			}
		}
		return nil
	})
	return d, msgs, err
}

// UpdateDepartment renames and/or moves a department (singleOrgSync flag 2;
// authSync for members whose authorization changes with the move).
func (c *Center) UpdateDepartment(ctx context.Context, enterpriseID, code string, p DepartmentPatch) (Department, []Message, error) {
	if p.OrgName != nil {
		if err := checkText("orgName", *p.OrgName, 128, true); err != nil {
			return Department{}, nil, err
		}
	}
	var d Department
	msgs, err := c.change(ctx, enterpriseID, func(ctx context.Context, tx *db.Tx, now time.Time, o *outbox) error {
		var err error
		if d, err = getDepartment(ctx, tx, enterpriseID, code); err != nil {
			return err
		}
		if p.OrgName != nil {
			d.OrgName = *p.OrgName
		}
		if p.ParentCode != nil && *p.ParentCode != d.ParentCode {
			all, err := loadDepartments(ctx, tx, enterpriseID)
			if err != nil {
				return err
			}
			parent := map[string]string{}
			for _, x := range all {
				parent[x.OrgCode] = x.ParentCode
			}
			np := *p.ParentCode
			if np != "" {
				if _, ok := parent[np]; !ok {
					return invalid("parentCode", "department %q does not exist", np)
				}
				for cur, n := np, 0; cur != "" && n <= len(all); cur, n = parent[cur], n+1 {
					if cur == code {
						return invalid("parentCode", "a department cannot move under itself or its sub-departments")
					}
				}
			}
			d.ParentCode = np
		}
		_, err = tx.Exec(ctx, `UPDATE buyer_departments SET org_name = $1, parent_code = $2, updated_at = $3 WHERE enterprise_id = $4 AND org_code = $5`,
			d.OrgName, d.ParentCode, db.Millis(now), enterpriseID, code)
		if db.IsUniqueViolation(err) {
			return conflict("a department named %q exists under the same parent", d.OrgName)
		}
		if err != nil {
			return fmt.Errorf("buyer: update department: %w", err)
		}
		d.UpdatedAt = db.FromMillis(db.Millis(now))
		bs, err := bindingRefs(ctx, tx, enterpriseID)
		if err != nil {
			return err
		}
		for _, b := range bs {
			if err := o.singleOrgSync(ctx, b, d, FlagModify); err != nil {
				return err
			}
		}
		return c.reconcile(ctx, tx, o, enterpriseID)
	})
	return d, msgs, err
}

// DeleteDepartment deletes an empty department (no members, no
// sub-departments), as the buyer console requires (singleOrgSync flag 0).
func (c *Center) DeleteDepartment(ctx context.Context, enterpriseID, code string) ([]Message, error) {
	return c.change(ctx, enterpriseID, func(ctx context.Context, tx *db.Tx, now time.Time, o *outbox) error {
		d, err := getDepartment(ctx, tx, enterpriseID, code)
		if err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT (SELECT COUNT(*) FROM buyer_members WHERE enterprise_id = $1 AND org_code = $2) +
			(SELECT COUNT(*) FROM buyer_departments WHERE enterprise_id = $1 AND parent_code = $2)`, enterpriseID, code).Scan(&n); err != nil {
			return fmt.Errorf("buyer: delete department: %w", err)
		}
		if n > 0 {
			return conflict("department %q still has members or sub-departments", code)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM buyer_grants WHERE kind = 'department' AND subject = $1 AND binding_id IN
			(SELECT id FROM buyer_bindings WHERE enterprise_id = $2)`, code, enterpriseID); err != nil {
			return fmt.Errorf("buyer: delete department grants: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM buyer_departments WHERE enterprise_id = $1 AND org_code = $2`, enterpriseID, code); err != nil {
			return fmt.Errorf("buyer: delete department: %w", err)
		}
		bs, err := bindingRefs(ctx, tx, enterpriseID)
		if err != nil {
			return err
		}
		for _, b := range bs {
			if err := o.singleOrgSync(ctx, b, d, FlagDelete); err != nil {
				return err
			}
		}
		return nil
	})
}

// ---- members ----

// Member is a member of an enterprise.
type Member struct {
	ID           string    `json:"id"`
	EnterpriseID string    `json:"tenantId"`
	UserName     string    `json:"userName"`
	Name         string    `json:"name"`
	OrgCode      string    `json:"orgCode"`
	Role         string    `json:"role"`
	Enabled      bool      `json:"enabled"`
	Position     string    `json:"position,omitempty"`
	EmployeeCode string    `json:"employeeCode,omitempty"`
	EmployeeType int       `json:"employeeType,omitempty"`
	Mobile       string    `json:"mobile,omitempty"`
	Email        string    `json:"email,omitempty"`
	WorkPlace    string    `json:"workPlace,omitempty"`
	EntryDate    string    `json:"entryDate,omitempty"`
	HasPassword  bool      `json:"hasPassword"`
	CreatedAt    time.Time `json:"createdAt"`
	UpdatedAt    time.Time `json:"updatedAt"`

	passwordHash string
	epoch        int64
}

// MemberInput creates a member.
type MemberInput struct {
	UserName     string `json:"userName"`
	Name         string `json:"name"`
	OrgCode      string `json:"orgCode"`
	Role         string `json:"role"` // user (default) | admin
	Disabled     bool   `json:"disabled"`
	Position     string `json:"position"`
	EmployeeCode string `json:"employeeCode"`
	EmployeeType int    `json:"employeeType"`
	Mobile       string `json:"mobile"`
	Email        string `json:"email"`
	WorkPlace    string `json:"workPlace"`
	EntryDate    string `json:"entryDate"`
	Password     string `json:"password"` // "" = cannot sign in until one is set
}

// MemberPatch changes a member; nil fields stay. The user name cannot change
// (it is the merchant's key for the user).
type MemberPatch struct {
	Name         *string `json:"name"`
	OrgCode      *string `json:"orgCode"`
	Role         *string `json:"role"`
	Position     *string `json:"position"`
	EmployeeCode *string `json:"employeeCode"`
	EmployeeType *int    `json:"employeeType"`
	Mobile       *string `json:"mobile"`
	Email        *string `json:"email"`
	WorkPlace    *string `json:"workPlace"`
	EntryDate    *string `json:"entryDate"`
	Password     *string `json:"password"`
}

// MinPasswordLen is the shortest member password accepted.
const MinPasswordLen = 8

func checkMember(prefix string, m *Member) error {
	if !userNameRE.MatchString(m.UserName) {
		return invalid(prefix+"userName", "must be 1-64 letters, digits, '_', '.', '@' or '-'")
	}
	if err := checkText(prefix+"name", m.Name, 64, true); err != nil {
		return err
	}
	if m.OrgCode == "" {
		return invalid(prefix+"orgCode", "is required")
	}
	if m.Role == "" {
		m.Role = "user"
	}
	if m.Role != "user" && m.Role != "admin" {
		return invalid(prefix+"role", "must be user or admin")
	}
	if m.EmployeeType < 0 || m.EmployeeType > 4 {
		return invalid(prefix+"employeeType", "must be 1 regular, 2 intern, 3 dispatched, 4 outsourced (or 0 unset)")
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"position", m.Position, 64}, {"employeeCode", m.EmployeeCode, 64}, {"mobile", m.Mobile, 32}, {"email", m.Email, 128},
		{"workPlace", m.WorkPlace, 128}, {"entryDate", m.EntryDate, 32}} {
		if err := checkText(prefix+f.name, f.v, f.max, false); err != nil {
			return err
		}
	}
	if m.Email != "" && !strings.Contains(m.Email, "@") {
		return invalid(prefix+"email", "is not an e-mail address")
	}
	return nil
}

func checkPassword(field, pw string) error {
	if utf8.RuneCountInString(pw) < MinPasswordLen {
		return invalid(field, "must have at least %d characters", MinPasswordLen)
	}
	if len(pw) > 1024 {
		return invalid(field, "is too long")
	}
	return nil
}

const memberCols = `id, enterprise_id, user_name, name, org_code, role, enabled, position, employee_code, employee_type, mobile, email,
	work_place, entry_date, password_hash, epoch, created_at, updated_at`

func scanMember(s scanner) (Member, error) {
	var m Member
	var enabled int
	var created, updated int64
	if err := s.Scan(&m.ID, &m.EnterpriseID, &m.UserName, &m.Name, &m.OrgCode, &m.Role, &enabled, &m.Position, &m.EmployeeCode,
		&m.EmployeeType, &m.Mobile, &m.Email, &m.WorkPlace, &m.EntryDate, &m.passwordHash, &m.epoch, &created, &updated); err != nil {
		return Member{}, err
	}
	m.Enabled, m.HasPassword = enabled == 1, m.passwordHash != ""
	m.CreatedAt, m.UpdatedAt = db.FromMillis(created), db.FromMillis(updated)
	return m, nil
}

type querier interface {
	Query(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func loadMembers(ctx context.Context, q querier, enterpriseID string) ([]Member, error) {
	rows, err := q.Query(ctx, `SELECT `+memberCols+` FROM buyer_members WHERE enterprise_id = $1 ORDER BY user_name`, enterpriseID)
	if err != nil {
		return nil, fmt.Errorf("buyer: members: %w", err)
	}
	defer rows.Close()
	out := []Member{}
	for rows.Next() {
		m, err := scanMember(rows)
		if err != nil {
			return nil, fmt.Errorf("buyer: members: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// Members lists the enterprise's members.
func (c *Center) Members(ctx context.Context, enterpriseID string) ([]Member, error) {
	if _, err := getEnterprise(ctx, c.db, enterpriseID); err != nil {
		return nil, err
	}
	return loadMembers(ctx, c.db, enterpriseID)
}

func getMember(ctx context.Context, q queryRower, enterpriseID, id string) (Member, error) {
	m, err := scanMember(q.QueryRow(ctx, `SELECT `+memberCols+` FROM buyer_members WHERE id = $1 AND enterprise_id = $2`, id, enterpriseID))
	if errors.Is(err, sql.ErrNoRows) {
		return Member{}, notFound("member %q not found", id)
	}
	if err != nil {
		return Member{}, fmt.Errorf("buyer: member: %w", err)
	}
	return m, nil
}

// Member returns a member of the enterprise.
func (c *Center) Member(ctx context.Context, enterpriseID, id string) (Member, error) {
	return getMember(ctx, c.db, enterpriseID, id)
}

// CreateMembers adds members, all or none (authSync add for those that fall
// under an authorized department).
func (c *Center) CreateMembers(ctx context.Context, enterpriseID string, in []MemberInput) ([]Member, []Message, error) {
	if len(in) == 0 {
		return nil, nil, invalid("members", "is empty")
	}
	if len(in) > maxBatch {
		return nil, nil, invalid("members", "has more than %d entries", maxBatch)
	}
	list := make([]Member, len(in))
	seen := map[string]bool{}
	for i, x := range in {
		p := fmt.Sprintf("members[%d].", i)
		m := Member{UserName: x.UserName, Name: x.Name, OrgCode: x.OrgCode, Role: x.Role, Enabled: !x.Disabled, Position: x.Position,
			EmployeeCode: x.EmployeeCode, EmployeeType: x.EmployeeType, Mobile: x.Mobile, Email: x.Email, WorkPlace: x.WorkPlace, EntryDate: x.EntryDate}
		if err := checkMember(p, &m); err != nil {
			return nil, nil, err
		}
		if seen[m.UserName] {
			return nil, nil, invalid(p+"userName", "%q appears twice", m.UserName)
		}
		seen[m.UserName] = true
		if x.Password != "" {
			if err := checkPassword(p+"password", x.Password); err != nil {
				return nil, nil, err
			}
		}
		list[i] = m
	}
	// Hash outside the transaction: argon2id is deliberately slow.
	for i, x := range in {
		if x.Password == "" {
			continue
		}
		h, err := idp.HashPassword(x.Password, c.password)
		if err != nil {
			return nil, nil, fmt.Errorf("buyer: %w", err)
		}
		list[i].passwordHash, list[i].HasPassword = h, true
	}
	for i := range list {
		id, err := c.randomHex(16)
		if err != nil {
			return nil, nil, err
		}
		list[i].ID, list[i].EnterpriseID = id, enterpriseID
	}
	msgs, err := c.change(ctx, enterpriseID, func(ctx context.Context, tx *db.Tx, now time.Time, o *outbox) error {
		if _, err := getEnterprise(ctx, tx, enterpriseID); err != nil {
			return err
		}
		for i := range list {
			m := &list[i]
			if _, err := getDepartment(ctx, tx, enterpriseID, m.OrgCode); err != nil {
				if IsNotFound(err) {
					return invalid(fmt.Sprintf("members[%d].orgCode", i), "department %q does not exist", m.OrgCode)
				}
				return err
			}
			m.CreatedAt, m.UpdatedAt = db.FromMillis(ms64(now)), db.FromMillis(ms64(now))
			_, err := tx.Exec(ctx, `INSERT INTO buyer_members (`+memberCols+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,0,$16,$16)`,
				m.ID, enterpriseID, m.UserName, m.Name, m.OrgCode, m.Role, db.Bool(m.Enabled), m.Position, m.EmployeeCode, m.EmployeeType,
				m.Mobile, m.Email, m.WorkPlace, m.EntryDate, m.passwordHash, ms64(now))
			if db.IsUniqueViolation(err) {
				return conflict("user name %q is taken in this enterprise", m.UserName)
			}
			if err != nil {
				return fmt.Errorf("buyer: create member: %w", err)
			}
		}
		return c.reconcile(ctx, tx, o, enterpriseID)
	})
	if err != nil {
		return nil, nil, err
	}
	return list, msgs, nil
}

func ms64(t time.Time) int64 { return t.UnixMilli() }

// UpdateMember changes a member (authSync modify to the apps it is authorized for).
func (c *Center) UpdateMember(ctx context.Context, enterpriseID, id string, p MemberPatch) (Member, []Message, error) {
	hash := ""
	if p.Password != nil {
		if err := checkPassword("password", *p.Password); err != nil {
			return Member{}, nil, err
		}
		h, err := idp.HashPassword(*p.Password, c.password)
		if err != nil {
			return Member{}, nil, fmt.Errorf("buyer: %w", err)
		}
		hash = h
	}
	var m Member
	msgs, err := c.change(ctx, enterpriseID, func(ctx context.Context, tx *db.Tx, now time.Time, o *outbox) error {
		var err error
		if m, err = getMember(ctx, tx, enterpriseID, id); err != nil {
			return err
		}
		set := func(dst *string, v *string) {
			if v != nil {
				*dst = *v
			}
		}
		set(&m.Name, p.Name)
		set(&m.OrgCode, p.OrgCode)
		set(&m.Role, p.Role)
		set(&m.Position, p.Position)
		set(&m.EmployeeCode, p.EmployeeCode)
		set(&m.Mobile, p.Mobile)
		set(&m.Email, p.Email)
		set(&m.WorkPlace, p.WorkPlace)
		set(&m.EntryDate, p.EntryDate)
		if p.EmployeeType != nil {
			m.EmployeeType = *p.EmployeeType
		}
		if hash != "" {
			m.passwordHash, m.HasPassword = hash, true
			m.epoch++ // a new password ends existing sign-ins
		}
		if err := checkMember("", &m); err != nil {
			return err
		}
		if p.OrgCode != nil {
			if _, err := getDepartment(ctx, tx, enterpriseID, m.OrgCode); err != nil {
				if IsNotFound(err) {
					return invalid("orgCode", "department %q does not exist", m.OrgCode)
				}
				return err
			}
		}
		m.UpdatedAt = db.FromMillis(ms64(now))
		if _, err := tx.Exec(ctx, `UPDATE buyer_members SET name = $1, org_code = $2, role = $3, position = $4, employee_code = $5, employee_type = $6,
			mobile = $7, email = $8, work_place = $9, entry_date = $10, password_hash = $11, epoch = $12, updated_at = $13
			WHERE id = $14 AND enterprise_id = $15`,
			m.Name, m.OrgCode, m.Role, m.Position, m.EmployeeCode, m.EmployeeType, m.Mobile, m.Email, m.WorkPlace, m.EntryDate, m.passwordHash,
			m.epoch, ms64(now), id, enterpriseID); err != nil {
			return fmt.Errorf("buyer: update member: %w", err)
		}
		return c.reconcile(ctx, tx, o, enterpriseID)
	})
	return m, msgs, err
}

func checkIDs(ids []string) error {
	if len(ids) == 0 {
		return invalid("ids", "is empty")
	}
	if len(ids) > maxBatch {
		return invalid("ids", "has more than %d entries", maxBatch)
	}
	return nil
}

// SetMembersEnabled enables or disables members (authSync modify with
// enable "true"/"false" to the apps they are authorized for). A disabled
// member can no longer sign in, and its tokens stop working.
func (c *Center) SetMembersEnabled(ctx context.Context, enterpriseID string, ids []string, enabled bool) ([]Message, error) {
	if err := checkIDs(ids); err != nil {
		return nil, err
	}
	return c.change(ctx, enterpriseID, func(ctx context.Context, tx *db.Tx, now time.Time, o *outbox) error {
		for _, id := range dedupe(ids) {
			// Disabling ends the member's sign-ins for good: re-enabling does
			// not revive sessions or tokens issued before.
			res, err := tx.Exec(ctx, `UPDATE buyer_members SET enabled = $1, updated_at = $2,
				epoch = CASE WHEN $1 = 0 AND enabled = 1 THEN epoch + 1 ELSE epoch END WHERE id = $3 AND enterprise_id = $4`,
				db.Bool(enabled), ms64(now), id, enterpriseID)
			if err != nil {
				return fmt.Errorf("buyer: enable member: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return notFound("member %q not found", id)
			}
		}
		return c.reconcile(ctx, tx, o, enterpriseID)
	})
}

// DeleteMembers deletes members (authSync delete to the apps they were
// authorized for).
func (c *Center) DeleteMembers(ctx context.Context, enterpriseID string, ids []string) ([]Message, error) {
	if err := checkIDs(ids); err != nil {
		return nil, err
	}
	return c.change(ctx, enterpriseID, func(ctx context.Context, tx *db.Tx, now time.Time, o *outbox) error {
		for _, id := range dedupe(ids) {
			if _, err := tx.Exec(ctx, `DELETE FROM buyer_grants WHERE kind = 'member' AND subject = $1`, id); err != nil {
				return fmt.Errorf("buyer: delete member grants: %w", err)
			}
			res, err := tx.Exec(ctx, `DELETE FROM buyer_members WHERE id = $1 AND enterprise_id = $2`, id, enterpriseID)
			if err != nil {
				return fmt.Errorf("buyer: delete member: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return notFound("member %q not found", id)
			}
		}
		return c.reconcile(ctx, tx, o, enterpriseID)
	})
}

func dedupe(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}
