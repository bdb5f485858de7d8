package meizu

import (
	"context"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake/providertest"
)

// Known answers computed outside Go. The first is the example in Meizu's own
// API document (MEIZUPUSH/PushAPI README, "接口签名规范"), which prints the
// same digest:
//
//	printf '%s' 'appId=10000messageJson={"title":"title","content":"content","pushTimeInfo":{"offLine":1,"validTime":24}}pushIds=RA50c6348036344485d01776773577c64740465480a6b<APP_SECRET>' | md5sum
//	printf '%s' 'appId=10000messageJson={"a":1}pushIds=pid1secret' | md5sum
const (
	signKATMeizuDoc = "ac076ff25d9900015a681cb5172aa53b"
	signKAT         = "120339b6b72ac7f06967d1c68edcdbbb"
)

func TestExpectedSignKnownAnswer(t *testing.T) {
	doc := map[string]string{
		"appId":       "10000",
		"pushIds":     "RA50c6348036344485d01776773577c64740465480a6b",
		"messageJson": `{"title":"title","content":"content","pushTimeInfo":{"offLine":1,"validTime":24}}`,
	}
	if got := expectedSign(doc, "<APP_SECRET>"); got != signKATMeizuDoc {
		t.Errorf("expectedSign(Meizu's example) = %s, want %s", got, signKATMeizuDoc)
	}
	own := map[string]string{"sign": signKAT, "pushIds": "pid1", "messageJson": `{"a":1}`, "appId": "10000"}
	if got := expectedSign(own, "secret"); got != signKAT {
		t.Errorf("expectedSign = %s, want %s", got, signKAT)
	}
}

// TestHTTP drives the fake over the wire: signatures over decoded values,
// parameter and payload checks, and a value map for several pushIds.
func TestHTTP(t *testing.T) {
	s := providertest.Start(t, Start)
	cert := s.Certificate("c1")
	appID, secret := cert.Meizu.AppID, string(cert.Data["appSecret"])
	good := `{"noticeBarInfo":{"noticeMsgType":1,"title":"a&b=c","content":"hi %20"},"clickTypeInfo":{"parameters":{"k":"v"}},"pushTimeInfo":{"offLine":1,"validTime":24},"advanceInfo":{"notifyKey":"ab_-9Z"}}`
	signed := func(params map[string]string) url.Values {
		form := url.Values{}
		for k, v := range params {
			form.Set(k, v)
		}
		form.Set("sign", expectedSign(params, secret))
		return form
	}
	post := func(form url.Values) map[string]any {
		t.Helper()
		reply, err := providers.PostForm(context.Background(), s.Client(), s.URL+sendPath, form, nil)
		return providertest.ReplyJSON(t, reply, err)
	}
	params := func(pushIDs, msg string) map[string]string {
		return map[string]string{"appId": appID, "pushIds": pushIDs, "messageJson": msg}
	}
	badSign := signed(params("p1", good))
	badSign.Set("sign", expectedSign(params("p2", good), secret))
	unknownApp := params("p1", good)
	unknownApp["appId"] = "1"
	noPushIDs := params("", good)
	tests := []struct {
		name string
		form url.Values
		code string
	}{
		{"no sign", url.Values{"appId": {appID}, "pushIds": {"p1"}, "messageJson": {good}}, "1006"},
		{"sign of other values", badSign, "1006"},
		{"unknown appId", signed(unknownApp), "110000"},
		{"no pushIds", signed(noPushIDs), "110004"},
		{"title 33 characters", signed(params("p1", `{"noticeBarInfo":{"title":"123456789012345678901234567890123","content":"c"}}`)), "1005"},
		{"notifyKey 9 characters", signed(params("p1", `{"noticeBarInfo":{"title":"t","content":"c"},"advanceInfo":{"notifyKey":"123456789"}}`)), "1005"},
		{"validTime 73", signed(params("p1", `{"noticeBarInfo":{"title":"t","content":"c"},"pushTimeInfo":{"validTime":73}}`)), "1005"},
		{"noticeMsgType 2", signed(params("p1", `{"noticeBarInfo":{"noticeMsgType":2,"title":"t","content":"c"}}`)), "1005"},
		{"good", signed(params("p1", good)), "200"},
	}
	for _, tt := range tests {
		if got := post(tt.form); got["code"] != tt.code {
			t.Errorf("%s: answer %v, want code %s", tt.name, got, tt.code)
		}
	}
	rec := s.State.Received()
	if len(rec) != 1 || rec[0].Title != "a&b=c" || rec[0].Body != "hi %20" || rec[0].Data["k"] != "v" || rec[0].Fields["notifyKey"] != "ab_-9Z" {
		t.Fatalf("received = %+v", rec)
	}

	s.State.Script("p2", fake.Answer{Code: "110002"})
	s.State.Script("p3", fake.Answer{Code: "value:110010"})
	got := post(signed(params("p1,p2,p3", good)))
	want := map[string]any{"110002": []any{"p2"}, "110010": []any{"p3"}}
	if got["code"] != "200" || !cmp.Equal(got["value"], want) {
		t.Fatalf("answer %v, want code 200 and value %v", got, want)
	}
	s.State.Script("p1", fake.Answer{Code: "110019"})
	if got := post(signed(params("p1", good))); got["code"] != "110019" || got["value"] != "" {
		t.Fatalf("answer %v, want top-level 110019 with value \"\"", got)
	}
}
