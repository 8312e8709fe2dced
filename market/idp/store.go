package idp

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/soukhq/souk/db"
)

// session is a signed-in member at the IdP.
type session struct {
	hash     string
	tenantID string
	memberID string
	epoch    int64
}

func (p *IdP) createSession(ctx context.Context, tenantID, memberID string, epoch int64) (string, error) {
	tok, err := NewSecret()
	if err != nil {
		return "", err
	}
	now := p.clock.Now()
	_, err = p.db.Exec(ctx, `INSERT INTO idp_sessions (id_hash, tenant_id, member_id, epoch, created_at, expires_at) VALUES ($1,$2,$3,$4,$5,$6)`,
		HashSecret(tok), tenantID, memberID, epoch, db.Millis(now), db.Millis(now.Add(p.sessionTTL)))
	if err != nil {
		return "", fmt.Errorf("idp: create session: %w", err)
	}
	return tok, nil
}

// lookupSession returns the live session named by the cookie value, or ok=false.
func (p *IdP) lookupSession(ctx context.Context, tok string) (session, bool, error) {
	if tok == "" {
		return session{}, false, nil
	}
	s := session{hash: HashSecret(tok)}
	var exp, revoked int64
	err := p.db.QueryRow(ctx, `SELECT tenant_id, member_id, epoch, expires_at, revoked_at FROM idp_sessions WHERE id_hash = $1`, s.hash).
		Scan(&s.tenantID, &s.memberID, &s.epoch, &exp, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return session{}, false, nil
	}
	if err != nil {
		return session{}, false, fmt.Errorf("idp: session: %w", err)
	}
	if revoked != 0 || exp <= db.Millis(p.clock.Now()) {
		return session{}, false, nil
	}
	return s, true, nil
}

func (p *IdP) revokeSession(ctx context.Context, hash string) error {
	_, err := p.db.Exec(ctx, `UPDATE idp_sessions SET revoked_at = $1 WHERE id_hash = $2 AND revoked_at = 0`, db.Millis(p.clock.Now()), hash)
	if err != nil {
		return fmt.Errorf("idp: revoke session: %w", err)
	}
	return nil
}

// issueCode stores a new code; challenge is its PKCE S256 code_challenge ("" = none).
func (p *IdP) issueCode(ctx context.Context, clientID string, s session, redirectURI, challenge string) (string, error) {
	code, err := NewSecret()
	if err != nil {
		return "", err
	}
	now := p.clock.Now()
	_, err = p.db.Exec(ctx, `INSERT INTO idp_codes (code_hash, client_id, member_id, redirect_uri, scope, epoch, created_at, expires_at, code_challenge) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)`,
		HashSecret(code), clientID, s.memberID, redirectURI, Scope, s.epoch, db.Millis(now), db.Millis(now.Add(p.codeTTL)), challenge)
	if err != nil {
		return "", fmt.Errorf("idp: issue code: %w", err)
	}
	return code, nil
}

type codeRow struct {
	hash, clientID, memberID, redirectURI, scope, challenge string
	epoch, expiresAt, usedAt                                int64
}

func (p *IdP) loadCode(ctx context.Context, code string) (codeRow, bool, error) {
	c := codeRow{hash: HashSecret(code)}
	err := p.db.QueryRow(ctx, `SELECT client_id, member_id, redirect_uri, scope, code_challenge, epoch, expires_at, used_at FROM idp_codes WHERE code_hash = $1`, c.hash).
		Scan(&c.clientID, &c.memberID, &c.redirectURI, &c.scope, &c.challenge, &c.epoch, &c.expiresAt, &c.usedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return codeRow{}, false, nil
	}
	if err != nil {
		return codeRow{}, false, fmt.Errorf("idp: code: %w", err)
	}
	return c, true, nil
}

type tokenRow struct {
	hash, kind, clientID, memberID, scope, grantID string
	epoch, expiresAt, revokedAt                    int64
}

func (p *IdP) loadToken(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) *sql.Row
}, tok string) (tokenRow, bool, error) {
	t := tokenRow{hash: HashSecret(tok)}
	err := q.QueryRow(ctx, `SELECT kind, client_id, member_id, scope, grant_id, epoch, expires_at, revoked_at FROM idp_tokens WHERE token_hash = $1`, t.hash).
		Scan(&t.kind, &t.clientID, &t.memberID, &t.scope, &t.grantID, &t.epoch, &t.expiresAt, &t.revokedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return tokenRow{}, false, nil
	}
	if err != nil {
		return tokenRow{}, false, fmt.Errorf("idp: token: %w", err)
	}
	return t, true, nil
}

// tokenPair is what the token endpoint returns.
type tokenPair struct {
	access, refresh string
}

