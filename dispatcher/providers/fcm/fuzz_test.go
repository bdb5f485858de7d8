package fcm_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/imcloud/im-push-operator/dispatcher/providers"
	fakefcm "github.com/imcloud/im-push-operator/dispatcher/providers/fake/fcm"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake/providertest"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fcm"
)

// FuzzAnswer hands the real client (the Firebase SDK and oauth2 underneath)
// arbitrary answers to its send or, with atAuth, to its token exchange.
func FuzzAnswer(f *testing.F) {
	srv := providertest.Start(f, fakefcm.Start)
	cert := credential(f, srv)
	srv.Allow(cert)
	(&providertest.Fuzz{
		Seeds: []providertest.Seed{
			{200, "", `{"name":"projects/im-demo/messages/0:1700000000"}`, false},
			{404, "", `{"error":{"code":404,"status":"NOT_FOUND","message":"Requested entity was not found.","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}`, false},
			{400, "", `{"error":{"code":400,"status":"INVALID_ARGUMENT","message":"The registration token is not a valid FCM registration token","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"INVALID_ARGUMENT"}]}}`, false},
			{403, "", `{"error":{"code":403,"status":"PERMISSION_DENIED","message":"SenderId mismatch","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"SENDER_ID_MISMATCH"}]}}`, false},
			{429, "120", `{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"QUOTA_EXCEEDED"}]}}`, false},
			{401, "", `{"error":{"code":401,"status":"UNAUTHENTICATED","message":"Request had invalid authentication credentials."}}`, false},
			{401, "", `{"error":{"code":401,"status":"UNAUTHENTICATED","details":[{"errorCode":"THIRD_PARTY_AUTH_ERROR"}]}}`, false},
			{502, "Wed, 21 Oct 2015 07:28:00 GMT", `<html>Bad Gateway</html>`, false},
			{400, "", `{"error":{"details":[{"errorCode":7}],"status":[]}}`, false},
			{200, "", `{"name":5}`, false},
			{200, "", `{"access_token":"ya29.fuzz","expires_in":3599,"token_type":"Bearer"}`, true},
			{400, "", `{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`, true},
			{503, "3", `{"error":"backendError"}`, true},
			{200, "", `{"access_token":"","expires_in":"soon"}`, true},
			{200, "", `{"token_type":"Bearer","expires_in":3600}`, true},
			{200, "", `{"access_token":"ya29.\u0000\n","expires_in":3600}`, true},
			{0, "", ``, true},
		},
		Fake:   srv.Client().Transport,
		Send:   "/messages:send",
		Auth:   "/token",
		Header: http.Header{"Content-Type": {"application/json; charset=UTF-8"}},
		New:    fcm.New,
		Cert:   cert,
		Message: func() *providers.Message {
			return &providers.Message{ID: "n-1", Token: "fcm-fuzz-token", Title: "Alice", Body: "hi"}
		},
		Check: func(t *testing.T, res providers.Result) {
			if res.Err != nil && strings.Contains(res.Err.Error(), "no access token in the request context") {
				t.Fatalf("a token answer without a token reached the SDK, which retries it as a network error: %v", res.Err)
			}
		},
	}).Run(f)
}
