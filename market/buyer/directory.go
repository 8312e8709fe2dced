package buyer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"

	"github.com/soukhq/souk/market/idp"
)

// Directory returns the buyer center as the IdP's directory.
func (c *Center) Directory() idp.Directory { return directory{c} }

type directory struct{ c *Center }

var _ idp.Directory = directory{}

func parseURL(s string) (*url.URL, error) { return url.Parse(s) }

func (d directory) client(ctx context.Context, where string, args ...any) (idp.Client, error) {
	b, err := scanBinding(d.c.db.QueryRow(ctx, `SELECT `+bindingCols+` FROM buyer_bindings WHERE `+where, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return idp.Client{}, idp.ErrNotFound
	}
	if err != nil {
		return idp.Client{}, fmt.Errorf("buyer: client: %w", err)
	}
	e, err := getEnterprise(ctx, d.c.db, b.EnterpriseID)
	if err != nil {
		return idp.Client{}, err
	}
	return idp.Client{ID: b.ClientID, SecretHash: b.secretHash, TenantID: b.EnterpriseID, TenantCode: e.Code, AppID: b.AppID,
		RedirectURIs: b.RedirectURIs, Enabled: b.Enabled}, nil
}

func (d directory) Client(ctx context.Context, clientID string) (idp.Client, error) {
	return d.client(ctx, `client_id = $1`, clientID)
}

func (d directory) ClientForApp(ctx context.Context, tenantID, appID string) (idp.Client, error) {
	return d.client(ctx, `enterprise_id = $1 AND app_id = $2`, tenantID, appID)
}

func (d directory) TenantByCode(ctx context.Context, code string) (string, error) {
	var id string
	err := d.c.db.QueryRow(ctx, `SELECT id FROM buyer_enterprises WHERE code = $1`, code).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", idp.ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("buyer: tenant: %w", err)
	}
	return id, nil
}

func account(m Member) idp.Account {
	return idp.Account{ID: m.ID, TenantID: m.EnterpriseID, UserName: m.UserName, Name: m.Name, PasswordHash: m.passwordHash, Enabled: m.Enabled,
		Epoch: m.epoch}
}

func (d directory) Account(ctx context.Context, tenantID, userName string) (idp.Account, error) {
	m, err := scanMember(d.c.db.QueryRow(ctx, `SELECT `+memberCols+` FROM buyer_members WHERE enterprise_id = $1 AND user_name = $2`, tenantID, userName))
	if errors.Is(err, sql.ErrNoRows) {
		return idp.Account{}, idp.ErrNotFound
	}
	if err != nil {
		return idp.Account{}, fmt.Errorf("buyer: account: %w", err)
	}
	return account(m), nil
}

func (d directory) AccountByID(ctx context.Context, memberID string) (idp.Account, error) {
	m, err := scanMember(d.c.db.QueryRow(ctx, `SELECT `+memberCols+` FROM buyer_members WHERE id = $1`, memberID))
	if errors.Is(err, sql.ErrNoRows) {
		return idp.Account{}, idp.ErrNotFound
	}
	if err != nil {
		return idp.Account{}, fmt.Errorf("buyer: account: %w", err)
	}
	return account(m), nil
}

// UserInfo answers for a member authorized (now, per the grants) for the
// client's app, enabled, with the app enabled.
func (d directory) UserInfo(ctx context.Context, clientID, memberID string) (idp.UserInfo, error) {
	var (
		info             idp.UserInfo
		enabled, appOn   int
		authorized       int
		tenantName, orgN sql.NullString
	)
	err := d.c.db.QueryRow(ctx, `SELECT m.id, m.user_name, m.name, m.email, m.mobile, m.role, m.org_code, m.enabled, e.id, e.name,
		d.org_name, b.enabled, (SELECT COUNT(*) FROM buyer_app_users u WHERE u.binding_id = b.id AND u.member_id = m.id)
		FROM buyer_bindings b
		JOIN buyer_members m ON m.enterprise_id = b.enterprise_id AND m.id = $2
		JOIN buyer_enterprises e ON e.id = b.enterprise_id
		LEFT JOIN buyer_departments d ON d.enterprise_id = m.enterprise_id AND d.org_code = m.org_code
		WHERE b.client_id = $1`, clientID, memberID).Scan(&info.ID, &info.UserName, &info.Name, &info.Email, &info.Mobile, &info.Role,
		&info.OrganizationCode, &enabled, &info.Tenant, &tenantName, &orgN, &appOn, &authorized)
	if errors.Is(err, sql.ErrNoRows) {
		return idp.UserInfo{}, idp.ErrNotAuthorized
	}
	if err != nil {
		return idp.UserInfo{}, fmt.Errorf("buyer: userinfo: %w", err)
	}
	if enabled != 1 || appOn != 1 || authorized == 0 {
		return idp.UserInfo{}, idp.ErrNotAuthorized
	}
	info.UserID = info.ID
	info.ProjectName = tenantName.String
	info.OrganizationName = orgN.String
	return info, nil
}

func (d directory) LogoutRedirectAllowed(ctx context.Context, u *url.URL) (bool, error) {
	rows, err := d.c.db.Query(ctx, `SELECT redirect_uris FROM buyer_bindings`)
	if err != nil {
		return false, fmt.Errorf("buyer: redirect uris: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var js string
		if err := rows.Scan(&js); err != nil {
			return false, fmt.Errorf("buyer: redirect uris: %w", err)
		}
		var uris []string
		if jsonUnmarshal(js, &uris) == nil && containsOrigin(uris, u.Scheme, u.Host) {
			return true, nil
		}
	}
	return false, rows.Err()
}
