package kg_test

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/soukhq/souk/kg"
)

// The market signs a basic-interface call; the merchant verifies it over the
// raw body and decodes it.
func Example() {
	body, _ := kg.EncodeRequest(&kg.NewInstanceRequest{BusinessID: "b-0001", OrderID: "CS2211181819B4LVS", OrderLineID: "CS2211181819B4LVS-000001", TestFlag: "1"})
	now := time.UnixMilli(1680508066618)
	u, _ := kg.SignedURL("https://isv.example.com/saasproduce", "TestAccessKey123", body, now, "50D83FDECAED6CCD8EF597F2A577950527928BA287D04E6036E92B2806FD17DA")

	q, _ := url.Parse(u)
	p := q.Query()
	idx, variant, err := kg.VerifyV2([]string{"TestAccessKey123"}, p.Get("signature"), p.Get("nonce"), p.Get("timestamp"), body, now.Add(2*time.Second), kg.DefaultWindow)
	fmt.Println(p.Get("signature"), idx, variant, err)

	req, _ := kg.DecodeRequest(body)
	n := req.(*kg.NewInstanceRequest)
	fmt.Println(n.ActivityName(), n.OrderLineID, n.IsTest())

	resp, _ := kg.EncodeResponse(kg.NewInstanceResponse{ResultCode: kg.CodeSuccess, ResultMsg: "success", InstanceID: n.BusinessID})
	fmt.Println(string(resp))
	fmt.Println(kg.BodySignHeader("TestAccessKey123", resp))
	// Output:
	// 092E116C0F2D1B696DA9E05781613862D0F72C3EF5CC6469D2BD36D69E09A099 0 ms <nil>
	// newInstance CS2211181819B4LVS-000001 true
	// {"resultCode":"000000","resultMsg":"success","instanceId":"b-0001"}
	// sign_type="HMAC-SHA256", signature= "nuyLSQkO1L1v2ReITnI/46z0bFG+dhP8OkIXpAyqOiw="
}

func ExampleCodeOf() {
	_, err := kg.DecodeRequest([]byte(`{"activity":"newInstance","orderId":"o","orderLineId":"l"}`))
	fmt.Println(kg.CodeOf(err))
	fmt.Println(kg.CodeOf(fmt.Errorf("release i-1: %w", kg.ErrNoInstance)))
	fmt.Println(kg.CodeOf(errors.New("connection refused")))
	// Output:
	// 000002 invalid field businessId: is required
	// 000003 instance does not exist
	// 000005 internal error
}

func ExampleEncryptCredentialIV() {
	enc, _ := kg.EncryptCredentialIV("TestAccessKey123", kg.EncryptAES256, "0123456789abcdef", "P@ssw0rd!")
	dec, _ := kg.DecryptCredential("TestAccessKey123", kg.EncryptAES256, enc)
	fmt.Println(enc, dec)
	// Output: 0123456789abcdefoA1bcTFQxviCjqM3Vpjrpg== P@ssw0rd!
}
