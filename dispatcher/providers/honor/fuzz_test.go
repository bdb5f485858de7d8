package honor

import (
	"net/http"
	"testing"

	"github.com/imcloud/im-push-operator/dispatcher/providers"
	fakehonor "github.com/imcloud/im-push-operator/dispatcher/providers/fake/honor"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake/providertest"
)

// FuzzAnswer hands the real client arbitrary answers to its send (or, with
// atAuth, to its OAuth token request)
// while everything else talks to the fake: whatever Honor says, Send must
// not panic and must return a result fake.CheckResult accepts.
func FuzzAnswer(f *testing.F) {
	const token = "tok-fuzz-0001"
	srv := providertest.Start(f, fakehonor.Start)
	(&providertest.Fuzz{
		Seeds: []providertest.Seed{
			{200, "", `{"code":200,"message":"success","data":{"sendResult":true,"requestId":"r1","failTokens":[],"expireTokens":[]}}`, false},
			{200, "", `{"code":200,"message":"success","data":{"sendResult":false,"failTokens":[],"expireTokens":["tok-fuzz-0001"]}}`, false},
			{200, "", `{"code":200,"data":{"failTokens":["tok-fuzz-0001"]}}`, false},
			{200, "", `{"code":80000000,"message":"Success"}`, false},
			{401, "", `{"code":80200003,"message":"token expired"}`, false},
			{400, "", `{"code":80100003,"message":"bad message"}`, false},
			{503, "7", `{"code":81000001,"message":"busy"}`, false},
			{500, "", `{"code":"200"}`, false},
			{200, "", `{"code":null,"data":[]}`, false},
			{429, "Wed, 21 Oct 2015 07:28:00 GMT", ``, false},
			{0, "", ``, false},
			{200, "", `{"access_token":"AT-1","expires_in":3600}`, true},
			{401, "", `{"error":"invalid_client","error_description":"Invalid client credentials"}`, true},
			{200, "", `{"access_token":7}`, true},
			{0, "", ``, true},
		},
		Fake:    srv.Client().Transport,
		Send:    "/sendMessage",
		Auth:    TokenPath,
		Header:  http.Header{"Content-Type": {"application/json"}},
		New:     New,
		Cert:    srv.Certificate("honor-fuzz"),
		Message: func() *providers.Message { return testMessage(token) },
	}).Run(f)
}
