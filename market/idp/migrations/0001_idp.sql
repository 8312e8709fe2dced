-- souk market identity provider (joint-kit.md §7). Every secret (session id,
-- authorization code, token) is stored only as its SHA-256 hex digest.
-- Timestamps are BIGINT Unix milliseconds from the injected clock; 0 = never.

CREATE TABLE idp_sessions (
    id_hash     TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    member_id   TEXT NOT NULL,
    epoch       BIGINT NOT NULL,    -- the member's epoch when issued (see idp.Account.Epoch)
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX idp_sessions_member ON idp_sessions(member_id);

CREATE TABLE idp_codes (
    code_hash     TEXT PRIMARY KEY,
    client_id     TEXT NOT NULL,
    member_id     TEXT NOT NULL,
    redirect_uri  TEXT NOT NULL,
    scope         TEXT NOT NULL,
    epoch         BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    used_at       BIGINT NOT NULL DEFAULT 0
);

-- Access and refresh tokens. grant_id ties every token descending from one
-- authorization code together, so that a replayed code or refresh token
-- revokes the whole family (RFC 6749 §4.1.2, RFC 9700 §4.14).
CREATE TABLE idp_tokens (
    token_hash  TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,      -- access | refresh
    client_id   TEXT NOT NULL,
    member_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,
    grant_id    TEXT NOT NULL,
    epoch       BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX idp_tokens_grant ON idp_tokens(grant_id);
CREATE INDEX idp_tokens_member ON idp_tokens(member_id);
CREATE INDEX idp_tokens_expiry ON idp_tokens(expires_at);
