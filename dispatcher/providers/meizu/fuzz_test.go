package meizu_test

import (
	"net/http"
	"testing"

	"github.com/imcloud/im-push-operator/dispatcher/providers"
	fakemeizu "github.com/imcloud/im-push-operator/dispatcher/providers/fake/meizu"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake/providertest"
	"github.com/imcloud/im-push-operator/dispatcher/providers/meizu"
)

// FuzzAnswer hands the real client arbitrary answers to its send (Meizu signs
// each request and has no token request, so atAuth also fuzzes the send)
// while everything else talks to the fake: whatever Meizu says, Send must
// not panic and must return a result fake.CheckResult accepts.
func FuzzAnswer(f *testing.F) {
	const token = "tok-fuzz-0001"
	srv := providertest.Start(f, fakemeizu.Start)
	(&providertest.Fuzz{
		Seeds: []providertest.Seed{
			{200, "", `{"code":"200","message":"","value":{},"msgId":"m1"}`, false},
			{200, "", `{"code":"200","message":"","value":{"110002":["tok-fuzz-0001"]},"msgId":"m1"}`, false},
			{200, "", `{"code":"200","value":{"110011":["tok-fuzz-0001"]}}`, false},
			{200, "", `{"code":"200","value":{"110010":["other","tok-fuzz-0001"]}}`, false},
			{200, "", `{"code":"200","value":""}`, false},
			{200, "", `{"code":"110019","message":"daily quota","value":""}`, false},
			{200, "", `{"code":"110000","message":"appId not found"}`, false},
			{200, "", `{"code":"1001","message":"busy"}`, false},
			{200, "", `{"code":200,"value":{"110002":"tok-fuzz-0001"}}`, false},
			{200, "", `{"code":"x"}`, false},
			{502, "9", `<html/>`, false},
			{0, "", ``, false},
		},
		Fake:    srv.Client().Transport,
		Send:    meizu.SendPath,
		Header:  http.Header{"Content-Type": {"application/json"}},
		New:     meizu.New,
		Cert:    srv.Certificate("meizu-fuzz"),
		Message: func() *providers.Message { return msg(token) },
	}).Run(f)
}
