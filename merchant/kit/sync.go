package kit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/merchant/auditnote"
	"github.com/soukhq/souk/merchant/handoff"
)

// Event types emitted to the vendor application (merchant/handoff).
const (
	EventTenantSynced     = "tenant.synced"     // TenantEvent
	EventAppSynced        = "app.synced"        // AppEvent
	EventUserAuthorized   = "user.authorized"   // UserEvent: added, or authorized again
	EventUserUpdated      = "user.updated"      // UserEvent: details, role or enabled changed
	EventUserDeauthorized = "user.deauthorized" // UserEvent: deleted (flag 0) or authorization cancelled (flag 3)
	EventOrgSynced        = "org.synced"        // OrgEvent
)

// Actions in TenantEvent, AppEvent and single-mode OrgEvent.
const (
	ActionAdded    = "added"
	ActionModified = "modified"
	ActionDeleted  = "deleted"
)

// TenantEvent is the data of tenant.synced.
type TenantEvent struct {
	Action string `json:"action"`
	Tenant Tenant `json:"tenant"`
}

// AppEvent is the data of app.synced (never with the client secret).
type AppEvent struct {
	Action string `json:"action"`
	App    App    `json:"app"`
}

// UserEvent is the data of user.authorized, user.updated and user.deauthorized.
type UserEvent struct {
	Flag int  `json:"flag"` // the authSync flag that caused it
	User User `json:"user"`
}

// OrgEvent is the data of org.synced: Mode "single" (singleOrgSync, with
// Action and Org) or "full" (allOrgSync, with what was added and modified,
// and the total after the sync). A full sync removes nothing: whether it is a
// snapshot implying deletes is not documented (joint-kit.md §5.2, §10.5).
type OrgEvent struct {
	Mode     string `json:"mode"`
	TenantID string `json:"tenantId"`
	Action   string `json:"action,omitempty"`
	Org      *Org   `json:"org,omitempty"`
	Added    []Org  `json:"added,omitempty"`
	Modified []Org  `json:"modified,omitempty"`
	Total    int    `json:"total"`
}

func emit(ctx context.Context, tx *db.Tx, now time.Time, typ, subject string, testFlag bool, data any) error {
	if _, err := handoff.Emit(ctx, tx, now, handoff.Event{Type: typ, Subject: subject, TestFlag: testFlag, Data: data}); err != nil {
		return fmt.Errorf("kit: emit %s: %w", typ, err)
	}
	return nil
}

// ---- tenantSync ----

// noteCommon names, in the audit record of the call, the instance and the
// tenant a kit request is about.
func noteCommon(ctx context.Context, c *Common) {
	auditnote.Instance(ctx, c.InstanceID)
	auditnote.Add(ctx, "tenant", c.TenantID)
	if c.TestFlag {
		auditnote.Add(ctx, "testFlag", "1")
	}
}

func (s *Service) tenantSync(ctx context.Context, body []byte, now time.Time) error {
	req, err := DecodeTenantSync(body)
	if err != nil {
		return err
	}
	noteCommon(ctx, &req.Common)
	return s.ApplyTenantSync(ctx, req, now)
}

