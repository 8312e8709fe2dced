package buyer

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/market/idp"
)

// Binding is a purchased joint-operation app bound to an enterprise. It is
// the IdP's OAuth2 client for the enterprise's members.
type Binding struct {
	ID           string    `json:"id"`
	EnterpriseID string    `json:"tenantId"`
	InstanceID   string    `json:"instanceId"`
	OrderID      string    `json:"orderId,omitempty"`
	SellerID     string    `json:"sellerId,omitempty"`
	AppID        string    `json:"appId"`
	ClientID     string    `json:"clientId"`
	RedirectURIs []string  `json:"redirectUris"`
	TestFlag     bool      `json:"testFlag"`
	Enabled      bool      `json:"enabled"`
	CreatedAt    time.Time `json:"createdAt"`
	UpdatedAt    time.Time `json:"updatedAt"`

	secretHash, secretEnc string
}

func (b Binding) ref() bindingRef {
	return bindingRef{ID: b.ID, EnterpriseID: b.EnterpriseID, InstanceID: b.InstanceID, OrderID: b.OrderID, SellerID: b.SellerID, AppID: b.AppID, TestFlag: b.TestFlag}
}

const bindingCols = `id, enterprise_id, instance_id, order_id, seller_id, app_id, client_id, client_secret_hash, client_secret_enc, redirect_uris,
	test_flag, enabled, created_at, updated_at`

func scanBinding(s scanner) (Binding, error) {
	var b Binding
	var uris string
	var test, enabled int
	var created, updated int64
	if err := s.Scan(&b.ID, &b.EnterpriseID, &b.InstanceID, &b.OrderID, &b.SellerID, &b.AppID, &b.ClientID, &b.secretHash, &b.secretEnc,
		&uris, &test, &enabled, &created, &updated); err != nil {
		return Binding{}, err
	}
	if err := json.Unmarshal([]byte(uris), &b.RedirectURIs); err != nil {
		return Binding{}, fmt.Errorf("redirect_uris: %w", err)
	}
	b.TestFlag, b.Enabled = test == 1, enabled == 1
	b.CreatedAt, b.UpdatedAt = db.FromMillis(created), db.FromMillis(updated)
	return b, nil
}

