package vivo_test

import (
	"net/http"
	"testing"

	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake/providertest"
	fakevivo "github.com/imcloud/im-push-operator/dispatcher/providers/fake/vivo"
	"github.com/imcloud/im-push-operator/dispatcher/providers/vivo"
)

// FuzzAnswer hands the real client arbitrary answers to its send (or, with
// atAuth, to its auth request)
// while everything else talks to the fake: whatever vivo says, Send must
// not panic and must return a result fake.CheckResult accepts.
func FuzzAnswer(f *testing.F) {
	const token = "tok-fuzz-0001"
	srv := providertest.Start(f, fakevivo.Start)
	(&providertest.Fuzz{
		Seeds: []providertest.Seed{
			{200, "", `{"result":0,"desc":"请求成功","taskId":"t1"}`, false},
			{200, "", `{"result":0,"desc":"ok","taskId":"t1","invalidUser":{"userid":"tok-fuzz-0001","status":1}}`, false},
			{200, "", `{"result":10302,"desc":"regId invalid"}`, false},
			{200, "", `{"result":10000,"desc":"authToken invalid"}`, false},
			{200, "", `{"result":10070,"desc":"total quota exceeded"}`, false},
			{200, "", `{"result":10252,"desc":"daily quota exceeded"}`, false},
			{200, "", `{"result":10094,"desc":"appId mismatch"}`, false},
			{200, "", `{"result":0,"invalidUser":{"userid":5,"status":"x"}}`, false},
			{503, "4", ``, false},
			{0, "", ``, false},
			{200, "", `{"result":0,"desc":"ok","authToken":"AT-1"}`, true},
			{200, "", `{"result":10200,"desc":"appKey invalid"}`, true},
			{200, "", `{"result":0}`, true},
			{0, "", ``, true},
		},
		Fake:    srv.Client().Transport,
		Send:    vivo.SendPath,
		Auth:    vivo.AuthPath,
		Header:  http.Header{"Content-Type": {"application/json"}},
		New:     vivo.New,
		Cert:    srv.Certificate("vivo-fuzz"),
		Message: func() *providers.Message { return msg("n-1", token) },
	}).Run(f)
}
