package huawei

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	fakehuawei "github.com/imcloud/im-push-operator/dispatcher/providers/fake/huawei"
)

// FuzzAnswer hands the real client arbitrary answers to its send (or, with
// atAuth, to its OAuth token request) while everything else talks to the
// fake: whatever Huawei says, Send must not panic and must return a result
// fake.CheckResult accepts.
func FuzzAnswer(f *testing.F) {
	const token = "tok-fuzz-0001"
	for _, s := range []struct {
		status     int
		retryAfter string
		body       string
		atAuth     bool
	}{
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
	} {
		f.Add(s.status, s.retryAfter, []byte(s.body), s.atAuth)
	}
	ca, err := fake.NewCA()
	if err != nil {
		f.Fatal(err)
	}
	srv, err := fakehuawei.Start(ca)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(srv.Close)
	cert := srv.Certificate("huawei-fuzz")

	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte, atAuth bool) {
		match := fake.PathSuffix("/messages:send")
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
