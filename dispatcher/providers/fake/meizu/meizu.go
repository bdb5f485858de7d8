// Package meizu is a local fake of Meizu Flyme Push (providers.md §8): the
// notification send by pushId on one TLS server.
//
// Authentication is checked as Meizu does: sign must be the lowercase hex MD5
// of every other form parameter, sorted by name, written name=value with the
// raw (decoded) values and nothing between pairs, followed by the app secret.
// A missing appId, pushIds or messageJson answers 110004, an unknown appId
// 110000, a missing or wrong sign 1006, and a malformed messageJson 1005
// (title outside 1..32 or content outside 1..100 characters, notifyKey not
// 1..8 of [0-9A-Za-z_-], validTime outside 1..72, noticeMsgType not 0 or 1,
// clickTypeInfo.parameters not an object of strings).
//
// Answer codes a test may script (fake.Answer.Code), per pushId: "" success;
// Meizu's per-pushId codes "110002" (unsubscribed), "110003" (illegal),
// "110005" (alias), "110011" (device daily cap), "201" (denied), "501",
// "513", "519" (failed / overload), "520" (collapsed), answered in the value
// map under that code with HTTP 200 and code "200"; "value:NNN" puts the
// pushId under any code NNN in the value map (e.g. "value:110010", an inactive
// pushId); any other integer is a top-level code answered as
// {"code":"NNN","message":...,"value":""}, e.g. "1003" (busy), "110010" (rate),
// "110019" (daily limit), "1006", "110000", "110009" (credentials), "1005",
// "110053" (bad message); "status:NNN" a bare HTTP status; "reset" an
// aborted exchange. Any other code answers HTTP 400 so a typo in a test shows.
package meizu

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
)

const sendPath = "/garcia/api/server/push/varnished/pushByPushId"

// valueCodes are the codes Meizu reports per pushId inside value.
var valueCodes = map[string]bool{
	"110002": true, "110003": true, "110005": true, "110011": true,
	"201": true, "501": true, "513": true, "519": true, "520": true,
}

var messages = map[string]string{
	"200":    "",
	"500":    "其他异常",
	"1001":   "系统错误",
	"1003":   "服务器忙",
	"1005":   "参数错误，请参考API文档",
	"1006":   "签名认证失败",
	"110000": "appId不合法",
	"110001": "appKey不合法",
	"110004": "参数不能为空",
	"110009": "应用被加入黑名单",
	"110010": "应用请求频率超过限制",
	"110019": "超过该应用的次数限制",
	"110051": "超过当日推送限制",
	"110053": "透传超过限制",
}

var notifyKeyPattern = regexp.MustCompile(`^[0-9A-Za-z_-]{1,8}$`)

// Server is a running Meizu fake.
type Server struct {
	*fake.Server

	mu   sync.Mutex
	apps map[string]string // appId → appSecret
}

// Start serves the fake on a TLS server with a certificate from ca.
func Start(ca *fake.CA) (*Server, error) {
	s := &Server{apps: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+sendPath, s.send)
	srv, err := fake.Start(ca, fake.NewState(string(config.Meizu)), mux)
	if err != nil {
		return nil, err
	}
	s.Server = srv
	return s, nil
}

// Allow registers the certificate's app id and secret as valid.
func (s *Server) Allow(cert *config.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apps[cert.Meizu.AppID] = string(cert.Data[config.KeyAppSecret])
}

// TestCredential returns Secret data and a spec for a test credential derived
// from name: stable across runs, distinct per name.
func TestCredential(name string) (map[string][]byte, *config.MeizuSpec) {
	sum := sha256.Sum256([]byte("fake-meizu/" + name))
	appID := 100000 + (uint32(sum[0])<<16|uint32(sum[1])<<8|uint32(sum[2]))%900000
	return map[string][]byte{
		config.KeyAppSecret: []byte(hex.EncodeToString(sum[8:24])),
	}, &config.MeizuSpec{AppID: strconv.FormatUint(uint64(appID), 10)}
}

// Certificate returns a certificate named name that points at this fake,
// trusts its CA and holds a test credential the fake accepts.
func (s *Server) Certificate(name string) *config.Certificate {
	data, spec := TestCredential(name)
	cert := s.NewCertificate(name, config.Meizu, data)
	cert.Meizu = spec
	s.Allow(cert)
	return cert
}

