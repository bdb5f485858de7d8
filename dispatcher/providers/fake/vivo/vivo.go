// Package vivo is a local fake of vivo Push (providers.md §7): /message/auth
// and /message/send on one TLS server.
//
// Authentication is checked as vivo does: the auth body's sign must be the
// lowercase hex MD5 of appId + appKey + timestamp + appSecret, recomputed
// here, and the millisecond timestamp must lie within 10 minutes of the
// fake's clock (SetClock). Auth failures answer vivo's 102xx family; which
// number goes with which fault is this fake's choice (vivo's table only names
// the family): 10200 appId empty, 10201 appKey empty, 10202 appKey wrong for
// the appId, 10203 timestamp missing, 10204 sign empty, 10205 unknown appId,
// 10206 sign wrong, 10207 timestamp outside the window. Sends must carry an
// issued, unexpired (24 h) token in the authToken header (else 10000) and a
// body appId equal to the token's app (else 10094). The body appId may be a
// JSON string or number: vivo's documents show both.
//
// Payload checks: an unknown category answers 10096, a category whose class
// contradicts an explicit classification 10097; any other malformed field
// (empty regId/title/content, title wider than 40 or content wider than 100
// where a non-ASCII character counts two, timeToLive outside 60..86400,
// notifyId outside 1..2147483647, requestId empty or over 64, notifyType or
// skipType out of range, clientCustomMap over 1024 bytes) answers 10050,
// the fake's stand-in for vivo's parameter codes. A requestId already
// answered with success is answered with success again and not recorded, as
// vivo dedupes.
//
// Answer codes a test may script (fake.Answer.Code): "" success;
// "invalidUser:N" success carrying {"invalidUser":{"userid":regId,"status":N}}
// (1 unknown regId, 2 uninstalled, 3 long offline, 4 not a test user); any
// vivo integer result code answered as {"result":N,"desc":...} with HTTP 200,
// among them "10302" (regId invalid), "10000" (auth failed), "10070",
// "10252", "10254" (quotas), "10072" (too frequent), "10094", "102xx"
// (credentials), "10096", "10097" (category); "status:NNN" a bare HTTP
// status (vivo's own error is "status:500"); "reset" an aborted exchange.
// Any other code answers HTTP 400 so a typo in a test shows.
package vivo

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
)

const (
	authPath = "/message/auth"
	sendPath = "/message/send"

	timestampWindow = 10 * time.Minute
	tokenLifetime   = 24 * time.Hour
	maxTitleWidth   = 40
	maxContentWidth = 100
	maxCustomJSON   = 1024

	codeBadParam = 10050
)

// Categories vivo accepts, by the classification they belong to (1 system,
// 0 operational); providers.md §7 "Limits". "TODO" is vivo's own name of its
// to-do reminder category, a protocol value.
var categories = map[string]int{
	"IM": 1, "ACCOUNT": 1, "TODO": 1, "DEVICE_REMINDER": 1, "ORDER": 1, "SUBSCRIPTION": 1,
	"NEWS": 0, "CONTENT": 0, "MARKETING": 0, "SOCIAL": 0,
}

var descs = map[int]string{
	0:     "请求成功",
	10000: "权限认证失败",
	10050: "参数不合法",
	10070: "超过当日发送总量限制",
	10072: "发送频率过高",
	10094: "appId与authToken不匹配",
	10096: "category不合法",
	10097: "category与classification不匹配",
	10200: "appId不能为空",
	10201: "appKey不能为空",
	10202: "appKey不合法",
	10203: "timestamp不能为空",
	10204: "sign不能为空",
	10205: "appId不存在",
	10206: "sign不正确",
	10207: "timestamp不合法",
	10252: "超过批量推送数量限制",
	10254: "超过全量推送次数限制",
	10302: "regId不合法",
}

// Server is a running vivo fake.
type Server struct {
	*fake.Server

	*fake.Tokens

	mu       sync.Mutex
	apps     map[string]app    // by appId
	accepted map[string]string // appId + requestId → taskId
}

type app struct{ key, secret string }

// Start serves the fake on a TLS server with a certificate from ca.
func Start(ca *fake.CA) (*Server, error) {
	s := &Server{Tokens: fake.NewTokens(tokenLifetime), apps: map[string]app{}, accepted: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+authPath, s.auth)
	mux.HandleFunc("POST "+sendPath, s.send)
	srv, err := fake.Start(ca, fake.NewState(string(config.Vivo)), mux)
	if err != nil {
		return nil, err
	}
	s.Server = srv
	return s, nil
}

