package merchant

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/soukhq/souk/kg"
)

// Every accepted reading of an open point is counted (README policy 7): an
// operator sees in /metrics which one the real marketplace sends.
func TestAcceptedVariantsCounted(t *testing.T) {
	e := newEnv(t, "sqlite")
	id := e.provisioned("VAR1")
	for _, c := range []struct {
		body string
		opts []func(*callOpt)
	}{
		{`{"activity":"updateInstanceStatus","instanceId":"` + id + `","status":"freeze"}`, nil},
		{`{"activity":"updateInstanceStatus","instanceId":"` + id + `","status":"UNFREEZE","testFlag":"0"}`, []func(*callOpt){func(o *callOpt) { o.lowerSig = true }}},
		{`{"activity":"refreshInstance","instanceId":"` + id + `","orderId":"VAR1-R","orderLineId":"VAR1-R-1","scene":"RENEWAL","expireTime":"20991231000000000"}`, nil},
		{`{"Activity":"queryInstance","instanceId":"` + id + `"}`, nil},
	} {
		if r := e.call(c.body, c.opts...); r.ResultCode != kg.CodeSuccess {
			t.Fatalf("%s: %s %s", c.body, r.ResultCode, r.ResultMsg)
		}
	}
	resp, err := http.Get(e.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, v := range []string{"status_not_upper_case", "signature_upper", "signature_lower", "testFlag_0", "testFlag_absent", "expireTime_17", "member_case_activity", "timestamp_ms"} {
		if !strings.Contains(string(b), `souk_merchant_signature_variants_total{variant="`+v+`"}`) {
			t.Errorf("variant %s not counted:\n%s", v, b)
		}
	}
}
