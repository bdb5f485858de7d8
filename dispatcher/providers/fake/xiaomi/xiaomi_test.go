package xiaomi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake/providertest"
)

// TestChecks proves the fake refuses what MiPush refuses, so a client bug in
// authentication or limits fails the client's tests.
func TestChecks(t *testing.T) {
	s := providertest.Start(t, Start)
	cert := s.Certificate("a")
	key := "key=" + string(cert.Data[config.KeyAppSecret])
	good := func() url.Values {
		return url.Values{
			"registration_id": {"r1"}, "restricted_package_name": {cert.Xiaomi.PackageName},
			"pass_through": {"0"}, "title": {"t"}, "description": {"d"},
		}
	}
	tooMany := good()
	for i := range 11 {
		tooMany.Set(fmt.Sprintf("extra.k%d", i), "v")
	}
	tooMany.Set("extra.channel_id", "im") // MiPush's own extra: not counted
	for _, tc := range []struct {
		name string
		auth string
		form url.Values
		code int
	}{
		{"good", key, good(), 0},
		{"wrong key", "key=bm9wZQ==", good(), 21301},
		{"bearer instead of key", "Bearer " + string(cert.Data[config.KeyAppSecret]), good(), 21301},
		{"other package", key, func() url.Values { f := good(); f.Set("restricted_package_name", "com.other.app"); return f }(), 22022},
		{"no regid", key, func() url.Values { f := good(); f.Del("registration_id"); return f }(), 10016},
		{"blank title", key, func() url.Values { f := good(); f.Set("title", " "); return f }(), 10016},
		{"title of 50 characters", key, func() url.Values { f := good(); f.Set("title", strings.Repeat("字", 50)); return f }(), 10017},
		{"description of 128 characters", key, func() url.Values { f := good(); f.Set("description", strings.Repeat("d", 128)); return f }(), 10017},
		{"ttl over two weeks", key, func() url.Values { f := good(); f.Set("time_to_live", "1209600001"); return f }(), 10016},
		{"11 custom extras", key, tooMany, 65015},
	} {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/v3/message/regid", strings.NewReader(tc.form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded;charset=UTF-8")
		req.Header.Set("Authorization", tc.auth)
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var ans struct {
			Result string
			Code   int
		}
		_ = json.NewDecoder(resp.Body).Decode(&ans)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || ans.Code != tc.code {
			t.Errorf("%s: HTTP %d code %d, want 200 code %d", tc.name, resp.StatusCode, ans.Code, tc.code)
		}
	}
	if n := s.State.Count(); n != 1 {
		t.Errorf("recorded %d sends, want only the good one", n)
	}
}
