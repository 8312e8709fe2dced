package merchant

import (
	"context"
	"os"
	"os/user"
	"time"

	"github.com/soukhq/souk/db"
)

// AuditCommand records a management action taken with a command (`souk
// merchant events replay`, `public-key --adopt`, `backup`) in audit_log, as
// the management API records its calls: source "cli", the activity, "ok" or
// "error" for result, the operating-system user and host for remote, and a
// message (what was acted on, or the error). No secret goes in it.
func AuditCommand(ctx context.Context, d *db.DB, at time.Time, activity string, actErr error, message string, latency time.Duration) error {
	result := "ok"
	if actErr != nil {
		result = "error"
		if message != "" {
			message += ": "
		}
		message += actErr.Error()
	}
	return insertAudits(context.WithoutCancel(ctx), d, []auditEntry{{At: at, Source: "cli", Remote: operator(),
		Activity: activity, ResultCode: result, KeyIndex: -1, Latency: latency, Message: message}})
}

// operator is user@host of the process, as far as the system tells.
func operator() string {
	name := "?"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, err := os.Hostname()
	if err != nil {
		host = "?"
	}
	return name + "@" + host
}