// ApplyTenantSync applies a decoded tenantSync in one transaction with its
// events. A repeated add or delete changes nothing and succeeds.
func (s *Service) ApplyTenantSync(ctx context.Context, req *TenantSync, now time.Time) error {
	tf := db.Bool(req.TestFlag)
	return s.db.Tx(ctx, func(tx *db.Tx) error {
		get := func() (*tenantRow, error) {
			t, err := scanTenant(tx.QueryRow(ctx, `SELECT `+tenantCols+` FROM kit_tenants WHERE test_flag = $1 AND tenant_id = $2`+forUpdate(tx), tf, req.TenantID))
			if errors.Is(err, sql.ErrNoRows) {
				return nil, nil
			}
			if err != nil {
				return nil, fmt.Errorf("kit: read tenant: %w", err)
			}
			return t, nil
		}
		cur, err := get()
		if err != nil {
			return err
		}
		// bind records that the request's instance uses the tenant (the
		// tenant row is locked, or just inserted, by this transaction). An
		// add binds; a modify (V2 flag 2: name and domain) does not.
		bind := func() error {
			if _, err := tx.Exec(ctx, `INSERT INTO kit_tenant_instances (test_flag, tenant_id, instance_id, created_at) VALUES ($1, $2, $3, $4)
				ON CONFLICT (test_flag, tenant_id, instance_id) DO NOTHING`, tf, req.TenantID, req.InstanceID, now.UnixMilli()); err != nil {
				return fmt.Errorf("kit: bind tenant to instance: %w", err)
			}
			return nil
		}
		if req.Flag == FlagDelete {
			if cur == nil || cur.Deleted {
				return nil // a repeated delete succeeds; no instance check
			}
			// Unbind this instance; the tenant goes with its last binding. A
			// delete naming no instance (seller credential, debugging) is of
			// the tenant itself.
			unbind := `DELETE FROM kit_tenant_instances WHERE test_flag = $1 AND tenant_id = $2 AND (instance_id = $3 OR $3 = '')`
			if _, err := tx.Exec(ctx, unbind, tf, req.TenantID, req.InstanceID); err != nil {
				return fmt.Errorf("kit: unbind tenant: %w", err)
			}
			var other string
			err := tx.QueryRow(ctx, `SELECT instance_id FROM kit_tenant_instances WHERE test_flag = $1 AND tenant_id = $2
				ORDER BY created_at DESC, instance_id LIMIT 1`, tf, req.TenantID).Scan(&other)
			switch {
			case err == nil:
				// Another instance still uses the tenant: it stays. The row
				// names an instance that still uses it.
				if cur.InstanceID != req.InstanceID {
					return nil
				}
				if _, err := tx.Exec(ctx, `UPDATE kit_tenants SET instance_id = $1, sync_time = $2, updated_at = $3 WHERE test_flag = $4 AND tenant_id = $5`,
					other, req.TimeStamp, now.UnixMilli(), tf, req.TenantID); err != nil {
					return fmt.Errorf("kit: rebind tenant: %w", err)
				}
				next := cur.Tenant
				next.InstanceID, next.UpdatedAt = other, now.UTC()
				return emit(ctx, tx, now, EventTenantSynced, req.TenantID, req.TestFlag, TenantEvent{Action: ActionModified, Tenant: next})
			case !errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("kit: read tenant bindings: %w", err)
			}
			if _, err := tx.Exec(ctx, `UPDATE kit_tenants SET deleted = 1, sync_time = $1, updated_at = $2 WHERE test_flag = $3 AND tenant_id = $4`,
				req.TimeStamp, now.UnixMilli(), tf, req.TenantID); err != nil {
				return fmt.Errorf("kit: delete tenant: %w", err)
			}
			cur.Deleted, cur.UpdatedAt = true, now.UTC()
			return emit(ctx, tx, now, EventTenantSynced, req.TenantID, req.TestFlag, TenantEvent{Action: ActionDeleted, Tenant: cur.Tenant})
		}
		if cur == nil {
			res, err := tx.Exec(ctx, `INSERT INTO kit_tenants (`+tenantCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $9)
				ON CONFLICT (test_flag, tenant_id) DO NOTHING`,
				req.TenantID, req.TenantCode, req.Name, req.DomainName, req.InstanceID, req.OrderID, tf, req.TimeStamp, now.UnixMilli())
			if err != nil {
				return fmt.Errorf("kit: insert tenant: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 1 {
				if err := bind(); err != nil { // an add, or a modify of a tenant never added
					return err
				}
				t := Tenant{TenantID: req.TenantID, TenantCode: req.TenantCode, Name: req.Name, DomainName: req.DomainName,
					InstanceID: req.InstanceID, OrderID: req.OrderID, TestFlag: req.TestFlag, CreatedAt: now.UTC(), UpdatedAt: now.UTC()}
				return emit(ctx, tx, now, EventTenantSynced, req.TenantID, req.TestFlag, TenantEvent{Action: ActionAdded, Tenant: t})
			}
			if cur, err = get(); err != nil || cur == nil { // lost a race with a concurrent add
				return errors.Join(err, errors.New("kit: tenant vanished during sync"))
			}
		}
		if req.Flag == FlagAdd {
			if err := bind(); err != nil {
				return err
			}
		}
		next := cur.Tenant
		next.Name, next.DomainName, next.Deleted = req.Name, req.DomainName, false
		if req.TenantCode != "" {
			next.TenantCode = req.TenantCode
		}
		if req.InstanceID != "" {
			next.InstanceID = req.InstanceID
		}
		if req.OrderID != "" {
			next.OrderID = req.OrderID
		}
		if next == cur.Tenant {
			return nil // a repeated add creates nothing
		}
		if _, err := tx.Exec(ctx, `UPDATE kit_tenants SET tenant_code = $1, name = $2, domain_name = $3, instance_id = $4, order_id = $5,
			deleted = 0, sync_time = $6, updated_at = $7 WHERE test_flag = $8 AND tenant_id = $9`,
			next.TenantCode, next.Name, next.DomainName, next.InstanceID, next.OrderID, req.TimeStamp, now.UnixMilli(), tf, req.TenantID); err != nil {
			return fmt.Errorf("kit: update tenant: %w", err)
		}
		action := ActionModified
		if cur.Deleted {
			action = ActionAdded
		}
		next.UpdatedAt = now.UTC()
		return emit(ctx, tx, now, EventTenantSynced, req.TenantID, req.TestFlag, TenantEvent{Action: action, Tenant: next})
	})
}

// ---- applicationSync ----

func (s *Service) applicationSync(ctx context.Context, body []byte, now time.Time) error {
	req, err := DecodeApplicationSync(body)
	if err != nil {
		return err
	}
	noteCommon(ctx, &req.Common)
	auditnote.Add(ctx, "app", req.AppID)
	return s.ApplyApplicationSync(ctx, req, now)
}

// ApplyApplicationSync applies a decoded applicationSync: the clientSecret is
// decrypted with the merchant's private key (an undecryptable one is 000002
// naming clientSecret) and stored re-encrypted under the merchant's public key.
func (s *Service) ApplyApplicationSync(ctx context.Context, req *ApplicationSync, now time.Time) error {
	tf := db.Bool(req.TestFlag)
	var secret, enc string
	if req.Flag != FlagDelete {
		if s.cfg.PrivateKey == nil {
			return fmt.Errorf("kit: no RSA private key configured: %w", kg.ErrInternal)
		}
		var variant string
		var err error
		secret, variant, err = kg.DecryptClientSecret(s.cfg.PrivateKey, req.ClientSecret)
		if err != nil {
			return &kg.FieldError{Field: "clientSecret", Reason: "cannot be decrypted with the merchant's RSA private key (RSA-OAEP, Base64); upload the public key printed by `souk merchant public-key`"}
		}
		s.secretVariants.WithLabelValues(variant).Inc()
		s.log.Debug("kit clientSecret decrypted", "variant", variant, "tenant", req.TenantID, "app", req.AppID)
		if enc, err = kg.EncryptClientSecret(&s.cfg.PrivateKey.PublicKey, secret, s.rnd); err != nil {
			return fmt.Errorf("kit: encrypt client secret at rest: %w", err)
		}
	}
	return s.db.Tx(ctx, func(tx *db.Tx) error {
		get := func() (*appRow, error) {
			a, err := scanApp(tx.QueryRow(ctx, `SELECT `+appCols+` FROM kit_apps WHERE test_flag = $1 AND tenant_id = $2 AND app_id = $3`+forUpdate(tx), tf, req.TenantID, req.AppID))
			if errors.Is(err, sql.ErrNoRows) {
				return nil, nil
			}
			if err != nil {
				return nil, fmt.Errorf("kit: read app: %w", err)
			}
			return a, nil
		}
		cur, err := get()
		if err != nil {
			return err
		}
		if req.Flag == FlagDelete {
			if cur == nil || cur.Deleted {
				return nil
			}
			if _, err := tx.Exec(ctx, `UPDATE kit_apps SET deleted = 1, sync_time = $1, updated_at = $2 WHERE test_flag = $3 AND tenant_id = $4 AND app_id = $5`,
				req.TimeStamp, now.UnixMilli(), tf, req.TenantID, req.AppID); err != nil {
				return fmt.Errorf("kit: delete app: %w", err)
			}
			cur.Deleted, cur.UpdatedAt = true, now.UTC()
			return emit(ctx, tx, now, EventAppSynced, req.TenantID, req.TestFlag, AppEvent{Action: ActionDeleted, App: cur.App})
		}
		if cur == nil {
			res, err := tx.Exec(ctx, `INSERT INTO kit_apps (`+appCols+`) VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $8)
				ON CONFLICT (test_flag, tenant_id, app_id) DO NOTHING`,
				req.TenantID, req.AppID, req.ClientID, req.InstanceID, tf, enc, req.TimeStamp, now.UnixMilli())
			if err != nil {
				return fmt.Errorf("kit: insert app: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 1 {
				a := App{TenantID: req.TenantID, AppID: req.AppID, ClientID: req.ClientID, InstanceID: req.InstanceID, TestFlag: req.TestFlag, CreatedAt: now.UTC(), UpdatedAt: now.UTC()}
				return emit(ctx, tx, now, EventAppSynced, req.TenantID, req.TestFlag, AppEvent{Action: ActionAdded, App: a})
			}
			if cur, err = get(); err != nil || cur == nil {
				return errors.Join(err, errors.New("kit: app vanished during sync"))
			}
		}
		sameSecret := false
		if old, _, err := kg.DecryptClientSecret(s.cfg.PrivateKey, cur.secretEnc); err == nil && old == secret {
			sameSecret = true
		}
		next := cur.App
		next.ClientID, next.Deleted = req.ClientID, false
		if req.InstanceID != "" {
			next.InstanceID = req.InstanceID
		}
		if next == cur.App && sameSecret {
			return nil // a repeated add creates nothing
		}
		if _, err := tx.Exec(ctx, `UPDATE kit_apps SET client_id = $1, client_secret = $2, instance_id = $3, deleted = 0, sync_time = $4, updated_at = $5
			WHERE test_flag = $6 AND tenant_id = $7 AND app_id = $8`,
			next.ClientID, enc, next.InstanceID, req.TimeStamp, now.UnixMilli(), tf, req.TenantID, req.AppID); err != nil {
			return fmt.Errorf("kit: update app: %w", err)
		}
		action := ActionModified
		if cur.Deleted {
			action = ActionAdded
		}
		next.UpdatedAt = now.UTC()
		return emit(ctx, tx, now, EventAppSynced, req.TenantID, req.TestFlag, AppEvent{Action: action, App: next})
	})
}

// ---- authSync ----

func (s *Service) authSync(ctx context.Context, body []byte, now time.Time) error {
	req, err := DecodeAuthSync(body)
	if err != nil {
		return err
	}
	noteCommon(ctx, &req.Common)
	auditnote.Add(ctx, "app", req.AppID)
	return s.ApplyAuthSync(ctx, req, now)
}

// isSyncTime reports whether t looks like yyyyMMddHHmmssSSS (17 digits), the
// only form compared to drop out-of-order (older) authSync updates.
func isSyncTime(t string) bool {
	if len(t) != 17 {
		return false
	}
	for i := 0; i < len(t); i++ {
		if t[i] < '0' || t[i] > '9' {
			return false
		}
	}
	return true
}

// ApplyAuthSync applies a decoded authSync (up to 500 users) in one
// transaction: flag 1 authorizes, 2 modifies, 0 deletes, 3 cancels the
// authorization. Repeats change nothing; a delete of an unknown user succeeds.
// An update whose currentSyncTime is older than the user's last one is
// ignored (authSync is asynchronous on KooGallery's side).
func (s *Service) ApplyAuthSync(ctx context.Context, req *AuthSync, now time.Time) error {
	tf := db.Bool(req.TestFlag)
	syncTime := req.CurrentSyncTime
	if syncTime == "" {
		syncTime = req.TimeStamp
	}
	return s.db.Tx(ctx, func(tx *db.Tx) error {
		for i := range req.Users {
			if err := s.applyUser(ctx, tx, now, req, tf, syncTime, &req.Users[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Service) applyUser(ctx context.Context, tx *db.Tx, now time.Time, req *AuthSync, tf int, syncTime string, in *SyncUser) error {
	get := func() (*userRow, error) {
		u, err := scanUser(tx.QueryRow(ctx, `SELECT `+userCols+` FROM kit_users WHERE test_flag = $1 AND tenant_id = $2 AND app_id = $3 AND user_name = $4`+forUpdate(tx),
			tf, req.TenantID, req.AppID, in.UserName))
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("kit: read user: %w", err)
		}
		return u, nil
	}
	cur, err := get()
	if err != nil {
		return err
	}
	if cur != nil && isSyncTime(syncTime) && isSyncTime(cur.syncTime) && syncTime < cur.syncTime {
		s.log.Debug("kit authSync: stale update ignored", "tenant", req.TenantID, "user", in.UserName)
		return nil
	}
	if req.Flag == FlagDelete || req.Flag == FlagCancel {
		state := StateDeleted
		if req.Flag == FlagCancel {
			state = StateCancelled
		}
		if cur == nil || cur.State != StateAuthorized {
			return nil // repeated delete succeeds; nothing to revoke
		}
		if _, err := tx.Exec(ctx, `UPDATE kit_users SET state = $1, sync_time = $2, updated_at = $3 WHERE test_flag = $4 AND tenant_id = $5 AND app_id = $6 AND user_name = $7`,
			state, syncTime, now.UnixMilli(), tf, req.TenantID, req.AppID, in.UserName); err != nil {
			return fmt.Errorf("kit: revoke user: %w", err)
		}
		cur.State, cur.UpdatedAt = state, now.UTC()
		return emit(ctx, tx, now, EventUserDeauthorized, req.TenantID, req.TestFlag, UserEvent{Flag: req.Flag, User: cur.User})
	}
	next := User{
		TenantID: req.TenantID, AppID: req.AppID, UserName: in.UserName, Name: in.Name, OrgCode: in.OrgCode,
		Position: in.Position, EmployeeCode: in.EmployeeCode, EmployeeType: in.EmployeeType, Role: in.Role, Enabled: in.Enabled,
		Mobile: in.Mobile, Email: in.Email, WorkPlace: in.WorkPlace, EntryDate: in.EntryDate,
		State: StateAuthorized, TestFlag: req.TestFlag, CreatedAt: now.UTC(), UpdatedAt: now.UTC(),
	}
	if cur == nil {
		res, err := tx.Exec(ctx, `INSERT INTO kit_users (`+userCols+`, instance_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $18, $19)
			ON CONFLICT (test_flag, tenant_id, app_id, user_name) DO NOTHING`,
			next.TenantID, next.AppID, next.UserName, next.Name, next.OrgCode, next.Position, next.EmployeeCode, next.EmployeeType,
			next.Role, db.Bool(next.Enabled), next.Mobile, next.Email, next.WorkPlace, next.EntryDate, next.State, tf, syncTime, now.UnixMilli(), req.InstanceID)
		if err != nil {
			return fmt.Errorf("kit: insert user: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return emit(ctx, tx, now, EventUserAuthorized, req.TenantID, req.TestFlag, UserEvent{Flag: req.Flag, User: next})
		}
		if cur, err = get(); err != nil || cur == nil {
			return errors.Join(err, errors.New("kit: user vanished during sync"))
		}
	}
	next.CreatedAt = cur.CreatedAt
	typ := EventUserUpdated
	if req.Flag == FlagModify && cur.State != StateAuthorized {
		next.State = cur.State // a modify updates details; it does not re-authorize
	}
	if cur.State != StateAuthorized && next.State == StateAuthorized {
		typ = EventUserAuthorized
	}
	cmp := cur.User
	cmp.CreatedAt, cmp.UpdatedAt = next.CreatedAt, next.UpdatedAt
	if cmp == next {
		return nil // a repeated add creates nothing
	}
	if _, err := tx.Exec(ctx, `UPDATE kit_users SET name = $1, org_code = $2, position = $3, employee_code = $4, employee_type = $5, role = $6, enabled = $7,
		mobile = $8, email = $9, work_place = $10, entry_date = $11, state = $12, sync_time = $13, updated_at = $14,
		instance_id = CASE WHEN $15 = '' THEN instance_id ELSE $15 END
		WHERE test_flag = $16 AND tenant_id = $17 AND app_id = $18 AND user_name = $19`,
		next.Name, next.OrgCode, next.Position, next.EmployeeCode, next.EmployeeType, next.Role, db.Bool(next.Enabled),
		next.Mobile, next.Email, next.WorkPlace, next.EntryDate, next.State, syncTime, now.UnixMilli(), req.InstanceID,
		tf, req.TenantID, req.AppID, in.UserName); err != nil {
		return fmt.Errorf("kit: update user: %w", err)
	}
	return emit(ctx, tx, now, typ, req.TenantID, req.TestFlag, UserEvent{Flag: req.Flag, User: next})
}

// ---- singleOrgSync / allOrgSync ----

// lockTenantOrgs serializes department syncs of one tenant on PostgreSQL
// (SQLite write transactions are exclusive already).
func lockTenantOrgs(ctx context.Context, tx *db.Tx, tf int, tenantID string) error {
	if tx.Dialect != db.Postgres {
		return nil
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "souk-kit-orgs\x00%d\x00%s", tf, tenantID)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(h.Sum64())); err != nil {
		return fmt.Errorf("kit: lock departments: %w", err)
	}
	return nil
}

func (s *Service) singleOrgSync(ctx context.Context, body []byte, now time.Time) error {
	req, err := DecodeSingleOrgSync(body)
	if err != nil {
		return err
	}
	noteCommon(ctx, &req.Common)
	auditnote.Add(ctx, "org", req.OrgCode)
	return s.ApplySingleOrgSync(ctx, req, now)
}

// ApplySingleOrgSync adds, modifies (renames or moves) or deletes one
// department. Repeats change nothing; deleting an unknown department succeeds.
func (s *Service) ApplySingleOrgSync(ctx context.Context, req *SingleOrgSync, now time.Time) error {
	tf := db.Bool(req.TestFlag)
	return s.db.Tx(ctx, func(tx *db.Tx) error {
		if err := lockTenantOrgs(ctx, tx, tf, req.TenantID); err != nil {
			return err
		}
		var cur Org
		err := tx.QueryRow(ctx, `SELECT org_code, org_name, parent_code FROM kit_orgs WHERE test_flag = $1 AND tenant_id = $2 AND org_code = $3`,
			tf, req.TenantID, req.OrgCode).Scan(&cur.OrgCode, &cur.OrgName, &cur.ParentCode)
		found := err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("kit: read department: %w", err)
		}
		ev := OrgEvent{Mode: "single", TenantID: req.TenantID}
		if req.Flag == FlagDelete {
			if !found {
				return nil
			}
			if _, err := tx.Exec(ctx, `DELETE FROM kit_orgs WHERE test_flag = $1 AND tenant_id = $2 AND org_code = $3`, tf, req.TenantID, req.OrgCode); err != nil {
				return fmt.Errorf("kit: delete department: %w", err)
			}
			ev.Action, ev.Org = ActionDeleted, &cur
		} else {
			next := req.OrgInfo
			g := Org{OrgCode: next.OrgCode, OrgName: next.OrgName, ParentCode: next.ParentCode}
			if found && g.OrgName == cur.OrgName && g.ParentCode == cur.ParentCode {
				return nil
			}
			if err := upsertOrg(ctx, tx, tf, req.TenantID, g, now); err != nil {
				return err
			}
			ev.Action, ev.Org = ActionAdded, &g
			if found {
				ev.Action = ActionModified
			}
		}
		var total int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM kit_orgs WHERE test_flag = $1 AND tenant_id = $2`, tf, req.TenantID).Scan(&total); err != nil {
			return fmt.Errorf("kit: count departments: %w", err)
		}
		ev.Total = total
		return emit(ctx, tx, now, EventOrgSynced, req.TenantID, req.TestFlag, ev)
	})
}

