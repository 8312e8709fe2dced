-- PKCE (RFC 7636): the S256 code_challenge a code was issued for; '' = none.
ALTER TABLE idp_codes ADD COLUMN code_challenge TEXT NOT NULL DEFAULT '';
