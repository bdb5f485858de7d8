package apns_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/apns"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	fakeapns "github.com/imcloud/im-push-operator/dispatcher/providers/fake/apns"
)

// FuzzAnswer hands the real client (apns2 underneath) arbitrary answers to a
// push: whatever APNs says, Send must not panic and must return a result
// fake.CheckResult accepts. APNs has no token request: the provider token
// is a JWT signed locally.
func FuzzAnswer(f *testing.F) {
	for _, s := range []struct {
		status     int
		retryAfter string
		apnsID     string
		body       string
	}{
		{200, "", "E5B4B4F1-2F3A-4C1E-9B1A-0D5B8A0D3B11", ``},
		{400, "", "", `{"reason":"BadDeviceToken"}`},
		{410, "", "", `{"reason":"Unregistered","timestamp":1700000000123}`},
		{410, "", "", `{"reason":"ExpiredToken","timestamp":-1}`},
		{403, "", "", `{"reason":"ExpiredProviderToken"}`},
		{403, "", "", `{"reason":"InvalidProviderToken"}`},
		{429, "12", "", `{"reason":"TooManyRequests"}`},
		{503, "Wed, 21 Oct 2015 07:28:00 GMT", "", `{"reason":"ServiceUnavailable"}`},
		{500, "", "", `{"reason":"InternalServerError"}`},
		{413, "", "", `{"reason":"PayloadTooLarge"}`},
		{418, "", "", `{"reason":"SomethingNew"}`},
		{410, "", "", `{"reason":7,"timestamp":"yesterday"}`},
		{500, "", "", `not json`},
		{0, "", "", ``},
	} {
		f.Add(s.status, s.retryAfter, s.apnsID, []byte(s.body))
	}
	srv := startFake(f)
	data, spec, err := fakeapns.TokenCredential(bundle)
	if err != nil {
		f.Fatal(err)
	}
	cert := srv.Certificate("ios-fuzz", data, spec)

	f.Fuzz(func(t *testing.T, status int, retryAfter, apnsID string, body []byte) {
		rp := &fake.Replay{Next: srv.Client().Transport, Match: fake.PathSuffix("/3/device/" + token1), Status: status, Body: body,
			Header: http.Header{"Apns-Id": {apnsID}, "Retry-After": {retryAfter}}}
		c, err := apns.New(cert, providers.Options{HTTPClient: &http.Client{Transport: rp}})
		if err != nil {
			t.Fatal(err)
		}
		before := time.Now()
		res := c.Send(context.Background(), &providers.Message{ID: "n-1", Token: token1, Title: "Alice", Body: "hi"})
		if err := rp.Check(res, before, cert.Data); err != nil {
			t.Fatal(err)
		}
	})
}
