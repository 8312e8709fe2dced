-- Kit calls of the seller's debugging (应用接入调试) carry no instance: they
-- are addressed by product.
ALTER TABLE buyer_kit_messages ADD COLUMN product_id TEXT NOT NULL DEFAULT '';