// Allow registers the certificate's app id, app key and app secret as valid.
func (s *Server) Allow(cert *config.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apps[cert.Vivo.AppID] = app{key: string(cert.Data[config.KeyAppKey]), secret: string(cert.Data[config.KeyAppSecret])}
}

// TestCredential returns Secret data and a spec for a test credential derived
// from name: stable across runs, distinct per name.
func TestCredential(name string) (map[string][]byte, *config.VivoSpec) {
	sum := sha256.Sum256([]byte("fake-vivo/" + name))
	h := hex.EncodeToString(sum[:])
	appID := 10000 + (uint32(sum[0])<<16|uint32(sum[1])<<8|uint32(sum[2]))%90000
	return map[string][]byte{
		config.KeyAppKey:    []byte(h[:24]),
		config.KeyAppSecret: []byte(h[24:56]),
	}, &config.VivoSpec{AppID: strconv.FormatUint(uint64(appID), 10)}
}

// Certificate returns a certificate named name that points at this fake,
// trusts its CA and holds a test credential the fake accepts.
func (s *Server) Certificate(name string) *config.Certificate {
	data, spec := TestCredential(name)
	cert := s.NewCertificate(name, config.Vivo, data)
	cert.Vivo = spec
	s.Allow(cert)
	return cert
}

// expectedSign is vivo's auth signature over the trimmed values.
func expectedSign(appID, appKey, timestamp, appSecret string) string {
	sum := md5.Sum([]byte(strings.TrimSpace(appID) + strings.TrimSpace(appKey) + timestamp + strings.TrimSpace(appSecret)))
	return hex.EncodeToString(sum[:])
}

// appID accepts vivo's appId as a JSON string or number.
type appID string

func (a *appID) UnmarshalJSON(b []byte) error {
	var s string
	if bytes.HasPrefix(b, []byte(`"`)) {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	} else {
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return err
		}
		s = n.String()
	}
	*a = appID(s)
	return nil
}

type authRequest struct {
	AppID     appID  `json:"appId"`
	AppKey    string `json:"appKey"`
	Timestamp int64  `json:"timestamp"`
	Sign      string `json:"sign"`
}

// checkAuth verifies an auth body and returns the code it earns.
func (s *Server) checkAuth(req *authRequest) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, known := s.apps[string(req.AppID)]
	switch {
	case req.AppID == "":
		return 10200
	case req.AppKey == "":
		return 10201
	case req.Timestamp == 0:
		return 10203
	case req.Sign == "":
		return 10204
	case !known:
		return 10205
	case req.AppKey != a.key:
		return 10202
	}
	if d := s.Now().Sub(time.UnixMilli(req.Timestamp)); d > timestampWindow || d < -timestampWindow {
		return 10207
	}
	if req.Sign != expectedSign(string(req.AppID), req.AppKey, strconv.FormatInt(req.Timestamp, 10), a.secret) {
		return 10206
	}
	return 0
}

func (s *Server) auth(w http.ResponseWriter, r *http.Request) {
	var req authRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		reply(w, codeBadParam, nil)
		return
	}
	if code := s.checkAuth(&req); code != 0 {
		reply(w, code, nil)
		return
	}
	token := fake.RandomHex(16)
	s.Issue(token, string(req.AppID))
	reply(w, 0, map[string]any{"authToken": token})
}

type sendRequest struct {
	AppID           appID             `json:"appId"`
	RegID           string            `json:"regId"`
	NotifyType      int               `json:"notifyType"`
	Title           string            `json:"title"`
	Content         string            `json:"content"`
	TimeToLive      *int64            `json:"timeToLive"`
	SkipType        int               `json:"skipType"`
	NetworkType     int               `json:"networkType"`
	Classification  *int              `json:"classification"`
	Category        string            `json:"category"`
	NotifyID        *int64            `json:"notifyId"`
	ClientCustomMap map[string]string `json:"clientCustomMap"`
	RequestID       string            `json:"requestId"`
}

// width counts ASCII as one and any other character as two, as vivo does.
func width(s string) int {
	w := 0
	for _, r := range s {
		if r < 0x80 {
			w++
		} else {
			w += 2
		}
	}
	return w
}

