package kg

import (
	"errors"
)

// SaaS result codes (saas-v2.md §7). Every response carries one of them in
// resultCode; the HTTP status is always 200.
const (
	CodeSuccess    = "000000" // success
	CodeAuthFailed = "000001" // authentication failed
	CodeBadParam   = "000002" // invalid request parameter
	CodeNoInstance = "000003" // instance ID does not exist
	CodeInProgress = "000004" // request being processed (newInstance: provisioning asynchronously)
	CodeInternal   = "000005" // other internal error

	CodeNoResource        = "000100" // no instance resource can be allocated
	CodeMobileInvalid     = "000101" // mobile number missing or already exists
	CodeEmailInvalid      = "000102" // e-mail missing or already exists
	CodeAlreadyPurchased  = "000103" // product cannot be purchased twice
	CodeProductInternal   = "000104" // internal service error of this product
	CodeBenefitsOwned     = "000105" // account has already subscribed to benefits
	CodeSoldOut           = "000106" // product resources sold out
	CodeEmailDomainExists = "000107" // SaaS e-mail domain already exists
)

// codeMessages holds the default resultMsg of each code.
var codeMessages = map[string]string{
	CodeSuccess:           "success",
	CodeAuthFailed:        "authentication failed",
	CodeBadParam:          "invalid request parameter",
	CodeNoInstance:        "instance does not exist",
	CodeInProgress:        "request is being processed",
	CodeInternal:          "internal error",
	CodeNoResource:        "no instance resource can be allocated",
	CodeMobileInvalid:     "mobile number is missing or already exists",
	CodeEmailInvalid:      "e-mail is missing or already exists",
	CodeAlreadyPurchased:  "product cannot be purchased twice",
	CodeProductInternal:   "internal service error of this product",
	CodeBenefitsOwned:     "account has already subscribed to benefits",
	CodeSoldOut:           "product resources sold out",
	CodeEmailDomainExists: "SaaS e-mail domain already exists",
}

// CodeMessage returns the default message of a result code, and whether the
// code is one of the documented SaaS codes.
func CodeMessage(code string) (string, bool) {
	m, ok := codeMessages[code]
	return m, ok
}

// Codes returns every documented SaaS result code, in ascending order.
func Codes() []string {
	return []string{
		CodeSuccess, CodeAuthFailed, CodeBadParam, CodeNoInstance, CodeInProgress, CodeInternal,
		CodeNoResource, CodeMobileInvalid, CodeEmailInvalid, CodeAlreadyPurchased,
		CodeProductInternal, CodeBenefitsOwned, CodeSoldOut, CodeEmailDomainExists,
	}
}

// CreateCodes returns the create-instance result codes (000100–000107), in
// ascending order: the refusals newInstance may answer (saas-v2.md §7).
func CreateCodes() []string {
	return []string{
		CodeNoResource, CodeMobileInvalid, CodeEmailInvalid, CodeAlreadyPurchased,
		CodeProductInternal, CodeBenefitsOwned, CodeSoldOut, CodeEmailDomainExists,
	}
}

// IsCreateCode reports whether code is one of CreateCodes.
func IsCreateCode(code string) bool {
	for _, c := range CreateCodes() {
		if c == code {
			return true
		}
	}
	return false
}

// AuthError is a failed authentication (a signature, timestamp or key problem).
// It maps to 000001. Reason never contains a secret.
type AuthError struct {
	Reason string
}

func (e *AuthError) Error() string { return "authentication failed: " + e.Reason }

// FieldError is an invalid request field. It maps to 000002 and its message
// names the field.
type FieldError struct {
	Field  string // JSON name of the field, dotted for nested fields (e.g. "productInfo.skuCode", "userList[3].role")
	Reason string
}

func (e *FieldError) Error() string { return "invalid field " + e.Field + ": " + e.Reason }

// ResultError carries an explicit result code and message, e.g. one of the
// 0001xx create-instance codes.
type ResultError struct {
	Code string
	Msg  string
}

func (e *ResultError) Error() string {
	if e.Msg == "" {
		m, _ := CodeMessage(e.Code)
		return "result " + e.Code + ": " + m
	}
	return "result " + e.Code + ": " + e.Msg
}

// Sentinel errors for the common codes. Wrap them (fmt.Errorf("…: %w", kg.ErrNoInstance))
// to add context; CodeOf still finds them.
var (
	ErrNoInstance = &ResultError{Code: CodeNoInstance, Msg: "instance does not exist"}
	ErrInProgress = &ResultError{Code: CodeInProgress, Msg: "request is being processed"}
	ErrInternal   = &ResultError{Code: CodeInternal, Msg: "internal error"}

	ErrNoResource        = &ResultError{Code: CodeNoResource, Msg: "no instance resource can be allocated"}
	ErrMobileInvalid     = &ResultError{Code: CodeMobileInvalid, Msg: "mobile number is missing or already exists"}
	ErrEmailInvalid      = &ResultError{Code: CodeEmailInvalid, Msg: "e-mail is missing or already exists"}
	ErrAlreadyPurchased  = &ResultError{Code: CodeAlreadyPurchased, Msg: "product cannot be purchased twice"}
	ErrProductInternal   = &ResultError{Code: CodeProductInternal, Msg: "internal service error of this product"}
	ErrBenefitsOwned     = &ResultError{Code: CodeBenefitsOwned, Msg: "account has already subscribed to benefits"}
	ErrSoldOut           = &ResultError{Code: CodeSoldOut, Msg: "product resources sold out"}
	ErrEmailDomainExists = &ResultError{Code: CodeEmailDomainExists, Msg: "SaaS e-mail domain already exists"}
)

// NewResultError returns a *ResultError with code and msg (the code's default
// message when msg is empty).
func NewResultError(code, msg string) *ResultError {
	if msg == "" {
		msg, _ = CodeMessage(code)
	}
	return &ResultError{Code: code, Msg: msg}
}

// CodeOf maps an error to the resultCode and resultMsg to answer with:
// nil → 000000; *AuthError → 000001; *FieldError → 000002 (message naming the
// field); *ResultError → its code; anything else → 000005 with a generic
// message (internal details are never echoed to the caller).
func CodeOf(err error) (code, msg string) {
	if err == nil {
		return CodeSuccess, codeMessages[CodeSuccess]
	}
	var ae *AuthError
	if errors.As(err, &ae) {
		return CodeAuthFailed, ae.Error()
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return CodeBadParam, fe.Error()
	}
	var re *ResultError
	if errors.As(err, &re) {
		msg := re.Msg
		if msg == "" {
			msg, _ = CodeMessage(re.Code)
		}
		if msg == "" {
			msg = "error " + re.Code
		}
		return re.Code, msg
	}
	return CodeInternal, codeMessages[CodeInternal]
}
