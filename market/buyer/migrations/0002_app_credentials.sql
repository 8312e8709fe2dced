-- App credentials (应用凭证) of joint-operation products, created by the
-- seller: the appId, the RSA public key applicationSync's clientSecret is
-- encrypted to, and the registered login addresses (应用登录地址).
CREATE TABLE buyer_app_credentials (
    product_id  TEXT PRIMARY KEY,
    seller_id   TEXT NOT NULL,
    app_id      TEXT NOT NULL UNIQUE,
    public_key  TEXT NOT NULL,
    login_urls  TEXT NOT NULL,   -- JSON array
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
