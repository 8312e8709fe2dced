-- Synchronous calls (Market.Call) record when, on the wire clock (real time),
-- their answer is due at the latest; a message still 'sending' after it was
-- cut off by a crash (RecoverInterruptedCalls).
ALTER TABLE market_messages ADD COLUMN call_deadline BIGINT NOT NULL DEFAULT 0;
