-- Delivery lanes: the calls of one lane (an enterprise, or one seller's
-- debugging calls) are sent one at a time, in id order, whoever sends them.
ALTER TABLE buyer_kit_messages ADD COLUMN lane TEXT NOT NULL DEFAULT '';
CREATE INDEX buyer_kit_messages_lane ON buyer_kit_messages(lane, state, id);
