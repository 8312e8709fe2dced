-- A create the vendor application refused (phase 'failed'): the
-- create-instance result code (000100–000107, saas-v2.md §7) and message that
-- newInstance and queryInstance answer for it. Empty for every other phase.
ALTER TABLE merchant_instances ADD COLUMN failure_code TEXT NOT NULL DEFAULT '';
ALTER TABLE merchant_instances ADD COLUMN failure_msg TEXT NOT NULL DEFAULT '';
