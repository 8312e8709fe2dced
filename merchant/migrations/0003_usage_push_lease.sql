-- A usage push claims the records it sends: push_lease_until (Unix ms, the
-- merchant's clock) keeps another push, on this replica or another, off them
-- until the call is answered, so that no record is pushed twice at once. 0:
-- not claimed.
ALTER TABLE merchant_usage ADD COLUMN push_lease_until BIGINT NOT NULL DEFAULT 0;
