-- Serializes token refreshes of a session across requests and replicas: an
-- IdP that rotates refresh tokens with reuse detection revokes the whole
-- family when one refresh token is presented twice.
ALTER TABLE sso_sessions ADD COLUMN refresh_claim BIGINT NOT NULL DEFAULT 0;
