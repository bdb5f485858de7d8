package huawei

import (
	"net/http"
	"testing"

	"github.com/imcloud/im-push-operator/dispatcher/providers"
	fakehuawei "github.com/imcloud/im-push-operator/dispatcher/providers/fake/huawei"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake/providertest"
)

// FuzzAnswer hands the real client arbitrary answers to its send (or, with
// atAuth, to its OAuth token request) while everything else talks to the
// fake: whatever Huawei says, Send must not panic and must return a result
// fake.CheckResult accepts.
func FuzzAnswer(f *testing.F) {
	const token = "tok-fuzz-0001"
	srv := providertest.Start(f, fakehuawei.Start)
	(&providertest.Fuzz{
		Seeds: []providertest.Seed{
			{200, "", `{"code":"80000000","msg":"Success","requestId":"r1"}`, false},
			{200, "", `{"code":"80100000","msg":"{\"success\":0,\"failure\":1,\"illegal_tokens\":[\"tok-fuzz-0001\"]}"}`, false},
			{200, "", `{"code":"80100000","msg":"not json"}`, false},
			{400, "", `{"code":"80300007","msg":"All the tokens are invalid"}`, false},
			{401, "", `{"code":"80200003","msg":"OAuth token expired"}`, false},
			{401, "", `{"code":"80200001","msg":"Oauth authentication error"}`, false},
			{500, "5", `{"code":"81000001","msg":"System inner error"}`, false},
			{503, "Wed, 21 Oct 2015 07:28:00 GMT", ``, false},
			{400, "-3", `{"code":80000000}`, false},
			{200, "", `{"code":""}`, false},
			{200, "", `[[[[[[[[[[]]]]]]]]]]`, false},
			{0, "", ``, false},
			{200, "", `{"access_token":"AT-1","expires_in":3600,"token_type":"Bearer"}`, true},
			{200, "", `{"access_token":"","expires_in":-1}`, true},
			{400, "", `{"error":1102,"sub_error":20152,"error_description":"invalid client"}`, true},
			{429, "10", `<html>busy</html>`, true},
			{0, "", ``, true},
		},
		Fake:    srv.Client().Transport,
		Send:    "/messages:send",
		Auth:    TokenPath,
		Header:  http.Header{"Content-Type": {"application/json"}},
		New:     New,
		Cert:    srv.Certificate("huawei-fuzz"),
		Message: func() *providers.Message { return testMessage(token) },
	}).Run(f)
}
