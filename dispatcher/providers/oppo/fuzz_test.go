package oppo_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	fakeoppo "github.com/imcloud/im-push-operator/dispatcher/providers/fake/oppo"
	"github.com/imcloud/im-push-operator/dispatcher/providers/oppo"
)

// FuzzAnswer hands the real client arbitrary answers to its send (or, with
// atAuth, to its auth request)
// while everything else talks to the fake: whatever OPPO says, Send must
// not panic and must return a result fake.CheckResult accepts.
func FuzzAnswer(f *testing.F) {
	const token = "CN_tok-fuzz-0001"
	for _, s := range []struct {
		status     int
		retryAfter string
		body       string
		atAuth     bool
	}{
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
	} {
		f.Add(s.status, s.retryAfter, []byte(s.body), s.atAuth)
	}
	ca, err := fake.NewCA()
	if err != nil {
		f.Fatal(err)
	}
	srv, err := fakeoppo.Start(ca)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(srv.Close)
	cert := srv.Certificate("oppo-fuzz")

	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte, atAuth bool) {
		match := fake.PathSuffix(oppo.SendPath)
		if atAuth {
			match = fake.PathSuffix(oppo.AuthPath)
		}
		rp := &fake.Replay{Next: srv.Client().Transport, Match: match, Status: status, Body: body,
			Header: http.Header{"Content-Type": {"application/json"}, "Retry-After": {retryAfter}}}
		c, err := oppo.New(cert, providers.Options{HTTPClient: &http.Client{Transport: rp}})
		if err != nil {
			t.Fatal(err)
		}
		before := time.Now()
		res := c.Send(context.Background(), msg(token))
		if err := rp.Check(res, before, cert.Data); err != nil {
			t.Fatal(err)
		}
	})
}
