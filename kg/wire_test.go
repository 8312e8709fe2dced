package kg

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func fieldOf(t *testing.T, err error) string {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *FieldError", err, err)
	}
	if code, msg := CodeOf(err); code != CodeBadParam || !strings.Contains(msg, fe.Field) {
		t.Fatalf("CodeOf = %s %q, want 000002 naming %s", code, msg, fe.Field)
	}
	return fe.Field
}

func TestDecodeRequestValid(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Request
	}{
		{"newInstance", `{"activity":"newInstance","businessId":"b1","orderId":"o1","orderLineId":"o1-1","testFlag":"1"}`,
			&NewInstanceRequest{Activity: "newInstance", BusinessID: "b1", OrderID: "o1", OrderLineID: "o1-1", TestFlag: "1"}},
		{"newInstance testFlag absent, unknown member, number testFlag", `{"activity":"newInstance","businessId":"b1","orderId":"o1","orderLineId":"o1-1","extra":{"x":[1]}}`,
			&NewInstanceRequest{Activity: "newInstance", BusinessID: "b1", OrderID: "o1", OrderLineID: "o1-1", TestFlag: "0"}},
		{"numbers for strings", `{"activity":"newInstance","businessId":12345,"orderId":"o1","orderLineId":"o1-1","testFlag":1}`,
			&NewInstanceRequest{Activity: "newInstance", BusinessID: "12345", OrderID: "o1", OrderLineID: "o1-1", TestFlag: "1"}},
		{"queryInstance several", `{"activity":"queryInstance","instanceId":"a, b,c"}`,
			&QueryInstanceRequest{Activity: "queryInstance", InstanceID: "a, b,c", TestFlag: "0", InstanceIDs: []string{"a", "b", "c"}}},
		{"refreshInstance 17 digits", `{"activity":"refreshInstance","scene":"RENEWAL","orderId":"o","orderLineId":"l","instanceId":"i","expireTime":"20221124023618256","testFlag":"0"}`,
			&RefreshInstanceRequest{Activity: "refreshInstance", Scene: "RENEWAL", OrderID: "o", OrderLineID: "l", InstanceID: "i", ExpireTime: "20221124023618256", TestFlag: "0",
				Expire: time.Date(2022, 11, 24, 2, 36, 18, 256e6, time.UTC)}},
		{"refreshInstance 14 digits, unknown scene", `{"activity":"refreshInstance","scene":"CANCEL_RENEW","orderId":"o","orderLineId":"l","instanceId":"i","productId":"p","expireTime":"20221124023618"}`,
			&RefreshInstanceRequest{Activity: "refreshInstance", Scene: "CANCEL_RENEW", OrderID: "o", OrderLineID: "l", InstanceID: "i", ProductID: "p", ExpireTime: "20221124023618", TestFlag: "0",
				Expire: time.Date(2022, 11, 24, 2, 36, 18, 0, time.UTC)}},
		{"updateInstanceStatus", `{"activity":"updateInstanceStatus","instanceId":"i","status":"freeze","testFlag":"1"}`,
			&UpdateInstanceStatusRequest{Activity: "updateInstanceStatus", InstanceID: "i", Status: "FREEZE", TestFlag: "1"}},
		{"releaseInstance", `{"activity":"releaseInstance","instanceId":"i","orderId":"u1"}`,
			&ReleaseInstanceRequest{Activity: "releaseInstance", InstanceID: "i", OrderID: "u1", TestFlag: "0"}},
		{"upgradeInstance", `{"activity":"upgradeInstance","instanceId":"i","orderId":"o2","orderLineId":"o2-1"}`,
			&UpgradeInstanceRequest{Activity: "upgradeInstance", InstanceID: "i", OrderID: "o2", OrderLineID: "o2-1", TestFlag: "0"}},
		{"changeInstanceCheck object", `{"activity":"changeInstanceCheck","instanceId":"i","productInfo":{"productId":"p","skuCode":"s","linearValue":"10"}}`,
			&ChangeInstanceCheckRequest{Activity: "changeInstanceCheck", InstanceID: "i", ProductInfo: RawProductInfo{JSON: []byte(`{"productId":"p","skuCode":"s","linearValue":"10"}`), Form: ProductInfoObject}, TestFlag: "0"}},
		{"changeInstanceCheck string", `{"activity":"changeInstanceCheck","instanceId":"i","productInfo":"{\"productId\":\"p\",\"linearValue\":5}"}`,
			&ChangeInstanceCheckRequest{Activity: "changeInstanceCheck", InstanceID: "i", ProductInfo: RawProductInfo{JSON: []byte(`{"productId":"p","linearValue":5}`), Form: ProductInfoStringObject}, TestFlag: "0"}},
		{"changeInstanceCheck one-element list", `{"activity":"changeInstanceCheck","instanceId":"i","productInfo":[{"skuCode":"s"}]}`,
			&ChangeInstanceCheckRequest{Activity: "changeInstanceCheck", InstanceID: "i", ProductInfo: RawProductInfo{JSON: []byte(`[{"skuCode":"s"}]`), Form: ProductInfoArray}, TestFlag: "0"}},
		{"orderNotify", `{"activity":"orderNotify","orderId":"o","orderLineId":"l","testFlag":"0"}`,
			&OrderNotifyRequest{Activity: "orderNotify", OrderID: "o", OrderLineID: "l", TestFlag: "0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeRequest([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if !equalJSONish(got, tc.want) {
				t.Fatalf("got %#v\nwant %#v", got, tc.want)
			}
			if got.ActivityName() != got.(interface{ ActivityName() string }).ActivityName() {
				t.Fatal("activity")
			}
		})
	}
}

