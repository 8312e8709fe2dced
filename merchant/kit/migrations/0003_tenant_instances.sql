-- The instances a tenant is bound to. tenantSync is idempotent per "same
-- instance + same tenant" (joint-kit.md §2): an enterprise that bought two of
-- this merchant's products is bound twice, and unbinding one (tenantSync
-- delete with that instanceId) must not delete the tenant, its login domain,
-- that the other still signs in with. The tenant is deleted with its last
-- binding. Tenants synced before this table: bound to the instance they
-- record.
CREATE TABLE kit_tenant_instances (
    test_flag   INTEGER NOT NULL,
    tenant_id   TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (test_flag, tenant_id, instance_id)
);
INSERT INTO kit_tenant_instances (test_flag, tenant_id, instance_id, created_at)
    SELECT test_flag, tenant_id, instance_id, updated_at FROM kit_tenants WHERE deleted = 0;