// expectedSign is Meizu's signature over the decoded form parameters.
func expectedSign(form map[string]string, secret string) string {
	names := make([]string, 0, len(form))
	for k := range form {
		if k != "sign" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	base := ""
	for _, k := range names {
		base += k + "=" + form[k]
	}
	sum := md5.Sum([]byte(base + secret))
	return hex.EncodeToString(sum[:])
}

// checkAuth verifies a request's parameters and returns the code it earns.
func (s *Server) checkAuth(form map[string]string) string {
	if form["appId"] == "" || form["pushIds"] == "" || form["messageJson"] == "" {
		return "110004"
	}
	s.mu.Lock()
	secret, ok := s.apps[form["appId"]]
	s.mu.Unlock()
	switch {
	case !ok:
		return "110000"
	case form["sign"] == "" || form["sign"] != expectedSign(form, secret):
		return "1006"
	}
	return "200"
}

type message struct {
	NoticeBarInfo struct {
		NoticeMsgType int    `json:"noticeMsgType"`
		NoticeBarType int    `json:"noticeBarType"`
		Title         string `json:"title"`
		Content       string `json:"content"`
	} `json:"noticeBarInfo"`
	ClickTypeInfo struct {
		ClickType  int               `json:"clickType"`
		Parameters map[string]string `json:"parameters"`
	} `json:"clickTypeInfo"`
	PushTimeInfo struct {
		OffLine   *int `json:"offLine"`
		ValidTime *int `json:"validTime"`
	} `json:"pushTimeInfo"`
	AdvanceInfo struct {
		NotifyKey string `json:"notifyKey"`
	} `json:"advanceInfo"`
}

// validate returns "200" or the code a messageJson earns.
func validate(raw string) (*message, string) {
	var m message
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return nil, "1005"
	}
	n := m.NoticeBarInfo
	title, content := utf8.RuneCountInString(n.Title), utf8.RuneCountInString(n.Content)
	switch {
	case title < 1 || title > 32 || content < 1 || content > 100:
		return nil, "1005"
	case n.NoticeMsgType != 0 && n.NoticeMsgType != 1:
		return nil, "1005"
	case m.AdvanceInfo.NotifyKey != "" && !notifyKeyPattern.MatchString(m.AdvanceInfo.NotifyKey):
		return nil, "1005"
	case m.PushTimeInfo.ValidTime != nil && (*m.PushTimeInfo.ValidTime < 1 || *m.PushTimeInfo.ValidTime > 72):
		return nil, "1005"
	}
	return &m, "200"
}

func (s *Server) send(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		reply(w, "1005", nil)
		return
	}
	form := map[string]string{}
	for k := range r.PostForm {
		form[k] = r.PostForm.Get(k)
	}
	if code := s.checkAuth(form); code != "200" {
		reply(w, code, nil)
		return
	}
	m, code := validate(form["messageJson"])
	if code != "200" {
		reply(w, code, nil)
		return
	}
	value := map[string][]string{}
	for _, pushID := range strings.Split(form["pushIds"], ",") {
		a := s.State.Next(pushID)
		s.State.Pause(r, a)
		s.State.Record(fake.Received{
			Token:    pushID,
			Title:    m.NoticeBarInfo.Title,
			Body:     m.NoticeBarInfo.Content,
			Data:     m.ClickTypeInfo.Parameters,
			Fields:   fields(form["appId"], m),
			Answered: a.Code,
		})
		if fake.AnswerBare(w, a) {
			return
		}
		switch {
		case a.Code == "":
		case valueCodes[a.Code]:
			value[a.Code] = append(value[a.Code], pushID)
		case strings.HasPrefix(a.Code, "value:"):
			k := strings.TrimPrefix(a.Code, "value:")
			value[k] = append(value[k], pushID)
		default:
			if _, err := strconv.Atoi(a.Code); err != nil {
				http.Error(w, "fake meizu: unknown answer code "+a.Code, http.StatusBadRequest)
				return
			}
			reply(w, a.Code, nil)
			return
		}
	}
	reply(w, "200", value)
}

func fields(appID string, m *message) map[string]string {
	opt := func(p *int) string {
		if p == nil {
			return ""
		}
		return strconv.Itoa(*p)
	}
	return map[string]string{
		"appId":         appID,
		"noticeMsgType": strconv.Itoa(m.NoticeBarInfo.NoticeMsgType),
		"noticeBarType": strconv.Itoa(m.NoticeBarInfo.NoticeBarType),
		"clickType":     strconv.Itoa(m.ClickTypeInfo.ClickType),
		"offLine":       opt(m.PushTimeInfo.OffLine),
		"validTime":     opt(m.PushTimeInfo.ValidTime),
		"notifyKey":     m.AdvanceInfo.NotifyKey,
	}
}

// reply writes Meizu's envelope: a string code, value "" unless code is 200.
func reply(w http.ResponseWriter, code string, value map[string][]string) {
	body := map[string]any{"code": code, "message": messages[code], "value": "", "redirect": ""}
	if code == "200" {
		body["value"] = value
		body["msgId"] = fake.RandomHex(16)
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	_ = json.NewEncoder(w).Encode(body)
}
