package xiaomi

import (
	"net/http"
	"testing"

	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake/providertest"
	fakexiaomi "github.com/imcloud/im-push-operator/dispatcher/providers/fake/xiaomi"
)

// FuzzAnswer hands the real client arbitrary answers to its send (Xiaomi has no
// token request, so atAuth also fuzzes the send)
// while everything else talks to the fake: whatever Xiaomi says, Send must
// not panic and must return a result fake.CheckResult accepts.
func FuzzAnswer(f *testing.F) {
	const token = "tok-fuzz-0001"
	srv := providertest.Start(f, fakexiaomi.Start)
	(&providertest.Fuzz{
		Seeds: []providertest.Seed{
			{200, "", `{"result":"ok","code":0,"data":{"id":"m1","bad_regids":""},"trace_id":"t","description":"成功","info":"i"}`, false},
			{200, "", `{"result":"ok","code":0,"data":{"id":"m1","bad_regids":"r1,tok-fuzz-0001"}}`, false},
			{200, "", `{"result":"error","code":20301,"reason":"No valid targets!"}`, false},
			{200, "", `{"result":"error","code":22000,"reason":"Invalid app secret"}`, false},
			{200, "", `{"result":"error","code":200001,"reason":"quota exceeded"}`, false},
			{200, "", `{"result":"error","code":10034,"reason":"daily limit"}`, false},
			{200, "", `{"result":"error","code":-1}`, false},
			{503, "30", `busy`, false},
			{200, "", `{"code":0,"data":{"bad_regids":7}}`, false},
			{200, "", `{"code":1e400}`, false},
			{0, "", ``, false},
		},
		Fake:    srv.Client().Transport,
		Send:    SendPath,
		Header:  http.Header{"Content-Type": {"application/json"}},
		New:     New,
		Cert:    srv.Certificate("xiaomi-fuzz"),
		Message: func() *providers.Message { return testMessage(token) },
	}).Run(f)
}
