package vivo_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	fakevivo "github.com/imcloud/im-push-operator/dispatcher/providers/fake/vivo"
	"github.com/imcloud/im-push-operator/dispatcher/providers/vivo"
)

// FuzzAnswer hands the real client arbitrary answers to its send (or, with
// atAuth, to its auth request)
// while everything else talks to the fake: whatever vivo says, Send must
// not panic and must return a result fake.CheckResult accepts.
func FuzzAnswer(f *testing.F) {
	const token = "tok-fuzz-0001"
	for _, s := range []struct {
		status     int
		retryAfter string
		body       string
		atAuth     bool
	}{
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
	} {
		f.Add(s.status, s.retryAfter, []byte(s.body), s.atAuth)
	}
	ca, err := fake.NewCA()
	if err != nil {
		f.Fatal(err)
	}
	srv, err := fakevivo.Start(ca)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(srv.Close)
	cert := srv.Certificate("vivo-fuzz")

	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte, atAuth bool) {
		match := fake.PathSuffix(vivo.SendPath)
		if atAuth {
			match = fake.PathSuffix(vivo.AuthPath)
		}
		rp := &fake.Replay{Next: srv.Client().Transport, Match: match, Status: status, Body: body,
			Header: http.Header{"Content-Type": {"application/json"}, "Retry-After": {retryAfter}}}
		c, err := vivo.New(cert, providers.Options{HTTPClient: &http.Client{Transport: rp}})
		if err != nil {
			t.Fatal(err)
		}
		before := time.Now()
		res := c.Send(context.Background(), msg("n-1", token))
		if err := rp.Check(res, before, cert.Data); err != nil {
			t.Fatal(err)
		}
	})
}
