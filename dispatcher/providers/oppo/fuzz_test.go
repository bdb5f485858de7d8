package oppo_test

import (
	"net/http"
	"testing"

	"github.com/imcloud/im-push-operator/dispatcher/providers"
	fakeoppo "github.com/imcloud/im-push-operator/dispatcher/providers/fake/oppo"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake/providertest"
	"github.com/imcloud/im-push-operator/dispatcher/providers/oppo"
)

// FuzzAnswer hands the real client arbitrary answers to its send (or, with
// atAuth, to its auth request)
// while everything else talks to the fake: whatever OPPO says, Send must
// not panic and must return a result fake.CheckResult accepts.
func FuzzAnswer(f *testing.F) {
	const token = "CN_tok-fuzz-0001"
	srv := providertest.Start(f, fakeoppo.Start)
	(&providertest.Fuzz{
		Seeds: []providertest.Seed{
			{200, "", `{"code":0,"message":"Success","data":{"messageId":"m1"}}`, false},
			{200, "", `{"code":10000,"message":"Invalid RegistrationId"}`, false},
			{200, "", `{"code":11,"message":"Invalid AuthToken"}`, false},
			{200, "", `{"code":33,"message":"The number of messages exceeds the daily limit"}`, false},
			{200, "", `{"code":-1,"message":"Service Currently Unavailable"}`, false},
			{200, "", `{"code":"0"}`, false},
			{429, "11", ``, false},
			{0, "", ``, false},
			{200, "", `{"code":0,"message":"sucess","data":{"auth_token":"AT-1","create_time":1700000000000}}`, true},
			{200, "", `{"code":0,"data":{}}`, true},
			{200, "", `{"code":14,"message":"Invalid Signature"}`, true},
			{500, "", `oops`, true},
			{0, "", ``, true},
		},
		Fake:    srv.Client().Transport,
		Send:    oppo.SendPath,
		Auth:    oppo.AuthPath,
		Header:  http.Header{"Content-Type": {"application/json"}},
		New:     oppo.New,
		Cert:    srv.Certificate("oppo-fuzz"),
		Message: func() *providers.Message { return msg(token) },
	}).Run(f)
}
