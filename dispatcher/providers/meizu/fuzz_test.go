package meizu_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	fakemeizu "github.com/imcloud/im-push-operator/dispatcher/providers/fake/meizu"
	"github.com/imcloud/im-push-operator/dispatcher/providers/meizu"
)

// FuzzAnswer hands the real client arbitrary answers to its send (Meizu signs
// each request and has no token request, so atAuth also fuzzes the send)
// while everything else talks to the fake: whatever Meizu says, Send must
// not panic and must return a result fake.CheckResult accepts.
func FuzzAnswer(f *testing.F) {
	const token = "tok-fuzz-0001"
	for _, s := range []struct {
		status     int
		retryAfter string
		body       string
		atAuth     bool
	}{
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
	} {
		f.Add(s.status, s.retryAfter, []byte(s.body), s.atAuth)
	}
	ca, err := fake.NewCA()
	if err != nil {
		f.Fatal(err)
	}
	srv, err := fakemeizu.Start(ca)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(srv.Close)
	cert := srv.Certificate("meizu-fuzz")

	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte, atAuth bool) {
		match := fake.PathSuffix(meizu.SendPath)
		if atAuth {
			match = fake.PathSuffix(meizu.SendPath)
		}
		rp := &fake.Replay{Next: srv.Client().Transport, Match: match, Status: status, Body: body,
			Header: http.Header{"Content-Type": {"application/json"}, "Retry-After": {retryAfter}}}
		c, err := meizu.New(cert, providers.Options{HTTPClient: &http.Client{Transport: rp}})
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
