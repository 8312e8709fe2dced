package jobs

import "github.com/soukhq/souk/db"

// ClaimSQL exposes the claim statement to the plan tests.
func ClaimSQL(d db.Dialect, kinds int) string { return claimSQL(d, kinds) }
