-- The expiry a RENEW order extended, so that cancelling the renewal period
-- (refreshInstance scene UNSUBSCRIBE_RENEWAL_PERIOD) can restore it exactly.
ALTER TABLE market_order_lines ADD COLUMN prev_expire_at BIGINT NOT NULL DEFAULT 0;
