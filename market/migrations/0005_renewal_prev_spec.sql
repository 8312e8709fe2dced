-- The spec a RENEW order replaced (JSON: productCode, skuCode, periodType,
-- linearValue), so that cancelling a RENEWAL_CHANGE renewal restores it.
ALTER TABLE market_order_lines ADD COLUMN prev_spec TEXT NOT NULL DEFAULT '';
