package buyer

import (
	"context"

	"github.com/soukhq/souk/db"
)

// QueueWithoutSending commits two kit messages (tenantSync, singleOrgSync)
// the way a change does, but stops before sending them, as a process that
// crashed right after the commit would.
func QueueWithoutSending(ctx context.Context, c *Center, ent Enterprise, instanceID, appID string) error {
	return c.db.Tx(ctx, func(tx *db.Tx) error {
		o, err := c.newOutbox(tx, c.clock.Now())
		if err != nil {
			return err
		}
		b := bindingRef{ID: "b-crashed", EnterpriseID: ent.ID, InstanceID: instanceID, AppID: appID}
		if err := o.tenantSync(ctx, b, ent, FlagAdd); err != nil {
			return err
		}
		return o.singleOrgSync(ctx, b, Department{OrgCode: "1", OrgName: "HQ"}, FlagAdd)
	})
}
