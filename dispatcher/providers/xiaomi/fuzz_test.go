package xiaomi

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	fakexiaomi "github.com/imcloud/im-push-operator/dispatcher/providers/fake/xiaomi"
)

// FuzzAnswer hands the real client arbitrary answers to its send (Xiaomi has no
// token request, so atAuth also fuzzes the send)
// while everything else talks to the fake: whatever Xiaomi says, Send must
// not panic and must return a result fake.CheckResult accepts.
func FuzzAnswer(f *testing.F) {
	const token = "tok-fuzz-0001"
	for _, s := range []struct {
		status     int
		retryAfter string
		body       string
		atAuth     bool
	}{
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
	} {
		f.Add(s.status, s.retryAfter, []byte(s.body), s.atAuth)
	}
	ca, err := fake.NewCA()
	if err != nil {
		f.Fatal(err)
	}
	srv, err := fakexiaomi.Start(ca)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(srv.Close)
	cert := srv.Certificate("xiaomi-fuzz")

	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte, atAuth bool) {
		match := fake.PathSuffix(SendPath)
		if atAuth {
			match = fake.PathSuffix(SendPath)
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