func upsertOrg(ctx context.Context, tx *db.Tx, tf int, tenantID string, g Org, now time.Time) error {
	if _, err := tx.Exec(ctx, `INSERT INTO kit_orgs (test_flag, tenant_id, org_code, org_name, parent_code, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $6)
		ON CONFLICT (test_flag, tenant_id, org_code) DO UPDATE SET org_name = excluded.org_name, parent_code = excluded.parent_code, updated_at = excluded.updated_at`,
		tf, tenantID, g.OrgCode, g.OrgName, g.ParentCode, now.UnixMilli()); err != nil {
		return fmt.Errorf("kit: upsert department: %w", err)
	}
	return nil
}

func (s *Service) allOrgSync(ctx context.Context, body []byte, now time.Time) error {
	req, err := DecodeAllOrgSync(body)
	if err != nil {
		return err
	}
	noteCommon(ctx, &req.Common)
	return s.ApplyAllOrgSync(ctx, req, now)
}

// ApplyAllOrgSync upserts a tenant's full department list: new departments
// are added and changed ones updated. Departments missing from the list are
// kept: KooGallery does not say that allOrgSync is a snapshot implying
// deletes, and joint-kit.md §5.2 advises "upsert all, do not delete" until it
// does (departments are deleted by singleOrgSync flag 0). A repeat of the
// same list changes nothing and emits nothing.
func (s *Service) ApplyAllOrgSync(ctx context.Context, req *AllOrgSync, now time.Time) error {
	tf := db.Bool(req.TestFlag)
	return s.db.Tx(ctx, func(tx *db.Tx) error {
		if err := lockTenantOrgs(ctx, tx, tf, req.TenantID); err != nil {
			return err
		}
		existing, err := listOrgs(ctx, tx, tf, req.TenantID)
		if err != nil {
			return err
		}
		old := make(map[string]Org, len(existing))
		for _, g := range existing {
			old[g.OrgCode] = g
		}
		ev := OrgEvent{Mode: "full", TenantID: req.TenantID}
		for _, in := range req.Orgs {
			g := Org{OrgCode: in.OrgCode, OrgName: in.OrgName, ParentCode: in.ParentCode}
			prev, found := old[g.OrgCode]
			if found && prev.OrgName == g.OrgName && prev.ParentCode == g.ParentCode {
				continue
			}
			if err := upsertOrg(ctx, tx, tf, req.TenantID, g, now); err != nil {
				return err
			}
			if found {
				ev.Modified = append(ev.Modified, g)
			} else {
				ev.Added = append(ev.Added, g)
			}
		}
		if len(ev.Added)+len(ev.Modified) == 0 {
			return nil
		}
		ev.Total = len(existing) + len(ev.Added)
		return emit(ctx, tx, now, EventOrgSynced, req.TenantID, req.TestFlag, ev)
	})
}
