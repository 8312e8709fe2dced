-- IdP.Purge deletes the failure counts of windows that ended.
CREATE INDEX idp_login_failures_window ON idp_login_failures (window_start);
