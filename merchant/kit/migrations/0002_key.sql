-- The key pair the merchant decrypts applicationSync's clientSecret with, by
-- fingerprint (one row): every replica sharing the database must hold the same
-- private key, and a key file lost and regenerated must not go unnoticed.
CREATE TABLE kit_key (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    fingerprint TEXT NOT NULL,
    recorded_at BIGINT NOT NULL
);