func equalJSONish(a, b any) bool {
	ja, _ := marshalCompact(a)
	jb, _ := marshalCompact(b)
	if string(ja) != string(jb) {
		return false
	}
	// compare the non-JSON parsed members too
	switch x := a.(type) {
	case *RefreshInstanceRequest:
		return x.Expire.Equal(b.(*RefreshInstanceRequest).Expire)
	case *QueryInstanceRequest:
		return strings.Join(x.InstanceIDs, ",") == strings.Join(b.(*QueryInstanceRequest).InstanceIDs, ",")
	case *ChangeInstanceCheckRequest:
		return x.ProductInfo.Form == b.(*ChangeInstanceCheckRequest).ProductInfo.Form
	}
	return true
}

func TestDecodeRequestInvalid(t *testing.T) {
	long65 := strings.Repeat("x", 65)
	manyIDs := strings.TrimSuffix(strings.Repeat("id,", 101), ",")
	tests := []struct{ name, body, field string }{
		{"not JSON", `{"activity":`, "body"},
		{"array body", `[1]`, "body"},
		{"no activity", `{"orderId":"o"}`, "activity"},
		{"unknown activity", `{"activity":"explode"}`, "activity"},
		{"activity object", `{"activity":{"a":1}}`, "activity"},
		{"missing businessId", `{"activity":"newInstance","orderId":"o","orderLineId":"l"}`, "businessId"},
		{"empty orderId", `{"activity":"newInstance","businessId":"b","orderId":"","orderLineId":"l"}`, "orderId"},
		{"null orderLineId", `{"activity":"newInstance","businessId":"b","orderId":"o","orderLineId":null}`, "orderLineId"},
		{"too long businessId", `{"activity":"newInstance","businessId":"` + long65 + `","orderId":"o","orderLineId":"l"}`, "businessId"},
		{"object for string", `{"activity":"newInstance","businessId":{"a":1},"orderId":"o","orderLineId":"l"}`, "businessId"},
		{"array for string", `{"activity":"newInstance","businessId":["b"],"orderId":"o","orderLineId":"l"}`, "businessId"},
		{"bad testFlag", `{"activity":"newInstance","businessId":"b","orderId":"o","orderLineId":"l","testFlag":"7"}`, "testFlag"},
		{"query no id", `{"activity":"queryInstance","instanceId":" , "}`, "instanceId"},
		{"query too many", `{"activity":"queryInstance","instanceId":"` + manyIDs + `"}`, "instanceId"},
		{"query long id", `{"activity":"queryInstance","instanceId":"a,` + long65 + `"}`, "instanceId"},
		{"refresh bad expire", `{"activity":"refreshInstance","scene":"RENEWAL","orderId":"o","orderLineId":"l","instanceId":"i","expireTime":"2022-11-24"}`, "expireTime"},
		{"refresh 15 digits", `{"activity":"refreshInstance","scene":"RENEWAL","orderId":"o","orderLineId":"l","instanceId":"i","expireTime":"202211240236181"}`, "expireTime"},
		{"refresh month 13", `{"activity":"refreshInstance","scene":"RENEWAL","orderId":"o","orderLineId":"l","instanceId":"i","expireTime":"20221324023618"}`, "expireTime"},
		{"refresh no scene", `{"activity":"refreshInstance","orderId":"o","orderLineId":"l","instanceId":"i","expireTime":"20221124023618"}`, "scene"},
		{"status bad", `{"activity":"updateInstanceStatus","instanceId":"i","status":"DELETE"}`, "status"},
		{"release no instance", `{"activity":"releaseInstance"}`, "instanceId"},
		{"upgrade no order", `{"activity":"upgradeInstance","instanceId":"i","orderLineId":"l"}`, "orderId"},
		{"change no productInfo", `{"activity":"changeInstanceCheck","instanceId":"i"}`, "productInfo"},
		{"change productInfo number", `{"activity":"changeInstanceCheck","instanceId":"i","productInfo":5}`, "productInfo"},
		{"change productInfo bad string", `{"activity":"changeInstanceCheck","instanceId":"i","productInfo":"not json"}`, "productInfo"},
		{"change productInfo empty list", `{"activity":"changeInstanceCheck","instanceId":"i","productInfo":[]}`, "productInfo"},
		{"change productInfo list of strings", `{"activity":"changeInstanceCheck","instanceId":"i","productInfo":[{"productId":"p"},"x"]}`, "productInfo[1]"},
		{"change productInfo string holding a string", `{"activity":"changeInstanceCheck","instanceId":"i","productInfo":"\"p\""}`, "productInfo"},
		{"change productInfo blank string", `{"activity":"changeInstanceCheck","instanceId":"i","productInfo":"  "}`, "productInfo"},
		{"change productInfo null", `{"activity":"changeInstanceCheck","instanceId":"i","productInfo":null}`, "productInfo"},
		{"notify no orderLineId", `{"activity":"orderNotify","orderId":"o"}`, "orderLineId"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeRequest([]byte(tc.body))
			if err == nil {
				t.Fatal("accepted")
			}
			if f := fieldOf(t, err); f != tc.field {
				t.Fatalf("field %q, want %q (%v)", f, tc.field, err)
			}
		})
	}
}

