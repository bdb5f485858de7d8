package honor

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	fakehonor "github.com/imcloud/im-push-operator/dispatcher/providers/fake/honor"
)

// FuzzAnswer hands the real client arbitrary answers to its send (or, with
// atAuth, to its OAuth token request)
// while everything else talks to the fake: whatever Honor says, Send must
// not panic and must return a result fake.CheckResult accepts.
func FuzzAnswer(f *testing.F) {
	const token = "tok-fuzz-0001"
	for _, s := range []struct {
		status     int
		retryAfter string
		body       string
		atAuth     bool
	}{
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
	} {
		f.Add(s.status, s.retryAfter, []byte(s.body), s.atAuth)
	}
	ca, err := fake.NewCA()
	if err != nil {
		f.Fatal(err)
	}
	srv, err := fakehonor.Start(ca)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(srv.Close)
	cert := srv.Certificate("honor-fuzz")

	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte, atAuth bool) {
		match := fake.PathSuffix("/sendMessage")
		if atAuth {
			match = fake.PathSuffix(TokenPath)
		}
		rp := &fake.Replay{Next: srv.Client().Transport, Match: match, Status: status, Body: body,
			Header: http.Header{"Content-Type": {"application/json"}, "Retry-After": {retryAfter}}}
		c, err := New(cert, providers.Options{HTTPClient: &http.Client{Transport: rp}})
		if err != nil {
			t.Fatal(err)
		}
		before := time.Now()
		res := c.Send(context.Background(), testMessage(token))
		if err := rp.Check(res, before, cert.Data); err != nil {
			t.Fatal(err)
		}
	})
}
