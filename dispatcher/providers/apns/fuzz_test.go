package apns_test

import (
	"testing"

	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/apns"
	fakeapns "github.com/imcloud/im-push-operator/dispatcher/providers/fake/apns"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake/providertest"
)

// FuzzAnswer hands the real client (apns2 underneath) arbitrary answers to a
// push, apns-id included. APNs has no token request: the provider token is a
// JWT signed locally, so atAuth also fuzzes the push.
func FuzzAnswer(f *testing.F) {
	srv := providertest.Start(f, fakeapns.Start)
	data, spec, err := fakeapns.TokenCredential(bundle)
	if err != nil {
		f.Fatal(err)
	}
	(&providertest.Fuzz{
		Seeds: []providertest.Seed{
			{200, "", ``, false},
			{400, "", `{"reason":"BadDeviceToken"}`, false},
			{410, "", `{"reason":"Unregistered","timestamp":1700000000123}`, false},
			{410, "", `{"reason":"ExpiredToken","timestamp":-1}`, false},
			{403, "", `{"reason":"ExpiredProviderToken"}`, false},
			{403, "", `{"reason":"InvalidProviderToken"}`, false},
			{429, "12", `{"reason":"TooManyRequests"}`, false},
			{503, "Wed, 21 Oct 2015 07:28:00 GMT", `{"reason":"ServiceUnavailable"}`, false},
			{500, "", `{"reason":"InternalServerError"}`, false},
			{413, "", `{"reason":"PayloadTooLarge"}`, false},
			{418, "", `{"reason":"SomethingNew"}`, false},
			{410, "", `{"reason":7,"timestamp":"yesterday"}`, false},
			{500, "", `not json`, false},
			{0, "", ``, false},
		},
		Fake:     srv.Client().Transport,
		Send:     "/3/device/" + token1,
		IDHeader: "Apns-Id",
		ID:       "E5B4B4F1-2F3A-4C1E-9B1A-0D5B8A0D3B11",
		New:      apns.New,
		Cert:     srv.Certificate("ios-fuzz", data, spec),
		Message: func() *providers.Message {
			return &providers.Message{ID: "n-1", Token: token1, Title: "Alice", Body: "hi"}
		},
	}).Run(f)
}
