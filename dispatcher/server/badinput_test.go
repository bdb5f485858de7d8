package server

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/imcloud/im-push-operator/dispatcher/store"
)

// TestEveryRouteNeedsTheTenantToken sends each authenticated route a request
// that would succeed with the tenant's token, without it and with other
// tokens: each is refused with 401 before it reads or changes anything.
func TestEveryRouteNeedsTheTenantToken(t *testing.T) {
	bodies := map[string]any{
		"PUT /v1/users/{user}/devices/{device}": map[string]string{"certificateName": "ios-prod", "token": "tok-bob-0123456789"},
		"PUT /v1/users/{user}/settings":         `{"mode":"None"}`,
		"POST /v1/notifications":                notification("n1", "bob"),
		"POST /v1/notifications:batch":          map[string]any{"notifications": []any{notification("n2", "bob")}},
	}
	paths := strings.NewReplacer("{user}", "bob", "{device}", "phone", "{id}", "n1")
	f := newFixture(t)
	routes := 0
	for _, rt := range f.srv.routeTable() {
		if rt.public {
			continue
		}
		routes++
		pattern := rt.method + " " + rt.path
		for name, token := range map[string]string{
			"no token":         "",
			"another tenant's": "tenant-b-token-0123456789abcdef",
			"prefix of ours":   testToken[:len(testToken)-1],
			"ours, lowercased": strings.ToLower(testToken) + "X",
		} {
			t.Run(pattern+"/"+name, func(t *testing.T) {
				f := newFixture(t)
				// A user with a device, so every route has something to act on.
				if err := f.store.Bind(context.Background(), "bob", "phone", store.Binding{CertificateName: "ios-prod", Token: "tok-bob-old"}); err != nil {
					t.Fatal(err)
				}
				f.engine.set(Status{ID: "n1", Complete: true})
				rec := f.doToken(t, rt.method, paths.Replace(rt.path), bodies[pattern], token)
				expectError(t, rec, http.StatusUnauthorized, CodeUnauthorized, "")
				if strings.Contains(rec.Body.String(), "tok-bob") {
					t.Fatalf("401 shows a device token: %s", rec.Body)
				}
				u, err := f.store.Get(context.Background(), "bob")
				if err != nil || len(u.Devices) != 1 || u.Devices[0].Bindings[0].Token != "tok-bob-old" || u.Settings.Mode != "" {
					t.Fatalf("store changed by a refused request: %+v %v", u, err)
				}
				if len(f.engine.submitted) != 0 {
					t.Fatalf("a refused request submitted %d notifications", len(f.engine.submitted))
				}
			})
		}
	}
	if routes != 8 {
		t.Fatalf("%d authenticated routes; the table above assumes 8", routes)
	}
}

