-- PKCE (RFC 7636): the code_verifier of a login in progress, AES-GCM sealed
-- like the tokens; '' = none (Config.DisablePKCE).
ALTER TABLE sso_logins ADD COLUMN code_verifier TEXT NOT NULL DEFAULT '';