// validate returns the code a send body earns before any scripted answer.
func validate(m *sendRequest) int {
	custom, _ := json.Marshal(m.ClientCustomMap)
	switch {
	case m.RegID == "" || m.Title == "" || m.Content == "" || m.RequestID == "" || len(m.RequestID) > 64:
		return codeBadParam
	case width(m.Title) > maxTitleWidth || width(m.Content) > maxContentWidth:
		return codeBadParam
	case m.NotifyType < 1 || m.NotifyType > 4 || m.SkipType < 1 || m.SkipType > 4:
		return codeBadParam
	case m.TimeToLive != nil && (*m.TimeToLive < 60 || *m.TimeToLive > 86400):
		return codeBadParam
	case m.NotifyID != nil && (*m.NotifyID < 1 || *m.NotifyID > 2147483647):
		return codeBadParam
	case m.ClientCustomMap != nil && len(custom) > maxCustomJSON:
		return codeBadParam
	}
	if m.Category != "" {
		class, ok := categories[m.Category]
		if !ok {
			return 10096
		}
		if m.Classification != nil && *m.Classification != class {
			return 10097
		}
	}
	return 0
}

func (s *Server) send(w http.ResponseWriter, r *http.Request) {
	appID, _, live := s.Check(r.Header.Get("authToken"))
	if !live {
		reply(w, 10000, nil)
		return
	}
	var m sendRequest
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		reply(w, codeBadParam, nil)
		return
	}
	if string(m.AppID) != appID {
		reply(w, 10094, nil)
		return
	}
	if code := validate(&m); code != 0 {
		reply(w, code, nil)
		return
	}
	dedupe := appID + "/" + m.RequestID
	s.mu.Lock()
	taskID, seen := s.accepted[dedupe]
	s.mu.Unlock()
	if seen {
		reply(w, 0, map[string]any{"taskId": taskID})
		return
	}
	a := s.State.Next(m.RegID)
	s.State.Pause(r, a)
	s.State.Record(fake.Received{
		Token:    m.RegID,
		Title:    m.Title,
		Body:     m.Content,
		Data:     m.ClientCustomMap,
		Fields:   fields(&m),
		Answered: a.Code,
	})
	if fake.AnswerBare(w, a) {
		return
	}
	switch {
	case a.Code == "":
		taskID := fake.RandomHex(8)
		s.mu.Lock()
		s.accepted[dedupe] = taskID
		s.mu.Unlock()
		reply(w, 0, map[string]any{"taskId": taskID})
	case strings.HasPrefix(a.Code, "invalidUser:"):
		status, err := strconv.Atoi(strings.TrimPrefix(a.Code, "invalidUser:"))
		if err != nil {
			http.Error(w, "fake vivo: bad answer code "+a.Code, http.StatusBadRequest)
			return
		}
		reply(w, 0, map[string]any{"taskId": fake.RandomHex(8), "invalidUser": map[string]any{"userid": m.RegID, "status": status}})
	default:
		code, err := strconv.Atoi(a.Code)
		if err != nil {
			http.Error(w, "fake vivo: unknown answer code "+a.Code, http.StatusBadRequest)
			return
		}
		reply(w, code, nil)
	}
}

func fields(m *sendRequest) map[string]string {
	opt := func(p *int64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatInt(*p, 10)
	}
	class := ""
	if m.Classification != nil {
		class = strconv.Itoa(*m.Classification)
	}
	return map[string]string{
		"appId":          string(m.AppID),
		"notifyType":     strconv.Itoa(m.NotifyType),
		"timeToLive":     opt(m.TimeToLive),
		"skipType":       strconv.Itoa(m.SkipType),
		"networkType":    strconv.Itoa(m.NetworkType),
		"classification": class,
		"category":       m.Category,
		"notifyId":       opt(m.NotifyID),
		"requestId":      m.RequestID,
	}
}

// reply writes vivo's envelope; vivo answers errors with HTTP 200 too.
func reply(w http.ResponseWriter, code int, extra map[string]any) {
	desc, ok := descs[code]
	if !ok {
		desc = fmt.Sprintf("error %d", code)
	}
	body := map[string]any{"result": code, "desc": desc}
	for k, v := range extra {
		body[k] = v
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	_ = json.NewEncoder(w).Encode(body)
}
