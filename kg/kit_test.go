package kg

import (
	"strings"
	"testing"
	"time"
)

func TestDecodeKitRequestValid(t *testing.T) {
	tenant := `{"instanceId":"huaiweitest123456","orderId":"CS1906666666ABCDE","tenantId":"68cbc86","tenantCode":"huawei","name":"huaiweitest","domainName":"https://example.tenantaccount.com","flag":1,"testFlag":0,"timeStamp":"20220413093539534"}`
	r, err := DecodeKitRequest("/saasproduce/produceAPI/v2/tenantSync", []byte(tenant))
	if err != nil {
		t.Fatal(err)
	}
	ts := r.(*TenantSyncRequest)
	if ts.Flag != 1 || ts.DomainName != "https://example.tenantaccount.com" || ts.Tenant() != "68cbc86" || ts.IsTest() {
		t.Fatalf("%+v", ts)
	}

	app := `{"instanceId":"","tenantId":"t","appId":"a","clientId":"c","clientSecret":"Zm9v","flag":"2","testFlag":"1","timeStamp":"20220413093539534"}`
	r, err = DecodeKitRequest("applicationSync", []byte(app))
	if err != nil {
		t.Fatal(err)
	}
	if a := r.(*ApplicationSyncRequest); a.Flag != 2 || !a.IsTest() || a.ClientSecret != "Zm9v" {
		t.Fatalf("%+v", a)
	}

	// V2 array and V1 string forms of userList, extension, boolean enable.
	v2 := `{"instanceId":"i","tenantId":"t","appId":"a","flag":1,"testFlag":0,"timeStamp":"20220413093539534","currentSyncTime":"20220413093539534",
 "userList":[{"userName":"zhangsan01","name":"张三","orgCode":"1","role":"ADMIN","enable":true,"employeeType":4}]}`
	v1 := `{"instanceId":"i","tenantId":"t","appId":"a","flag":1,"testFlag":0,"timeStamp":"20220413093539534",
 "userList":"[{\"userName\":\"zhangsan01\",\"name\":\"张三\",\"orgCode\":\"1\",\"role\":\"admin\",\"enable\":\"true\",\"extension\":{\"entryDate\":\"2022-11-9\",\"employeeType\":\"4\",\"workPlace\":\"南京\"}}]"}`
	for _, body := range []string{v2, v1} {
		r, err := DecodeKitRequest("/produceAPI/v2/authSync", []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		u := r.(*AuthSyncRequest).UserList[0]
		if !u.IsAdmin() || !u.Enabled() || u.EmployeeType != "4" || u.Name != "张三" {
			t.Fatalf("%+v", u)
		}
	}

	single := `{"instanceId":"i","tenantId":"t","orgCode":"10000","name":"开发部","parentCode":"","flag":1,"testFlag":0,"timeStamp":"20220413093539534"}`
	r, err = DecodeKitRequest("/produceAPI/v2/singleOrgSync/", []byte(single))
	if err != nil || r.(*SingleOrgSyncRequest).OrgName != "开发部" {
		t.Fatalf("%+v %v", r, err)
	}

	// The documented V2 example: orgInfoList as a string with unquoted keys, extra flag.
	all := `{"instanceId":"i","tenantId":"t","orgInfoList":"[{orgCode:\"00000001\", orgName:\"产品部\", parentCode:\"265789314\" },{orgCode:\"00000002\", OrgName:\"a:b\", parentCode:\"265789314\"}]","flag":1,"testFlag":0,"timeStamp":"20220413093539534"}`
	r, err = DecodeKitRequest("allOrgSync", []byte(all))
	if err != nil {
		t.Fatal(err)
	}
	a := r.(*AllOrgSyncRequest)
	if len(a.OrgInfoList) != 2 || a.OrgInfoList[0].OrgName != "产品部" || a.OrgInfoList[1].OrgName != "a:b" || a.Flag == nil || *a.Flag != 1 {
		t.Fatalf("%+v", a)
	}
	v1all := `{"instanceId":"i","tenantId":"t","orgInfo":[{"orgCode":"1","name":"n"}],"testFlag":0,"timeStamp":"20220413093539534"}`
	if r, err := DecodeKitRequest("allOrgSync", []byte(v1all)); err != nil || r.(*AllOrgSyncRequest).OrgInfoList[0].OrgName != "n" {
		t.Fatalf("%+v %v", r, err)
	}
	// Deletes need only the keys.
	del := `{"tenantId":"t","flag":0,"timeStamp":"20220413093539534"}`
	if _, err := DecodeKitRequest("tenantSync", []byte(del)); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeKitRequestInvalid(t *testing.T) {
	const ts = `"timeStamp":"20220413093539534"`
	users := func(n int) string {
		return strings.TrimSuffix(strings.Repeat(`{"userName":"u","name":"n","orgCode":"o","role":"user","enable":"true"},`, n), ",")
	}
	tests := []struct{ name, path, body, field string }{
		{"unknown path", "/produceAPI/v2/explode", `{}`, "path"},
		{"not json", "tenantSync", `{`, "body"},
		{"tenant no tenantId", "tenantSync", `{"flag":1,"name":"n","domainName":"d","tenantCode":"c",` + ts + `}`, "tenantId"},
		{"tenant no flag", "tenantSync", `{"tenantId":"t","name":"n","domainName":"d",` + ts + `}`, "flag"},
		{"tenant bad flag", "tenantSync", `{"tenantId":"t","flag":3,"name":"n","domainName":"d",` + ts + `}`, "flag"},
		{"tenant flag text", "tenantSync", `{"tenantId":"t","flag":"add","name":"n","domainName":"d",` + ts + `}`, "flag"},
		{"tenant add no domain", "tenantSync", `{"tenantId":"t","flag":1,"name":"n","tenantCode":"c",` + ts + `}`, "domainName"},
		{"tenant bad timeStamp", "tenantSync", `{"tenantId":"t","flag":0,"timeStamp":"2022-04-13"}`, "timeStamp"},
		{"tenant no timeStamp", "tenantSync", `{"tenantId":"t","flag":0}`, "timeStamp"},
		{"tenant bad testFlag", "tenantSync", `{"tenantId":"t","flag":0,"testFlag":5,` + ts + `}`, "testFlag"},
		{"tenant name object", "tenantSync", `{"tenantId":"t","flag":1,"name":{"x":1},"domainName":"d",` + ts + `}`, "name"},
		{"tenant long name", "tenantSync", `{"tenantId":"t","flag":1,"name":"` + strings.Repeat("名", 256) + `","domainName":"d",` + ts + `}`, "name"},
		{"app add no secret", "applicationSync", `{"tenantId":"t","appId":"a","clientId":"c","flag":1,` + ts + `}`, "clientSecret"},
		{"app no appId", "applicationSync", `{"tenantId":"t","flag":0,` + ts + `}`, "appId"},
		{"auth no users", "authSync", `{"tenantId":"t","appId":"a","flag":1,` + ts + `}`, "userList"},
		{"auth empty users", "authSync", `{"tenantId":"t","appId":"a","flag":1,"userList":[],` + ts + `}`, "userList"},
		{"auth 501 users", "authSync", `{"tenantId":"t","appId":"a","flag":1,"userList":[` + users(501) + `],` + ts + `}`, "userList"},
		{"auth bad role", "authSync", `{"tenantId":"t","appId":"a","flag":1,"userList":[{"userName":"u","name":"n","orgCode":"o","role":"root","enable":"true"}],` + ts + `}`, "userList[0].role"},
		{"auth bad enable", "authSync", `{"tenantId":"t","appId":"a","flag":1,"userList":[{"userName":"u","name":"n","orgCode":"o","role":"user","enable":"yes"}],` + ts + `}`, "userList[0].enable"},
		{"auth no userName", "authSync", `{"tenantId":"t","appId":"a","flag":1,"userList":[` + users(2) + `,{"name":"n"}],` + ts + `}`, "userList[2].userName"},
		{"auth flag 4", "authSync", `{"tenantId":"t","appId":"a","flag":4,"userList":[` + users(1) + `],` + ts + `}`, "flag"},
		{"auth userList number", "authSync", `{"tenantId":"t","appId":"a","flag":1,"userList":7,` + ts + `}`, "userList"},
		{"auth userList bad string", "authSync", `{"tenantId":"t","appId":"a","flag":1,"userList":"[{",` + ts + `}`, "userList"},
		{"single add no name", "singleOrgSync", `{"tenantId":"t","orgCode":"o","flag":1,` + ts + `}`, "orgName"},
		{"single no orgCode", "singleOrgSync", `{"tenantId":"t","flag":0,` + ts + `}`, "orgCode"},
		{"all no list", "allOrgSync", `{"tenantId":"t",` + ts + `}`, "orgInfoList"},
		{"all entry no name", "allOrgSync", `{"tenantId":"t","orgInfoList":[{"orgCode":"1"}],` + ts + `}`, "orgInfoList[0].orgName"},
		{"all duplicate code", "allOrgSync", `{"tenantId":"t","orgInfoList":[{"orgCode":"1","orgName":"a"},{"orgCode":"1","orgName":"b"}],` + ts + `}`, "orgInfoList[1].orgCode"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeKitRequest(tc.path, []byte(tc.body))
			if err == nil {
				t.Fatal("accepted")
			}
			if f := fieldOf(t, err); f != tc.field {
				t.Fatalf("field %q, want %q (%v)", f, tc.field, err)
			}
		})
	}
}

func TestEncodeKitRequestSignsBothWays(t *testing.T) {
	req := &AuthSyncRequest{TenantID: "t", AppID: "a", Flag: KitFlagAdd, TimeStamp: FormatKitTimeStamp(time.Unix(1700000000, 0)),
		UserList: []KitUser{{UserName: "u<1>", Name: "名", OrgCode: "o", Role: RoleUser, Enable: "true"}}}
	body, err := EncodeKitRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(body), `{"appId":"a","currentSyncTime":"","flag":1,`) || !strings.Contains(string(body), `"u<1>"`) {
		t.Fatalf("%s", body)
	}
	now := time.UnixMilli(1700000000000)
	ts := FormatTimestampMillis(now)
	sig := KitSign("kitkey", "n", ts, body)
	if v, err := VerifyKitSign([]string{"kitkey"}, sig, "n", ts, body, now, DefaultWindow); err != nil || v != KitVariantRaw {
		t.Fatalf("%q %v", v, err)
	}
	back, err := DecodeKitRequest(KitPath(KitAuthSync), body)
	if err != nil || back.(*AuthSyncRequest).UserList[0].UserName != "u<1>" {
		t.Fatalf("%+v %v", back, err)
	}
}

func TestKitNameFromPath(t *testing.T) {
	for path, want := range map[string]string{
		"/produceAPI/v2/tenantSync": "tenantSync", "/x/produceAPI/authSync/": "authSync", "allOrgSync": "allOrgSync",
		"/produceAPI/v2/": "", "": "", "/produceAPI/v2/tenantsync": "",
	} {
		if got := KitNameFromPath(path); got != want {
			t.Fatalf("KitNameFromPath(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestKitEmptyStringMembers(t *testing.T) {
	r, err := DecodeKitRequest("tenantSync", []byte(`{"tenantId":"t","flag":"0","testFlag":"","timeStamp":"20220413093539534"}`))
	if err != nil || r.IsTest() {
		t.Fatalf("%+v %v", r, err)
	}
	if _, err := DecodeKitRequest("tenantSync", []byte(`{"tenantId":"t","flag":" ","timeStamp":"20220413093539534"}`)); fieldOfNoT(err) != "flag" {
		t.Fatalf("empty flag: %v", err)
	}
	if _, err := DecodeRequest([]byte(`{"activity":"changeInstanceCheck","instanceId":"i","productInfo":""}`)); fieldOfNoT(err) != "productInfo" {
		t.Fatalf("empty productInfo: %v", err)
	}
}