func TestEncodeRequestRoundTrip(t *testing.T) {
	reqs := []Request{
		&NewInstanceRequest{BusinessID: "b-0001", OrderID: "CS2211181819B4LVS", OrderLineID: "CS2211181819B4LVS-000001", TestFlag: "1"},
		&RefreshInstanceRequest{Scene: SceneRenewal, OrderID: "o", OrderLineID: "l", InstanceID: "i", ExpireTime: FormatTime17(time.Date(2027, 1, 2, 3, 4, 5, 6e6, time.UTC))},
		&ChangeInstanceCheckRequest{InstanceID: "i", ProductInfo: RawProductInfo{JSON: []byte(`{"productId":"p","linearValue":3}`)}},
	}
	for _, r := range reqs {
		b, err := EncodeRequest(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeRequest(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		b2, _ := EncodeRequest(got)
		if r.(interface{ IsTest() bool }).IsTest() && string(b) != string(b2) {
			t.Fatalf("round trip\n%s\n%s", b, b2)
		}
	}
	// The README vector body is exactly what EncodeRequest emits.
	b, _ := EncodeRequest(reqs[0])
	if want := `{"activity":"newInstance","businessId":"b-0001","orderId":"CS2211181819B4LVS","orderLineId":"CS2211181819B4LVS-000001","testFlag":"1"}`; string(b) != want {
		t.Fatalf("EncodeRequest = %s", b)
	}
}

func TestResponses(t *testing.T) {
	b, err := EncodeResponse(NewInstanceResponse{ResultCode: CodeSuccess, ResultMsg: "success", InstanceID: "b-0001"})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"resultCode":"000000","resultMsg":"success","instanceId":"b-0001"}` {
		t.Fatalf("%s", b)
	}
	if got := BodySignHeader(vecKey, b); !strings.Contains(got, "nuyLSQkO1L1v2ReITnI/46z0bFG+dhP8OkIXpAyqOiw=") {
		t.Fatalf("Body-Sign %s", got)
	}
	q := QueryInstanceResponse{ResultCode: CodeSuccess, ResultMsg: "success", Info: []InstanceInfo{{
		InstanceID: "i", AppInfo: &AppInfo{FrontEndURL: "https://app.example.com/?a=1&b=<2>", Memo: "说明 😀"},
		UsageInfo: []UsageInfo{{UsageValue: "12.5", StatisticalTime: "20240101000000000"}},
	}}}
	b, err = EncodeResponse(q)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"resultCode":"000000","resultMsg":"success","info":[{"instanceId":"i","appInfo":{"frontEndUrl":"https://app.example.com/?a=1&b=<2>","memo":"\u8bf4\u660e \ud83d\ude00"},"usageInfo":[{"usageValue":12.5,"statisticalTime":"20240101000000000"}]}]}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	back, err := DecodeQueryInstanceResponse(b)
	if err != nil || back.Info[0].AppInfo.Memo != "说明 😀" {
		t.Fatalf("%+v %v", back, err)
	}

	bad := []struct{ body, field string }{
		{`{"resultMsg":"x"}`, "resultCode"},
		{`{"resultCode":"000000","info":[{"instanceId":"i","appInfo":{"adminUrl":"x"}}]}`, "info[0].appInfo.frontEndUrl"},
		{`{"resultCode":"000000","info":[{"instanceId":"i","usageInfo":[{"usageValue":"1.23456","statisticalTime":"20240101000000000"}]}]}`, "info[0].usageInfo[0].usageValue"},
		{`{"resultCode":"000000","info":[{"instanceId":"i","usageInfo":[{"usageValue":1,"statisticalTime":"20240101"}]}]}`, "info[0].usageInfo[0].statisticalTime"},
		{`{"resultCode":"000000","encryptType":"3","info":[]}`, "encryptType"},
		{`{"resultCode":"000000","info":[{"instanceId":"i","appInfo":{"frontEndUrl":"u","password":"` + strings.Repeat("p", 129) + `"}}]}`, "info[0].appInfo.password"},
	}
	for _, tc := range bad {
		_, err := DecodeQueryInstanceResponse([]byte(tc.body))
		if f := fieldOf(t, err); f != tc.field {
			t.Fatalf("%s: field %q want %q", tc.body, f, tc.field)
		}
	}
	if _, err := DecodeNewInstanceResponse([]byte(`{"resultCode":"000004","resultMsg":"later"}`)); err == nil {
		t.Fatal("000004 without instanceId accepted")
	}
	if r, err := DecodeNewInstanceResponse([]byte(`{"resultCode":"000103","resultMsg":"dup"}`)); err != nil || r.ResultCode != CodeAlreadyPurchased {
		t.Fatalf("%+v %v", r, err)
	}
}

func TestCodeOf(t *testing.T) {
	tests := []struct {
		err  error
		code string
	}{
		{nil, CodeSuccess},
		{&AuthError{Reason: "x"}, CodeAuthFailed},
		{&FieldError{Field: "orderId", Reason: "is required"}, CodeBadParam},
		{ErrNoInstance, CodeNoInstance},
		{errors.Join(errors.New("ctx"), ErrInProgress), CodeInProgress},
		{ErrInternal, CodeInternal},
		{NewResultError(CodeSoldOut, ""), CodeSoldOut},
		{errors.New("db down: password=hunter2"), CodeInternal},
	}
	for _, tc := range tests {
		code, msg := CodeOf(tc.err)
		if code != tc.code {
			t.Fatalf("CodeOf(%v) = %s, want %s", tc.err, code, tc.code)
		}
		if strings.Contains(msg, "hunter2") {
			t.Fatal("internal error text leaked")
		}
		if r := ResponseFor(tc.err); r.ResultCode != code || r.ResultMsg == "" {
			t.Fatalf("ResponseFor = %+v", r)
		}
	}
	for _, c := range Codes() {
		if m, ok := CodeMessage(c); !ok || m == "" {
			t.Fatalf("code %s has no message", c)
		}
		if want := c >= "000100" && c <= "000107"; IsCreateCode(c) != want {
			t.Fatalf("IsCreateCode(%s) = %v, want %v", c, !want, want)
		}
	}
	if len(CreateCodes()) != 8 || IsCreateCode("000108") || IsCreateCode("") {
		t.Fatalf("CreateCodes = %v", CreateCodes())
	}
	if _, msg := CodeOf(&FieldError{Field: "orderId", Reason: "is required"}); !strings.Contains(msg, "orderId") {
		t.Fatalf("message %q does not name the field", msg)
	}
}

func TestQueryOrderDecode(t *testing.T) {
	body := `{"resultCode":"MKT.0000","resultMsg":"Success","orderInfo":{"orderId":"CS2207261447AUY4H","orderType":"NEW","createTime":"20220726064736",
 "orderLine":[{"orderLineId":"CS2207261447AUY4H-000001","chargingMode":"PERIOD","periodType":"year","periodNumber":"1","expireTime":"20230726155959",
 "productInfo":[{"productId":"OFFI1","skuCode":"sku1","linearValue":10,"productName":"n"}],"extendParams":[{"name":"k","value":"v"}],"currency":"CNY","currencyAfterDiscount":"99.5","unknown":true}],
 "buyerInfo":{"customerId":"c1","customerName":"n","userId":"u","userName":"un","mobilePhone":"123","email":"a@b.c","customerType":1},"extendParams":[]}}`
	r, err := DecodeQueryOrderResponse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	l, ok := r.OrderInfo.Line("CS2207261447AUY4H-000001")
	if !ok {
		t.Fatal("line not found")
	}
	if n, _ := l.PeriodNumber.Int64(); n != 1 {
		t.Fatalf("periodNumber %v", l.PeriodNumber)
	}
	if f, _ := l.CurrencyAfterDiscount.Float64(); f != 99.5 {
		t.Fatal("currencyAfterDiscount")
	}
	if l.ProductInfo[0].LinearValue != "10" || r.OrderInfo.BuyerInfo.CustomerType != "1" {
		t.Fatalf("%+v", l)
	}
	if v, ok := Param(l.ExtendParams, "k"); !ok || v != "v" {
		t.Fatal("extendParams")
	}
	if _, err := DecodeQueryOrderResponse([]byte(`{"resultCode":"MKT.0000","resultMsg":"ok"}`)); err == nil {
		t.Fatal("success without orderInfo accepted")
	}
	if _, err := DecodeQueryOrderResponse([]byte(`{"resultCode":"MKT.0000","resultMsg":"ok","orderInfo":{"orderId":"o","orderType":"NEW","orderLine":[{"orderLineId":"l","expireTime":"x"}]}}`)); fieldOfNoT(err) != "orderInfo.orderLine[0].expireTime" {
		t.Fatalf("bad expireTime: %v", err)
	}
	if q, _ := QueryOrderQuery("MOCK ORDER", "l/1"); q != "orderId=MOCK%20ORDER&orderLineId=l%2F1" {
		t.Fatal(q)
	}
	if _, err := QueryOrderQuery("", ""); err == nil {
		t.Fatal("empty orderId accepted")
	}
	if MKTStatus(MKTIllegalToken) != 401 || MKTStatus(MKTSuccess) != 200 || !IsMockOrder("MOCKONDEMAND") {
		t.Fatal("MKT helpers")
	}
}

func fieldOfNoT(err error) string {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe.Field
	}
	return ""
}

func TestUsagePush(t *testing.T) {
	req := &UsagePushRequest{UsageRecords: []UsageRecord{{
		InstanceID: "7f141bf1-aec8-4859-8323-fb3a8ad50721", MeteringSN: "sn-0001", UsageValue: "99",
		RecordTime: "20220809T091000Z", BeginTime: "20220809T080000Z", EndTime: "20220809T090000Z",
	}}}
	body, err := EncodeUsagePush(req)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"usage_records":[{"begin_time":"20220809T080000Z","end_time":"20220809T090000Z","instance_id":"7f141bf1-aec8-4859-8323-fb3a8ad50721","metering_sn":"sn-0001","record_time":"20220809T091000Z","usage_value":"99"}]}`
	if string(body) != want {
		t.Fatalf("got  %s\nwant %s", body, want)
	}
	if UsageSignature(vecKey, "1709690865879", "6c63c221-1f6b-4141-8ff4-22f5dfe82b65", body) != "T2myzy8KfShYxpwFj7baZQGvi2QumxGFs0XVtuiA17Q=" {
		t.Fatal("signature of the encoded body differs from the vector")
	}
	// A receiver verifies an unsorted body through the sorted reading.
	unsorted := `{"usage_records":[{"usage_value":"99","instance_id":"7f141bf1-aec8-4859-8323-fb3a8ad50721","metering_sn":"sn-0001","record_time":"20220809T091000Z","begin_time":"20220809T080000Z","end_time":"20220809T090000Z"}]}`
	if v, err := VerifyUsageSignature(vecKey, "T2myzy8KfShYxpwFj7baZQGvi2QumxGFs0XVtuiA17Q=", "1709690865879", "6c63c221-1f6b-4141-8ff4-22f5dfe82b65", []byte(unsorted)); err != nil || v != KitVariantSorted {
		t.Fatalf("%q %v", v, err)
	}
	if _, err := VerifyUsageSignature("other", "T2myzy8KfShYxpwFj7baZQGvi2QumxGFs0XVtuiA17Q=", "1709690865879", "6c63c221-1f6b-4141-8ff4-22f5dfe82b65", []byte(want)); err == nil {
		t.Fatal("wrong key accepted")
	}

	records := []struct {
		r    UsageRecord
		code string
	}{
		{UsageRecord{InstanceID: "i", UsageValue: "1", RecordTime: "20220809T091000Z", BeginTime: "20220809T080000Z", EndTime: "20220809T090000Z"}, UsageErrMissingSN},
		{UsageRecord{InstanceID: "i", MeteringSN: "s", UsageValue: "1", RecordTime: "2022-08-09", BeginTime: "20220809T080000Z", EndTime: "20220809T090000Z"}, UsageErrTimeFormat},
		{UsageRecord{InstanceID: "i", MeteringSN: "s", UsageValue: "1", RecordTime: "20220809T091000Z", BeginTime: "20220809T090000Z", EndTime: "20220809T080000Z"}, UsageErrTimeRange},
		{UsageRecord{InstanceID: "i", MeteringSN: "s", UsageValue: "0", RecordTime: "20220809T091000Z", BeginTime: "20220809T080000Z", EndTime: "20220809T090000Z"}, UsageErrUsageAbnormal},
		{UsageRecord{InstanceID: "i", MeteringSN: "s", UsageValue: "1.00001", RecordTime: "20220809T091000Z", BeginTime: "20220809T080000Z", EndTime: "20220809T090000Z"}, UsageErrUsageAbnormal},
		{UsageRecord{InstanceID: "i", MeteringSN: "s", UsageValue: "abc", RecordTime: "20220809T091000Z", BeginTime: "20220809T080000Z", EndTime: "20220809T090000Z"}, UsageErrUsageAbnormal},
		{UsageRecord{InstanceID: "i", MeteringSN: "s", UsageValue: "1.5", RecordTime: "20220809T091000Z", BeginTime: "20220809T080000Z", EndTime: "20220809T090000Z"}, ""},
	}
	for i, tc := range records {
		e := CheckRecord(i, tc.r)
		got := ""
		if e != nil {
			got = e.Code
		}
		if got != tc.code {
			t.Fatalf("record %d: code %q, want %q (%v)", i, got, tc.code, e)
		}
	}
	many := &UsagePushRequest{UsageRecords: make([]UsageRecord, UsagePushMaxRecords+1)}
	if _, err := EncodeUsagePush(many); fieldOfNoT(err) != "usage_records" {
		t.Fatalf("1001 records: %v", err)
	}
	got, bad, err := DecodeUsagePush([]byte(`{"usage_records":[{"instance_id":"i","metering_sn":"s","usage_value":2,"record_time":"20220809T091000Z","begin_time":"20220809T080000Z","end_time":"20220809T090000Z"},{"instance_id":"j","usage_value":"1","record_time":"20220809T091000Z","begin_time":"20220809T080000Z","end_time":"20220809T090000Z"}]}`))
	if err != nil || len(got.UsageRecords) != 2 || len(bad) != 1 || bad[0].Index != 1 || bad[0].Code != UsageErrMissingSN {
		t.Fatalf("%+v %+v %v", got, bad, err)
	}
}

func TestTimeFormats(t *testing.T) {
	ts := time.Date(2026, 11, 22, 10, 48, 25, 123456789, time.UTC)
	if FormatTime14(ts) != "20261122104825" || FormatTime17(ts) != "20261122104825123" || FormatUsageTime(ts) != "20261122T104825Z" {
		t.Fatal("formatters")
	}
	if FormatKitTimeStamp(ts) != "20261122184825123" {
		t.Fatal(FormatKitTimeStamp(ts))
	}
	if got, _ := ParseKitTimeStamp("20261122184825123"); !got.Equal(ts.Truncate(time.Millisecond)) {
		t.Fatal(got)
	}
	if got, _ := ParseExpireTime(FormatTime17(ts)); !got.Equal(ts.Truncate(time.Millisecond)) {
		t.Fatal(got)
	}
	if got, _ := ParseUsageTime("20261122T104825Z"); !got.Equal(ts.Truncate(time.Second)) {
		t.Fatal(got)
	}
	if got, _ := ParseExpireTime("20261122104825"); got.Location() != time.UTC {
		t.Fatal("not UTC")
	}
	for _, bad := range []string{"", "2026112210482", "2026112210482a", "20261322104825", "20260230104825", "+0261122104825", "20261122104825 ", "202611221048251234"} {
		if _, err := ParseExpireTime(bad); err == nil {
			t.Fatalf("ParseExpireTime(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"20261122104825Z", "20261122t104825Z", "20261122T104825", "2026-1122T104825Z", "20261122T250000Z"} {
		if _, err := ParseUsageTime(bad); err == nil {
			t.Fatalf("ParseUsageTime(%q) accepted", bad)
		}
	}
}

func TestErrorMessagesAreBounded(t *testing.T) {
	huge := strings.Repeat("9x", 50000)
	bodies := [][]byte{
		[]byte(`{"activity":"changeInstanceCheck","instanceId":"i","productInfo":"` + huge + `"}`),
		[]byte(`{"activity":"` + huge + `"}`),
		[]byte(`{"activity":"refreshInstance","scene":"RENEWAL","orderId":"o","orderLineId":"l","instanceId":"i","expireTime":"` + huge + `"}`),
	}
	for _, b := range bodies {
		_, err := DecodeRequest(b)
		if err == nil || len(err.Error()) > 300 {
			t.Fatalf("error too long (%d bytes) or missing", len(err.Error()))
		}
	}
	_, err := DecodeKitRequest("tenantSync", []byte(`{"tenantId":"t","flag":"`+huge+`","timeStamp":"20220413093539534"}`))
	if err == nil || len(err.Error()) > 300 {
		t.Fatalf("kit error too long or missing: %d", len(err.Error()))
	}
}

func TestNumber(t *testing.T) {
	tests := []struct {
		in       string
		want     Number
		i64      int64
		i64err   bool
		decimals int
	}{
		{`12`, "12", 12, false, 0},
		{`"12.50"`, "12.50", 0, true, 1},
		{`1.2e3`, "1.2e3", 1200, false, 0},
		{`"1e-2"`, "1e-2", 0, true, 2},
		{`null`, "", 0, false, 0},
		{`" 7 "`, "7", 7, false, 0},
		{`99999999999999999999`, "99999999999999999999", 0, true, 0},
		// Exponents far beyond the mantissa are decided without expanding
		// them (big.Rat took 25 ms for 1e999999).
		{`1e99999999`, "1e99999999", 0, true, 0},
		{`1e999999`, "1e999999", 0, true, 0},
		{`-2E+99999999`, "-2E+99999999", 0, true, 0},
		{`0e99999999`, "0e99999999", 0, false, 0},
		{`-0.0e-999999999999999999999`, "-0.0e-999999999999999999999", 0, false, 0},
		{`1e-99999999`, "1e-99999999", 0, true, 99999999},
		{`5e30`, "5e30", 0, true, 0},
		{`1e18`, "1e18", 1000000000000000000, false, 0},
		{`0.00000000000000000000000000001e29`, "0.00000000000000000000000000001e29", 1, false, 0},
		{`0E-0007`, "0E-0007", 0, false, 0}, // zero has no decimals however written
		{`10E-5`, "10E-5", 0, true, 4},      // 0.0001
		{`12.3400`, "12.3400", 0, true, 2},
	}
	for _, tc := range tests {
		var n Number
		if err := n.UnmarshalJSON([]byte(tc.in)); err != nil || n != tc.want {
			t.Fatalf("%s: %q %v", tc.in, n, err)
		}
		i, err := n.Int64()
		if (err != nil) != tc.i64err || (!tc.i64err && i != tc.i64) {
			t.Fatalf("%s: Int64 = %d %v", tc.in, i, err)
		}
		if d := n.Decimals(); d != tc.decimals {
			t.Fatalf("%s: Decimals = %d", tc.in, d)
		}
	}
	for _, bad := range []string{`"abc"`, `{}`, `[1]`, `true`, `"0x10"`} {
		var n Number
		if err := n.UnmarshalJSON([]byte(bad)); err == nil {
			t.Fatalf("%s accepted", bad)
		}
	}
	if _, err := Number("1;drop").MarshalJSON(); err == nil {
		t.Fatal("invalid number marshalled")
	}
	if b, _ := Number("").MarshalJSON(); string(b) != "null" {
		t.Fatal(string(b))
	}
}

func TestEveryActivityDecodes(t *testing.T) {
	full := `"businessId":"b","orderId":"o","orderLineId":"l","instanceId":"i","scene":"RENEWAL","expireTime":"20300101000000","status":"UNFREEZE","productInfo":{"productId":"p"},"testFlag":"1"`
	for _, a := range Activities() {
		r, err := DecodeRequest([]byte(`{"activity":"` + a + `",` + full + `}`))
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		if r.ActivityName() != a || !r.IsTest() {
			t.Fatalf("%s: %+v", a, r)
		}
		b, err := EncodeRequest(r)
		if err != nil || !strings.Contains(string(b), `"activity":"`+a+`"`) {
			t.Fatalf("%s: %s %v", a, b, err)
		}
	}
	r, _ := DecodeRequest([]byte(`{"activity":"refreshInstance",` + full + `}`))
	if !r.(*RefreshInstanceRequest).KnownScene() {
		t.Fatal("RENEWAL unknown")
	}
	if resp, err := DecodeResponse([]byte(`{"resultCode":"000000","resultMsg":"success."}`)); err != nil || resp.ResultCode != CodeSuccess {
		t.Fatalf("%+v %v", resp, err)
	}
	if _, err := DecodeResponse([]byte(`{"resultCode":"0000000","resultMsg":""}`)); fieldOfNoT(err) != "resultCode" {
		t.Fatalf("7-char resultCode: %v", err)
	}
}

// changeInstanceCheck's productInfo is undocumented: every documented form is
// accepted whatever its members and their types, and kept whole.
func TestChangeInstanceCheckProductInfoAsReceived(t *testing.T) {
	tests := []struct{ name, productInfo, json, form string }{
		{"extra members", `{"productId":"p","skuCode":"s","linearValue":10,"periodType":"month","specCode":"x.large","extendParams":[{"name":"a","value":"1"}]}`,
			`{"productId":"p","skuCode":"s","linearValue":10,"periodType":"month","specCode":"x.large","extendParams":[{"name":"a","value":"1"}]}`, ProductInfoObject},
		{"two-element list", `[{"productId":"p1","skuCode":"s1"},{"productId":"p2","linearValue":"2.50"}]`,
			`[{"productId":"p1","skuCode":"s1"},{"productId":"p2","linearValue":"2.50"}]`, ProductInfoArray},
		{"linearValue with a unit", `{"productId":"p","linearValue":"10GB"}`, `{"productId":"p","linearValue":"10GB"}`, ProductInfoObject},
		{"members of any type", `{"productId":123,"skuCode":null,"linearValue":{"v":1},"flag":true,"n":1.50e3}`,
			`{"productId":123,"skuCode":null,"linearValue":{"v":1},"flag":true,"n":1.50e3}`, ProductInfoObject},
		{"string holding a list", `"[{\"productId\":\"p\",\"periodType\":\"year\"},{\"productId\":\"q\"}]"`,
			`[{"productId":"p","periodType":"year"},{"productId":"q"}]`, ProductInfoStringArray},
		{"string holding an object, spaced", `" { \"productId\" : \"p\" , \"extra\" : [ 1 , 2 ] } "`, `{"productId":"p","extra":[1,2]}`, ProductInfoStringObject},
		{"no productId", `{"skuCode":"s"}`, `{"skuCode":"s"}`, ProductInfoObject},
		{"non-ASCII kept", `{"productName":"云商店 \u00e9"}`, `{"productName":"云商店 é"}`, ProductInfoObject},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := DecodeRequest([]byte(`{"activity":"changeInstanceCheck","instanceId":"i","productInfo":` + tc.productInfo + `}`))
			if err != nil {
				t.Fatal(err)
			}
			pi := req.(*ChangeInstanceCheckRequest).ProductInfo
			if string(pi.JSON) != tc.json || pi.Form != tc.form {
				t.Fatalf("productInfo %s (%s), want %s (%s)", pi.JSON, pi.Form, tc.json, tc.form)
			}
			// Re-encoding keeps it whole too.
			enc, err := EncodeRequest(req)
			if err != nil || !strings.Contains(string(enc), `"productInfo":`+tc.json) {
				t.Fatalf("EncodeRequest = %s, %v", enc, err)
			}
		})
	}
	// The typed accessor reads what it can and never fails.
	req, err := DecodeRequest([]byte(`{"activity":"changeInstanceCheck","instanceId":"i","productInfo":[{"productId":7,"skuCode":"s","linearValue":"10GB"},{"productId":"q","linearValue":"3"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	ps := req.(*ChangeInstanceCheckRequest).ProductInfo.Products()
	if len(ps) != 2 || ps[0] != (ProductInfo{ProductID: "7", SKUCode: "s"}) || ps[1] != (ProductInfo{ProductID: "q", LinearValue: "3"}) {
		t.Fatalf("Products = %+v", ps)
	}
	// encoding/json callers get the same rules.
	var r ChangeInstanceCheckRequest
	if err := json.Unmarshal([]byte(`{"instanceId":"i","productInfo":"{\"productId\":\"p\",\"x\":1}"}`), &r); err != nil || string(r.ProductInfo.JSON) != `{"productId":"p","x":1}` {
		t.Fatalf("json.Unmarshal: %s %v", r.ProductInfo.JSON, err)
	}
	if err := json.Unmarshal([]byte(`{"productInfo":[]}`), &r); err == nil {
		t.Fatal("json.Unmarshal accepted an empty list")
	}
}

// validRequests is one valid body per activity.
var validRequests = map[string]map[string]any{
	ActivityNewInstance:          {"businessId": "b", "orderId": "o", "orderLineId": "l"},
	ActivityQueryInstance:        {"instanceId": "i"},
	ActivityRefreshInstance:      {"instanceId": "i", "orderId": "o", "orderLineId": "l", "scene": "RENEWAL", "expireTime": "20300101000000"},
	ActivityUpdateInstanceStatus: {"instanceId": "i", "status": "FREEZE"},
	ActivityReleaseInstance:      {"instanceId": "i"},
	ActivityUpgradeInstance:      {"instanceId": "i", "orderId": "o", "orderLineId": "l"},
	ActivityChangeInstanceCheck:  {"instanceId": "i", "productInfo": map[string]any{"productId": "p"}},
	ActivityOrderNotify:          {"orderId": "o", "orderLineId": "l"},
}

// A blank required member ("orderId":" ") is a missing one: it must never
// become an identifier or an idempotency key. Every required member of every
// basic interface, found from the kg tags.
func TestBlankRequiredMembersAreMissing(t *testing.T) {
	for _, activity := range Activities() {
		valid := validRequests[activity]
		body := func(name string, v any) []byte {
			m := map[string]any{"activity": activity}
			for k, x := range valid {
				m[k] = x
			}
			if name != "" {
				m[name] = v
			}
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		if _, err := DecodeRequest(body("", nil)); err != nil {
			t.Fatalf("%s: the valid body is refused: %v", activity, err)
		}
		typ := reflect.TypeOf(NewRequest(activity)).Elem()
		n := 0
		for i := 0; i < typ.NumField(); i++ {
			rule, ok := parseRule(typ.Field(i))
			if !ok || !rule.required {
				continue
			}
			n++
			for _, blank := range []string{"", " ", "\t\r\n ", "\u00a0\u3000"} {
				_, err := DecodeRequest(body(rule.name, blank))
				if err == nil {
					t.Fatalf("%s: %s %q accepted", activity, rule.name, blank)
				}
				if f := fieldOf(t, err); f != rule.name {
					t.Fatalf("%s: %s %q: error names %q (%v)", activity, rule.name, blank, f, err)
				}
			}
		}
		if n == 0 {
			t.Fatalf("%s has no required member", activity)
		}
	}
	// Surrounding spaces around a real value are kept as sent: only a blank
	// value is refused.
	r, err := DecodeRequest([]byte(`{"activity":"newInstance","businessId":"b","orderId":" o ","orderLineId":"l"}`))
	if err != nil || r.(*NewInstanceRequest).OrderID != " o " {
		t.Fatalf("%+v %v", r, err)
	}
	// A newInstance answer of 000000 needs a real instanceId.
	if _, err := DecodeNewInstanceResponse([]byte(`{"resultCode":"000000","instanceId":"  "}`)); fieldOfNoT(err) != "instanceId" {
		t.Fatalf("blank instanceId answer: %v", err)
	}
}

// Double(12,4) is 8 integer digits and 4 decimals: one check for every usage
// value souk reads or the merchant accepts.
func TestParseUsageValue(t *testing.T) {
	for _, tc := range []struct {
		in       string
		positive bool
		want     string // FormatUsageValue of the result; "" = refused
	}{
		{"1", true, "1"}, {"0.5", true, "0.5"}, {"12.3400", true, "12.34"}, {" 7 ", true, "7"}, {"0.0001", true, "0.0001"},
		{"0", false, "0"}, {"-0", false, "0"}, {"0.0000", false, "0"}, {"0e5", false, "0"}, {"0", true, ""},
		{"99999999.9999", true, "99999999.9999"}, {"99999999", true, "99999999"}, {"9999999.99990", true, "9999999.9999"},
		{"100000000", true, ""}, {"100000000.0", true, ""}, {"999999999999.9999", true, ""}, {"1000000000000", true, ""},
		{"1e3", true, "1000"}, {"1.5E+3", true, "1500"}, {"1e7", true, "10000000"}, {"1e8", true, ""}, {"12345e-4", true, "1.2345"},
		{"1e-4", true, "0.0001"}, {"1e-5", true, ""}, {"1e999999999999999999999", true, ""}, {"1e-999999999999999999999", true, ""},
		{"1.23456", true, ""}, {"-1", false, ""}, {"-1", true, ""}, {"", false, ""}, {" ", false, ""},
		{".5", true, ""}, {"5.", true, ""}, {"+1", true, ""}, {"00.10", true, ""}, {"0x10", true, ""}, {"ten", true, ""}, {"NaN", true, ""},
	} {
		v, err := ParseUsageValue(tc.in, tc.positive)
		got := ""
		if err == nil {
			got = FormatUsageValue(v)
		}
		if got != tc.want {
			t.Errorf("ParseUsageValue(%q, %v) = %q (%v), want %q", tc.in, tc.positive, got, err, tc.want)
		}
	}
	// The decoders apply it: a queryInstance usageValue and a usage-push
	// usage_value of 1e8 or more are refused.
	if _, err := DecodeQueryInstanceResponse([]byte(`{"resultCode":"000000","info":[{"instanceId":"i","usageInfo":[{"usageValue":123456789,"statisticalTime":"20240101000000000"}]}]}`)); fieldOfNoT(err) != "info[0].usageInfo[0].usageValue" {
		t.Fatalf("usageValue 123456789: %v", err)
	}
	if e := CheckRecord(0, UsageRecord{BeginTime: "20220809T080000Z", EndTime: "20220809T090000Z", InstanceID: "i", MeteringSN: "sn", RecordTime: "20220809T091000Z", UsageValue: "100000000"}); e == nil || e.Code != UsageErrUsageAbnormal {
		t.Fatalf("usage_value 1e8: %v", e)
	}
}
