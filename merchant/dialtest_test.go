package merchant

import (
	"testing"

	"github.com/soukhq/souk/kg"
)

// TestDialTestCasesRepeatForever replays the saved debug cases of a
// yearly/monthly product (create → query → refresh → freeze → unfreeze →
// release) several times, as KooGallery's dial tests do twice a day: every
// replay must pass, including the calls that follow a release of the sandbox
// instance. A real instance stays released.
func TestDialTestCasesRepeatForever(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		var id string
		for round := 1; round <= 3; round++ {
			r := e.call(newInstanceBody("MOCKPERIODYEARNEW", "MOCKPERIODYEARNEW-000001", "biz-dial-"+string(rune('0'+round)), true))
			if r.ResultCode != kg.CodeSuccess && r.ResultCode != kg.CodeInProgress {
				t.Fatalf("round %d newInstance: %s %s", round, r.ResultCode, r.ResultMsg)
			}
			if id == "" {
				id = r.InstanceID
			} else if r.InstanceID != id {
				t.Fatalf("round %d: instanceId %q, the saved case has %q", round, r.InstanceID, id)
			}
			e.runJobs(0)
			for _, body := range []map[string]string{
				{"activity": "queryInstance", "instanceId": id, "testFlag": "1"},
				{"activity": "refreshInstance", "instanceId": id, "orderId": "MOCKMONTYRENEW", "orderLineId": "MOCKMONTYRENEW-000001", "scene": "RENEWAL", "expireTime": "20301231000000", "testFlag": "1"},
				{"activity": "updateInstanceStatus", "instanceId": id, "status": "FREEZE", "testFlag": "1"},
				{"activity": "updateInstanceStatus", "instanceId": id, "status": "UNFREEZE", "testFlag": "1"},
				{"activity": "releaseInstance", "instanceId": id, "testFlag": "1"},
			} {
				if r := e.call(body); r.ResultCode != kg.CodeSuccess {
					t.Fatalf("round %d %s: %s %s", round, body["activity"], r.ResultCode, r.ResultMsg)
				}
			}
		}
		// Only KooGallery's lifecycle calls revive a released sandbox
		// instance: not the app's appInfo (an answer to instance.released, say).
		if code, body := e.api("POST", "/api/v1/instances/"+id+"/appinfo", map[string]any{"frontEndUrl": "https://sandbox.example.com"}, testAdmin); code != 200 {
			t.Fatalf("appinfo: %d %v", code, body)
		}
		if code, body := e.api("GET", "/api/v1/instances/"+id, nil, testAdmin); code != 200 || body["status"] != StatusReleased {
			t.Fatalf("released sandbox instance after an appInfo: %d %v, want status %s", code, body, StatusReleased)
		}
		// Real instances are not revived.
		real := e.provisioned("CS-REAL-1")
		if r := e.call(map[string]string{"activity": "releaseInstance", "instanceId": real}); r.ResultCode != kg.CodeSuccess {
			t.Fatalf("release: %s", r.ResultCode)
		}
		if r := e.call(map[string]string{"activity": "updateInstanceStatus", "instanceId": real, "status": "FREEZE"}); r.ResultCode != kg.CodeNoInstance {
			t.Fatalf("freeze after release of a real instance: %s, want 000003", r.ResultCode)
		}
	})
}