func loadBindings(ctx context.Context, q querier, enterpriseID string) ([]Binding, error) {
	rows, err := q.Query(ctx, `SELECT `+bindingCols+` FROM buyer_bindings WHERE enterprise_id = $1 ORDER BY created_at, id`, enterpriseID)
	if err != nil {
		return nil, fmt.Errorf("buyer: bindings: %w", err)
	}
	defer rows.Close()
	out := []Binding{}
	for rows.Next() {
		b, err := scanBinding(rows)
		if err != nil {
			return nil, fmt.Errorf("buyer: bindings: %w", err)
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

func bindingRefs(ctx context.Context, tx *db.Tx, enterpriseID string) ([]bindingRef, error) {
	bs, err := loadBindings(ctx, tx, enterpriseID)
	if err != nil {
		return nil, err
	}
	out := make([]bindingRef, len(bs))
	for i, b := range bs {
		out[i] = b.ref()
	}
	return out, nil
}

func getBinding(ctx context.Context, q queryRower, enterpriseID, id string) (Binding, error) {
	b, err := scanBinding(q.QueryRow(ctx, `SELECT `+bindingCols+` FROM buyer_bindings WHERE id = $1 AND enterprise_id = $2`, id, enterpriseID))
	if errors.Is(err, sql.ErrNoRows) {
		return Binding{}, notFound("app binding %q not found", id)
	}
	if err != nil {
		return Binding{}, fmt.Errorf("buyer: binding: %w", err)
	}
	return b, nil
}

// Bindings lists the apps bound to the enterprise.
func (c *Center) Bindings(ctx context.Context, enterpriseID string) ([]Binding, error) {
	if _, err := getEnterprise(ctx, c.db, enterpriseID); err != nil {
		return nil, err
	}
	return loadBindings(ctx, c.db, enterpriseID)
}

// Binding returns one app binding of the enterprise.
func (c *Center) Binding(ctx context.Context, enterpriseID, id string) (Binding, error) {
	return getBinding(ctx, c.db, enterpriseID, id)
}

// BindApp binds a purchased joint-operation app (by instance) to the
// enterprise: a new OAuth2 client is created and the merchant receives
// tenantSync (add), applicationSync (add; clientSecret RSA-OAEP-encrypted to
// the seller's public key) and allOrgSync, in that order.
func (c *Center) BindApp(ctx context.Context, enterpriseID, instanceID string) (Binding, []Message, error) {
	if instanceID == "" {
		return Binding{}, nil, invalid("instanceId", "is required")
	}
	ent, err := getEnterprise(ctx, c.db, enterpriseID)
	if err != nil {
		return Binding{}, nil, err
	}
	app, err := c.catalog.App(ctx, instanceID)
	if errors.Is(err, ErrNoApp) {
		return Binding{}, nil, invalid("instanceId", "%s is not a purchased joint-operation app", instanceID)
	}
	if err != nil {
		return Binding{}, nil, fmt.Errorf("buyer: resolve %s: %w", instanceID, err)
	}
	if ent.CustomerID != "" && app.CustomerID != "" && ent.CustomerID != app.CustomerID {
		return Binding{}, nil, invalid("instanceId", "the instance belongs to another customer")
	}
	if app.AppID == "" {
		return Binding{}, nil, invalid("instanceId", "the product has no app credential (appId)")
	}
	if len(app.RedirectURIs) == 0 {
		return Binding{}, nil, invalid("instanceId", "the app credential has no login address")
	}
	pub, err := kg.ParsePublicKey(app.PublicKey)
	if err != nil {
		return Binding{}, nil, invalid("instanceId", "the seller's public key is unusable: %v", err)
	}
	if pub.N.BitLen() < MinRSABits {
		return Binding{}, nil, invalid("instanceId", "the seller's public key has %d bits; KooGallery requires at least %d", pub.N.BitLen(), MinRSABits)
	}
	secret, err := idp.NewSecret()
	if err != nil {
		return Binding{}, nil, err
	}
	enc, err := kg.EncryptClientSecret(pub, secret, c.rand)
	if err != nil {
		return Binding{}, nil, fmt.Errorf("buyer: encrypt client secret: %w", err)
	}
	id, err := c.randomHex(12)
	if err != nil {
		return Binding{}, nil, err
	}
	cid, err := c.randomHex(16)
	if err != nil {
		return Binding{}, nil, err
	}
	uris, _ := json.Marshal(app.RedirectURIs)
	b := Binding{ID: id, EnterpriseID: enterpriseID, InstanceID: instanceID, OrderID: app.OrderID, SellerID: app.SellerID, AppID: app.AppID,
		ClientID: cid, RedirectURIs: app.RedirectURIs, TestFlag: app.TestFlag, Enabled: true, secretHash: idp.HashSecret(secret), secretEnc: enc}
	msgs, err := c.change(ctx, enterpriseID, func(ctx context.Context, tx *db.Tx, now time.Time, o *outbox) error {
		e, err := getEnterprise(ctx, tx, enterpriseID)
		if err != nil {
			return err
		}
		b.CreatedAt, b.UpdatedAt = db.FromMillis(db.Millis(now)), db.FromMillis(db.Millis(now))
		_, err = tx.Exec(ctx, `INSERT INTO buyer_bindings (`+bindingCols+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,1,$12,$12)`,
			b.ID, b.EnterpriseID, b.InstanceID, b.OrderID, b.SellerID, b.AppID, b.ClientID, b.secretHash, b.secretEnc, string(uris), db.Bool(b.TestFlag), db.Millis(now))
		if db.IsUniqueViolation(err) {
			return conflict("instance %s is already bound, or app %s is already bound to this enterprise", instanceID, app.AppID)
		}
		if err != nil {
			return fmt.Errorf("buyer: bind: %w", err)
		}
		deps, err := loadDepartments(ctx, tx, enterpriseID)
		if err != nil {
			return err
		}
		orgs := make([]OrgInfo, len(deps))
		for i, d := range deps {
			orgs[i] = OrgInfo{OrgCode: d.OrgCode, OrgName: d.OrgName, ParentCode: d.ParentCode}
		}
		r := b.ref()
		if err := o.tenantSync(ctx, r, e, FlagAdd); err != nil {
			return err
		}
		if err := o.applicationSync(ctx, r, b.ClientID, b.secretEnc, FlagAdd); err != nil {
			return err
		}
		return o.allOrgSync(ctx, r, orgs)
	})
	if err != nil {
		return Binding{}, nil, err
	}
	c.log.InfoContext(ctx, "buyer: app bound", "tenant", enterpriseID, "instance", instanceID, "app", app.AppID, "binding", b.ID)
	return b, msgs, nil
}

// UnbindApp removes a binding: the merchant receives authSync delete for the
// authorized users, then applicationSync and tenantSync delete; the client
// and every token issued to it stop working.
func (c *Center) UnbindApp(ctx context.Context, enterpriseID, bindingID string) ([]Message, error) {
	return c.change(ctx, enterpriseID, func(ctx context.Context, tx *db.Tx, now time.Time, o *outbox) error {
		b, err := getBinding(ctx, tx, enterpriseID, bindingID)
		if err != nil {
			return err
		}
		e, err := getEnterprise(ctx, tx, enterpriseID)
		if err != nil {
			return err
		}
		cur, err := loadAppUsers(ctx, tx, b.ID)
		if err != nil {
			return err
		}
		users := make([]KitUser, 0, len(cur))
		for _, u := range cur {
			users = append(users, u)
		}
		sortUsers(users)
		r := b.ref()
		if err := o.authSync(ctx, r, users, FlagDelete); err != nil {
			return err
		}
		if err := o.applicationSync(ctx, r, b.ClientID, b.secretEnc, FlagDelete); err != nil {
			return err
		}
		if err := o.tenantSync(ctx, r, e, FlagDelete); err != nil {
			return err
		}
		for _, q := range []string{`DELETE FROM buyer_app_users WHERE binding_id = $1`, `DELETE FROM buyer_grants WHERE binding_id = $1`,
			`DELETE FROM buyer_bindings WHERE id = $1`} {
			if _, err := tx.Exec(ctx, q, b.ID); err != nil {
				return fmt.Errorf("buyer: unbind: %w", err)
			}
		}
		return nil
	})
}

// SetAppEnabled starts or stops a bound app (应用启停). KooGallery documents
// no kit call for it; a stopped app's members cannot sign in to it and its
// tokens stop working.
func (c *Center) SetAppEnabled(ctx context.Context, enterpriseID, bindingID string, enabled bool) (Binding, error) {
	res, err := c.db.Exec(ctx, `UPDATE buyer_bindings SET enabled = $1, updated_at = $2 WHERE id = $3 AND enterprise_id = $4`,
		db.Bool(enabled), db.Millis(c.clock.Now()), bindingID, enterpriseID)
	if err != nil {
		return Binding{}, fmt.Errorf("buyer: enable app: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Binding{}, notFound("app binding %q not found", bindingID)
	}
	return getBinding(ctx, c.db, enterpriseID, bindingID)
}

// ---- authorization ----

// Subjects are members and departments (with their sub-departments) an app
// is authorized for.
type Subjects struct {
	Members     []string `json:"members"`
	Departments []string `json:"departments"`
}

// Grants returns what the binding is authorized for.
func (c *Center) Grants(ctx context.Context, enterpriseID, bindingID string) (Subjects, error) {
	if _, err := getBinding(ctx, c.db, enterpriseID, bindingID); err != nil {
		return Subjects{}, err
	}
	rows, err := c.db.Query(ctx, `SELECT kind, subject FROM buyer_grants WHERE binding_id = $1 ORDER BY kind, subject`, bindingID)
	if err != nil {
		return Subjects{}, fmt.Errorf("buyer: grants: %w", err)
	}
	defer rows.Close()
	s := Subjects{Members: []string{}, Departments: []string{}}
	for rows.Next() {
		var kind, subj string
		if err := rows.Scan(&kind, &subj); err != nil {
			return Subjects{}, fmt.Errorf("buyer: grants: %w", err)
		}
		if kind == "member" {
			s.Members = append(s.Members, subj)
		} else {
			s.Departments = append(s.Departments, subj)
		}
	}
	return s, rows.Err()
}

// Authorize authorizes members and/or whole departments for a bound app
// (authSync add for the users that gain access).
func (c *Center) Authorize(ctx context.Context, enterpriseID, bindingID string, s Subjects) ([]Message, error) {
	if len(s.Members)+len(s.Departments) == 0 {
		return nil, invalid("members", "name at least one member or department")
	}
	return c.change(ctx, enterpriseID, func(ctx context.Context, tx *db.Tx, now time.Time, o *outbox) error {
		if _, err := getBinding(ctx, tx, enterpriseID, bindingID); err != nil {
			return err
		}
		for i, id := range s.Members {
			if _, err := getMember(ctx, tx, enterpriseID, id); err != nil {
				if IsNotFound(err) {
					return invalid(fmt.Sprintf("members[%d]", i), "member %q does not exist", id)
				}
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO buyer_grants (binding_id, kind, subject, created_at) VALUES ($1,'member',$2,$3) ON CONFLICT DO NOTHING`,
				bindingID, id, db.Millis(now)); err != nil {
				return fmt.Errorf("buyer: grant: %w", err)
			}
		}
		for i, code := range s.Departments {
			if _, err := getDepartment(ctx, tx, enterpriseID, code); err != nil {
				if IsNotFound(err) {
					return invalid(fmt.Sprintf("departments[%d]", i), "department %q does not exist", code)
				}
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO buyer_grants (binding_id, kind, subject, created_at) VALUES ($1,'department',$2,$3) ON CONFLICT DO NOTHING`,
				bindingID, code, db.Millis(now)); err != nil {
				return fmt.Errorf("buyer: grant: %w", err)
			}
		}
		return c.reconcile(ctx, tx, o, enterpriseID)
	})
}

// Deauthorize cancels authorizations (取消授权: authSync flag 3 for the
// users that lose access).
func (c *Center) Deauthorize(ctx context.Context, enterpriseID, bindingID string, s Subjects) ([]Message, error) {
	if len(s.Members)+len(s.Departments) == 0 {
		return nil, invalid("members", "name at least one member or department")
	}
	return c.change(ctx, enterpriseID, func(ctx context.Context, tx *db.Tx, now time.Time, o *outbox) error {
		if _, err := getBinding(ctx, tx, enterpriseID, bindingID); err != nil {
			return err
		}
		for _, id := range s.Members {
			if _, err := tx.Exec(ctx, `DELETE FROM buyer_grants WHERE binding_id = $1 AND kind = 'member' AND subject = $2`, bindingID, id); err != nil {
				return fmt.Errorf("buyer: revoke grant: %w", err)
			}
		}
		for _, code := range s.Departments {
			if _, err := tx.Exec(ctx, `DELETE FROM buyer_grants WHERE binding_id = $1 AND kind = 'department' AND subject = $2`, bindingID, code); err != nil {
				return fmt.Errorf("buyer: revoke grant: %w", err)
			}
		}
		return c.reconcile(ctx, tx, o, enterpriseID)
	})
}

// AppUsers returns the users authorized for a bound app, as last sent to the merchant.
func (c *Center) AppUsers(ctx context.Context, enterpriseID, bindingID string) ([]KitUser, error) {
	if _, err := getBinding(ctx, c.db, enterpriseID, bindingID); err != nil {
		return nil, err
	}
	cur, err := loadAppUsers(ctx, c.db, bindingID)
	if err != nil {
		return nil, err
	}
	out := make([]KitUser, 0, len(cur))
	for _, u := range cur {
		out = append(out, u)
	}
	sortUsers(out)
	return out, nil
}

func loadAppUsers(ctx context.Context, q querier, bindingID string) (map[string]KitUser, error) {
	rows, err := q.Query(ctx, `SELECT member_id, user_json FROM buyer_app_users WHERE binding_id = $1`, bindingID)
	if err != nil {
		return nil, fmt.Errorf("buyer: app users: %w", err)
	}
	defer rows.Close()
	out := map[string]KitUser{}
	for rows.Next() {
		var id, js string
		if err := rows.Scan(&id, &js); err != nil {
			return nil, fmt.Errorf("buyer: app users: %w", err)
		}
		var u KitUser
		if err := json.Unmarshal([]byte(js), &u); err != nil {
			return nil, fmt.Errorf("buyer: app user %s: %w", id, err)
		}
		out[id] = u
	}
	return out, rows.Err()
}

func sortUsers(us []KitUser) {
	sort.Slice(us, func(i, j int) bool { return us[i].UserName < us[j].UserName })
}

func kitUser(m Member) KitUser {
	enable := "false"
	if m.Enabled {
		enable = "true"
	}
	return KitUser{UserName: m.UserName, Name: m.Name, OrgCode: m.OrgCode, Position: m.Position, EmployeeCode: m.EmployeeCode,
		EmployeeType: m.EmployeeType, Role: m.Role, Enable: enable, Mobile: m.Mobile, Email: m.Email, WorkPlace: m.WorkPlace, EntryDate: m.EntryDate}
}

// reconcile brings every binding's authorized-user view in line with the
// grants, members and department tree, and queues the authSync calls that
// tell the merchant: add (1) for users gaining access, modify (2) for
// authorized users whose data or enabled state changed, cancel (3) for
// users losing access, delete (0) for deleted members.
func (c *Center) reconcile(ctx context.Context, tx *db.Tx, o *outbox, enterpriseID string) error {
	bindings, err := loadBindings(ctx, tx, enterpriseID)
	if err != nil || len(bindings) == 0 {
		return err
	}
	members, err := loadMembers(ctx, tx, enterpriseID)
	if err != nil {
		return err
	}
	deps, err := loadDepartments(ctx, tx, enterpriseID)
	if err != nil {
		return err
	}
	parent := make(map[string]string, len(deps))
	for _, d := range deps {
		parent[d.OrgCode] = d.ParentCode
	}
	byID := make(map[string]Member, len(members))
	for _, m := range members {
		byID[m.ID] = m
	}
	for _, b := range bindings {
		grants := map[string]bool{} // "m:"+id, "d:"+code
		rows, err := tx.Query(ctx, `SELECT kind, subject FROM buyer_grants WHERE binding_id = $1`, b.ID)
		if err != nil {
			return fmt.Errorf("buyer: grants: %w", err)
		}
		for rows.Next() {
			var kind, subj string
			if err := rows.Scan(&kind, &subj); err != nil {
				rows.Close()
				return fmt.Errorf("buyer: grants: %w", err)
			}
			grants[kind[:1]+":"+subj] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("buyer: grants: %w", err)
		}
		underGrant := func(org string) bool {
			for n := 0; org != "" && n <= len(deps); org, n = parent[org], n+1 {
				if grants["d:"+org] {
					return true
				}
			}
			return false
		}
		desired := map[string]KitUser{}
		for _, m := range members {
			if grants["m:"+m.ID] || underGrant(m.OrgCode) {
				desired[m.ID] = kitUser(m)
			}
		}
		current, err := loadAppUsers(ctx, tx, b.ID)
		if err != nil {
			return err
		}
		var adds, mods, cancels, dels []KitUser
		now := db.Millis(o.now)
		for id, u := range desired {
			old, had := current[id]
			if had && old == u {
				continue
			}
			js, _ := json.Marshal(u)
			if _, err := tx.Exec(ctx, `INSERT INTO buyer_app_users (binding_id, member_id, user_json, updated_at) VALUES ($1,$2,$3,$4)
				ON CONFLICT (binding_id, member_id) DO UPDATE SET user_json = excluded.user_json, updated_at = excluded.updated_at`,
				b.ID, id, string(js), now); err != nil {
				return fmt.Errorf("buyer: app user: %w", err)
			}
			if had {
				mods = append(mods, u)
			} else {
				adds = append(adds, u)
			}
		}
		for id, u := range current {
			if _, ok := desired[id]; ok {
				continue
			}
			if _, err := tx.Exec(ctx, `DELETE FROM buyer_app_users WHERE binding_id = $1 AND member_id = $2`, b.ID, id); err != nil {
				return fmt.Errorf("buyer: app user: %w", err)
			}
			if _, exists := byID[id]; exists {
				cancels = append(cancels, u)
			} else {
				dels = append(dels, u)
			}
		}
		r := b.ref()
		for _, x := range []struct {
			users []KitUser
			flag  int
		}{{adds, FlagAdd}, {mods, FlagModify}, {cancels, FlagCancel}, {dels, FlagDelete}} {
			sortUsers(x.users)
			if err := o.authSync(ctx, r, x.users, x.flag); err != nil {
				return err
			}
		}
	}
	return nil
}

// containsOrigin reports whether any of uris has the given scheme and host.
func containsOrigin(uris []string, scheme, host string) bool {
	return slices.ContainsFunc(uris, func(s string) bool {
		u, err := parseURL(s)
		return err == nil && u.Scheme == scheme && u.Host == host
	})
}
