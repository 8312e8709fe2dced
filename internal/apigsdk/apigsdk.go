// Package apigsdk signs requests for tests with Huawei Cloud's official Go
// SDK signer (SDK-HMAC-SHA256): the reference kg's APIG signature and the
// market's open APIs are checked against.
package apigsdk

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/auth/signer"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/request"
	"github.com/soukhq/souk/kg"
)

// Call is a request to sign.
type Call struct {
	Method   string
	Endpoint string // scheme and host
	Path     string
	Query    map[string]any
	Headers  map[string]string
	Body     string // sent verbatim (the SDK writes a string body as is); "" sends none
}

// Sign signs c with ak and sk at date (X-Sdk-Date) and returns the
// *http.Request the SDK would send.
func Sign(t testing.TB, c Call, ak, sk string, date time.Time) *http.Request {
	t.Helper()
	host := strings.TrimPrefix(strings.TrimPrefix(c.Endpoint, "https://"), "http://")
	b := request.NewHttpRequestBuilder().WithMethod(c.Method).WithEndpoint(c.Endpoint).WithPath(c.Path)
	if c.Body != "" {
		b.WithBody("body", c.Body)
	}
	for k, v := range c.Query {
		b.AddQueryParam(k, reflect.ValueOf(v))
	}
	for k, v := range c.Headers {
		b.AddHeaderParam(k, v)
	}
	b.AddHeaderParam("Host", host)
	b.AddHeaderParam("X-Sdk-Date", date.UTC().Format(kg.APIGDateFormat))
	req := b.Build()
	add, err := signer.Signer{}.Sign(req, ak, sk)
	if err != nil {
		t.Fatal(err)
	}
	hr, err := req.ConvertRequest()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range add {
		hr.Header.Set(k, v)
	}
	hr.Header.Del("Host")
	return hr
}