// insertTokens stores a new access and refresh token of grant in tx.
func (p *IdP) insertTokens(ctx context.Context, tx *db.Tx, now time.Time, clientID, memberID, scope, grantID string, epoch int64) (tokenPair, error) {
	var tp tokenPair
	var err error
	if tp.access, err = NewSecret(); err != nil {
		return tokenPair{}, err
	}
	if tp.refresh, err = NewSecret(); err != nil {
		return tokenPair{}, err
	}
	const q = `INSERT INTO idp_tokens (token_hash, kind, client_id, member_id, scope, grant_id, epoch, created_at, expires_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)`
	if _, err := tx.Exec(ctx, q, HashSecret(tp.access), "access", clientID, memberID, scope, grantID, epoch, db.Millis(now), db.Millis(now.Add(p.accessTTL))); err != nil {
		return tokenPair{}, fmt.Errorf("idp: store access token: %w", err)
	}
	if _, err := tx.Exec(ctx, q, HashSecret(tp.refresh), "refresh", clientID, memberID, scope, grantID, epoch, db.Millis(now), db.Millis(now.Add(p.refreshTTL))); err != nil {
		return tokenPair{}, fmt.Errorf("idp: store refresh token: %w", err)
	}
	return tp, nil
}

// revokeGrant revokes every token of a grant (code replay, refresh-token reuse).
func (p *IdP) revokeGrant(ctx context.Context, grantID string) error {
	_, err := p.db.Exec(ctx, `UPDATE idp_tokens SET revoked_at = $1 WHERE grant_id = $2 AND revoked_at = 0`, db.Millis(p.clock.Now()), grantID)
	if err != nil {
		return fmt.Errorf("idp: revoke grant: %w", err)
	}
	return nil
}

// failureKey bounds and normalizes what the login form names.
func failureKey(tenantCode, userName string) (string, string) {
	tc, un := strings.ToLower(strings.TrimSpace(tenantCode)), strings.TrimSpace(userName)
	if len(tc) > 128 {
		tc = tc[:128]
	}
	if len(un) > 128 {
		un = un[:128]
	}
	return tc, un
}

// countAttempt counts a sign-in attempt of the user name before its password
// is checked (a new window once the last one is over) and reports until when
// the attempt is refused (zero: it may go on). Counting first, in one
// statement, is what bounds the guesses: attempts sent at once cannot all
// pass a check made before any of them is counted. A successful sign-in
// clears the count (clearFailures).
func (p *IdP) countAttempt(ctx context.Context, tenantCode, userName string) (time.Time, error) {
	tc, un := failureKey(tenantCode, userName)
	now := p.clock.Now()
	var n int
	var start int64
	err := p.db.QueryRow(ctx, `INSERT INTO idp_login_failures (tenant_code, user_name, failures, window_start) VALUES ($1, $2, 1, $3)
		ON CONFLICT (tenant_code, user_name) DO UPDATE SET
		failures = CASE WHEN idp_login_failures.window_start < $4 THEN 1 ELSE idp_login_failures.failures + 1 END,
		window_start = CASE WHEN idp_login_failures.window_start < $4 THEN $3 ELSE idp_login_failures.window_start END
		RETURNING failures, window_start`,
		tc, un, db.Millis(now), db.Millis(now.Add(-p.failureWindow))).Scan(&n, &start)
	if err != nil {
		return time.Time{}, fmt.Errorf("idp: count sign-in attempt: %w", err)
	}
	if n > p.maxFailures {
		return time.UnixMilli(start).Add(p.failureWindow), nil
	}
	return time.Time{}, nil
}

func (p *IdP) clearFailures(ctx context.Context, tenantCode, userName string) error {
	tc, un := failureKey(tenantCode, userName)
	if _, err := p.db.Exec(ctx, `DELETE FROM idp_login_failures WHERE tenant_code = $1 AND user_name = $2`, tc, un); err != nil {
		return fmt.Errorf("idp: clear login failures: %w", err)
	}
	return nil
}

// RevokeMember revokes every session and token of a member. The buyer center
// need not call it (every use re-checks the member), but it makes the effect
// visible in the tables at once.
func (p *IdP) RevokeMember(ctx context.Context, memberID string) error {
	now := db.Millis(p.clock.Now())
	return p.db.Tx(ctx, func(tx *db.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE idp_tokens SET revoked_at = $1 WHERE member_id = $2 AND revoked_at = 0`, now, memberID); err != nil {
			return fmt.Errorf("idp: revoke member tokens: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE idp_sessions SET revoked_at = $1 WHERE member_id = $2 AND revoked_at = 0`, now, memberID); err != nil {
			return fmt.Errorf("idp: revoke member sessions: %w", err)
		}
		return nil
	})
}

// Purge deletes sessions, codes and tokens that expired, and the sign-in
// failure counts of windows that ended, before the clock's now minus keep
// (keep > 0 leaves recently expired rows for inspection). It returns how many
// rows it removed.
func (p *IdP) Purge(ctx context.Context, keep time.Duration) (int64, error) {
	cut := p.clock.Now().Add(-keep)
	var n int64
	for _, q := range []struct {
		sql string
		cut time.Time
	}{
		{`DELETE FROM idp_sessions WHERE expires_at < $1`, cut},
		{`DELETE FROM idp_codes WHERE expires_at < $1`, cut},
		{`DELETE FROM idp_tokens WHERE expires_at < $1`, cut},
		{`DELETE FROM idp_login_failures WHERE window_start < $1`, cut.Add(-p.failureWindow)},
	} {
		res, err := p.db.Exec(ctx, q.sql, db.Millis(q.cut))
		if err != nil {
			return n, fmt.Errorf("idp: purge: %w", err)
		}
		k, _ := res.RowsAffected()
		n += k
	}
	return n, nil
}
