-- Failed sign-ins per (enterprise code, user name) within a window, to slow
-- down online password guessing. Unknown names are counted too, so the
-- lockout does not reveal which accounts exist.
CREATE TABLE idp_login_failures (
    tenant_code   TEXT NOT NULL,
    user_name     TEXT NOT NULL,
    failures      INTEGER NOT NULL,
    window_start  BIGINT NOT NULL,
    PRIMARY KEY (tenant_code, user_name)
);