// TestLimitBoundaries puts each limit's last accepted value beside its first
// refused one, so a limit that is off by one, or counts characters where it
// should count bytes, fails here.
func TestLimitBoundaries(t *testing.T) {
	ok128 := strings.Repeat("u", 128)
	bad129 := strings.Repeat("u", 129)
	// 64 two-byte runes are 128 bytes; 65 are 130 bytes but only 65 runes.
	wide64, wide65 := strings.Repeat("é", 64), strings.Repeat("é", 65)
	bind := map[string]string{"certificateName": "ios-prod", "token": "t"}
	withRecipients := func(rcpts ...map[string]any) map[string]any {
		n := notification("n1")
		n["recipients"] = rcpts
		return n
	}
	user := func(id string, online ...string) map[string]any {
		r := map[string]any{"userId": id}
		if online != nil {
			r["onlineDevices"] = online
		}
		return r
	}
	devices := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("d%d", i)
		}
		return out
	}
	nest := func(depth int) string {
		// depth levels in all: the body object holds depth-1 nested objects.
		return `{"certificateName":"ios-prod","token":"t","x":` + strings.Repeat(`{"a":`, depth-1) + "1" + strings.Repeat("}", depth-1) + "}"
	}
	// A body of exactly n bytes: a bind whose token pads it.
	sized := func(n int) string {
		head, tail := `{"certificateName":"ios-prod","token":"`, `"}`
		return head + strings.Repeat("t", n-len(head)-len(tail)) + tail
	}
	cases := []struct {
		name         string
		method, path string
		body         any
		status       int
		code, field  string
	}{
		{"path user of 128 bytes", "PUT", "/v1/users/" + ok128 + "/devices/d1", bind, 204, "", ""},
		{"path user of 129 bytes", "PUT", "/v1/users/" + bad129 + "/devices/d1", bind, 400, CodeInvalidField, "user"},
		{"path user of 64 two-byte runes", "PUT", "/v1/users/" + url.PathEscape(wide64) + "/devices/d1", bind, 204, "", ""},
		{"path user of 65 two-byte runes", "PUT", "/v1/users/" + url.PathEscape(wide65) + "/devices/d1", bind, 400, CodeInvalidField, "user"},
		{"device of 128 bytes", "PUT", "/v1/users/bob/devices/" + ok128, bind, 204, "", ""},
		{"device of 65 two-byte runes", "PUT", "/v1/users/bob/devices/" + url.PathEscape(wide65), bind, 400, CodeInvalidField, "device"},
		{"settings user not UTF-8", "PUT", "/v1/users/%FF%FE/settings", `{}`, 400, CodeInvalidField, "user"},
		{"list user not UTF-8", "GET", "/v1/users/a%C3/devices", nil, 400, CodeInvalidField, "user"},
		{"delete user of 129 bytes", "DELETE", "/v1/users/" + bad129, nil, 400, CodeInvalidField, "user"},

		{"recipient of 128 bytes", "POST", "/v1/notifications", withRecipients(user(ok128)), 202, "", ""},
		{"recipient of 65 two-byte runes", "POST", "/v1/notifications", withRecipients(user("a"), user(wide65)), 400, CodeInvalidField, "recipients[1].userId"},
		{"sender of 129 bytes", "POST", "/v1/notifications", func() any { n := notification("n1", "bob"); n["sender"] = map[string]any{"id": bad129}; return n }(), 400, CodeInvalidField, "sender.id"},
		{"conversation of 129 bytes", "POST", "/v1/notifications", func() any {
			n := notification("n1", "bob")
			n["conversation"] = map[string]any{"id": bad129, "type": "group"}
			return n
		}(), 400, CodeInvalidField, "conversation.id"},
		{"1000 recipients", "POST", "/v1/notifications", func() any {
			r := make([]map[string]any, MaxRecipients)
			for i := range r {
				r[i] = user(fmt.Sprintf("u%d", i))
			}
			return withRecipients(r...)
		}(), 202, "", ""},
		{"100 online devices", "POST", "/v1/notifications", withRecipients(user("a", devices(MaxOnlineDevices)...)), 202, "", ""},
		{"101 online devices", "POST", "/v1/notifications", withRecipients(user("a", devices(MaxOnlineDevices+1)...)), 400, CodeInvalidField, "recipients[0].onlineDevices"},
		{"empty online device", "POST", "/v1/notifications", withRecipients(user("a", "")), 400, CodeInvalidField, "recipients[0].onlineDevices[0]"},
		{"notification id of 128 runes", "POST", "/v1/notifications", notification(strings.Repeat("é", 128), "bob"), 202, "", ""},
		{"notification body not UTF-8", "POST", "/v1/notifications", []byte("{\"id\":\"n1\",\"message\":{\"text\":\"\xc3\x28\"}}"), 400, CodeInvalidJSON, ""},
		{"settings body not UTF-8", "PUT", "/v1/users/bob/settings", []byte("{\"language\":\"\xff\"}"), 400, CodeInvalidJSON, ""},
		{"batch body not UTF-8", "POST", "/v1/notifications:batch", []byte("{\"notifications\":[\"\xed\xa0\x80\"]}"), 400, CodeInvalidJSON, ""},
		{"settings too deep", "PUT", "/v1/users/bob/settings", `{"conversations":` + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + `}`, 400, CodeInvalidJSON, ""},
		{"batch too deep", "POST", "/v1/notifications:batch", `{"notifications":[` + strings.Repeat(`{"a":`, MaxDepth) + `1` + strings.Repeat("}", MaxDepth) + `]}`, 400, CodeInvalidJSON, ""},
		// At MaxDepth the depth check passes and the decoder names the unknown field.
		{"body at the depth limit", "PUT", "/v1/users/bob/devices/d1", nest(MaxDepth), 400, CodeUnknownField, "x"},
		{"body one past the depth limit", "PUT", "/v1/users/bob/devices/d1", nest(MaxDepth + 1), 400, CodeInvalidJSON, ""},
		// Brackets inside strings (after an escaped quote too) are text, not nesting.
		{"brackets in a message text", "POST", "/v1/notifications", textNotification(`\"` + strings.Repeat("[{", MaxDepth) + `\\`), 202, "", ""},
		// At MaxBodyBytes the size check passes and the token length is refused.
		{"body of MaxBodyBytes", "PUT", "/v1/users/bob/devices/d1", sized(MaxBodyBytes), 400, CodeInvalidField, "token"},
		{"body of MaxBodyBytes+1", "PUT", "/v1/users/bob/devices/d1", sized(MaxBodyBytes + 1), 413, CodeBodyTooLarge, ""},
		{"settings body too large", "PUT", "/v1/users/bob/settings", `{"language":"` + strings.Repeat("x", MaxBodyBytes) + `"}`, 413, CodeBodyTooLarge, ""},
		{"unknown settings quiet-hours field", "PUT", "/v1/users/bob/settings", `{"quietHours":{"start":"22:00","end":"07:00","days":["mon"]}}`, 400, CodeUnknownField, "days"},
		{"unknown recipient field", "POST", "/v1/notifications", withRecipients(map[string]any{"userId": "a", "deviceToken": "x"}), 400, CodeUnknownField, "deviceToken"},
		{"empty field name", "POST", "/v1/notifications", `{"":1}`, 400, CodeUnknownField, `""`},
		{"batch item with an unknown field", "POST", "/v1/notifications:batch", `{"notifications":[{"id":"n1","bogus":1}],"x":1}`, 400, CodeUnknownField, "x"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.engine.accepted = make(chan string, 1)
			rec := f.do(t, tc.method, tc.path, tc.body)
			if tc.code == "" {
				if rec.Code != tc.status {
					t.Fatalf("status = %d, want %d; body %s", rec.Code, tc.status, rec.Body)
				}
				return
			}
			expectError(t, rec, tc.status, tc.code, tc.field)
			if n := len(f.engine.submitted); n != 0 {
				t.Errorf("a refused request submitted %d notifications", n)
			}
		})
	}
}

// textNotification is a valid notification whose message text is the raw
// JSON string content text (escapes as written).
func textNotification(text string) string {
	return `{"id":"n1","sender":{"id":"alice"},"conversation":{"id":"c1","type":"single"},"recipients":[{"userId":"bob"}],"message":{"text":"` + text + `"}}`
}
