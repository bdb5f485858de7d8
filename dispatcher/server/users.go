package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/imcloud/im-push-operator/dispatcher/policy"
	"github.com/imcloud/im-push-operator/dispatcher/store"
)

// Bounds of the user and device API.
const (
	MaxIDBytes           = 128
	MaxTokenBytes        = 4096
	MaxConversationModes = 1000
	MaxLanguageLength    = 35
	shortTokenRunes      = 8
	storeWaitTimeout     = 15 * time.Second
)

type bindRequest struct {
	CertificateName string `json:"certificateName"`
	Token           string `json:"token"`
}

func (s *Server) bindDevice(w http.ResponseWriter, r *http.Request) {
	user, device, e := userDevice(r)
	if e != nil {
		writeError(w, e)
		return
	}
	var req bindRequest
	if !readJSON(w, r, &req) {
		return
	}
	switch {
	case req.CertificateName == "":
		writeError(w, invalidField("certificateName", "certificateName is required"))
		return
	case len(req.Token) == 0 || len(req.Token) > MaxTokenBytes:
		writeError(w, invalidField("token", "token must be 1 to %d bytes, not %d", MaxTokenBytes, len(req.Token)))
		return
	}
	cfg, _ := s.opts.Config.Config()
	if cfg == nil {
		writeError(w, newError(http.StatusServiceUnavailable, CodeNotReady, "", "the dispatcher has not loaded its config yet"))
		return
	}
	if _, ok := cfg.Certificate(req.CertificateName); !ok {
		writeError(w, newError(http.StatusUnprocessableEntity, CodeUnknownCertificate, "certificateName",
			"certificateName %q is not a certificate of this app", req.CertificateName))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), storeWaitTimeout)
	defer cancel()
	if err := s.opts.Store.Bind(ctx, user, device, store.Binding{CertificateName: req.CertificateName, Token: req.Token}); err != nil {
		writeError(w, s.storeError(err, "binding device"))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) unbindDevice(w http.ResponseWriter, r *http.Request) {
	user, device, e := userDevice(r)
	if e != nil {
		writeError(w, e)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), storeWaitTimeout)
	defer cancel()
	found, err := s.opts.Store.Unbind(ctx, user, device)
	switch {
	case err != nil:
		writeError(w, s.storeError(err, "unbinding device"))
	case !found:
		writeError(w, newError(http.StatusNotFound, CodeNotFound, "device", "user %q has no device %q", user, device))
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

type devicesResponse struct {
	User    string       `json:"user"`
	Devices []deviceView `json:"devices"`
}

type deviceView struct {
	ID        string        `json:"id"`
	UpdatedAt time.Time     `json:"updatedAt"`
	Bindings  []bindingView `json:"bindings"`
}

type bindingView struct {
	CertificateName string    `json:"certificateName"`
	Token           string    `json:"token"`
	BoundAt         time.Time `json:"boundAt"`
}

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request) {
	user, e := pathUser(r)
	if e != nil {
		writeError(w, e)
		return
	}
	u, err := s.opts.Store.Get(r.Context(), user)
	if err != nil {
		writeError(w, s.storeError(err, "reading user"))
		return
	}
	resp := devicesResponse{User: user, Devices: []deviceView{}}
	for _, d := range u.Devices {
		v := deviceView{ID: d.ID, UpdatedAt: d.UpdatedAt, Bindings: []bindingView{}}
		for _, b := range d.Bindings {
			v.Bindings = append(v.Bindings, bindingView{CertificateName: b.CertificateName, Token: shortToken(b.Token), BoundAt: b.BoundAt})
		}
		resp.Devices = append(resp.Devices, v)
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) {
	user, e := pathUser(r)
	if e != nil {
		writeError(w, e)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), storeWaitTimeout)
	defer cancel()
	found, err := s.opts.Store.DeleteUser(ctx, user)
	switch {
	case err != nil:
		writeError(w, s.storeError(err, "deleting user"))
	case !found:
		writeError(w, newError(http.StatusNotFound, CodeNotFound, "user", "user %q is not known", user))
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) putSettings(w http.ResponseWriter, r *http.Request) {
	user, e := pathUser(r)
	if e != nil {
		writeError(w, e)
		return
	}
	var settings store.Settings
	if !readJSON(w, r, &settings) {
		return
	}
	if e := validateSettings(&settings); e != nil {
		writeError(w, e)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), storeWaitTimeout)
	defer cancel()
	if err := s.opts.Store.PutSettings(ctx, user, settings); err != nil {
		writeError(w, s.storeError(err, "writing settings"))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func validMode(m string) bool {
	return m == store.ModeAll || m == store.ModeMentionsOnly || m == store.ModeNone
}

func validateSettings(st *store.Settings) *apiError {
	if st.Mode != "" && !validMode(st.Mode) {
		return invalidField("mode", "mode %q is not All, MentionsOnly or None", st.Mode)
	}
	if len(st.Conversations) > MaxConversationModes {
		return invalidField("conversations", "at most %d conversations may have their own mode, not %d", MaxConversationModes, len(st.Conversations))
	}
	for id, mode := range st.Conversations {
		field := fmt.Sprintf("conversations[%q]", id)
		if id == "" || len(id) > MaxIDBytes {
			return invalidField(field, "a conversation id must be 1 to %d bytes", MaxIDBytes)
		}
		if !validMode(mode) {
			return invalidField(field, "mode %q is not All, MentionsOnly or None", mode)
		}
	}
	if err := policy.ValidateQuietHours("quietHours", st.QuietHours); err != nil {
		if fe, ok := errors.AsType[*policy.FieldError](err); ok {
			return invalidField(fe.Path, "%v", fe.Err)
		}
		return invalidField("quietHours", "%v", err)
	}
	if st.Language != "" && !validLanguage(st.Language) {
		return invalidField("language", "language %q is not a language tag such as en or zh-Hans", st.Language)
	}
	return nil
}

// validLanguage accepts BCP 47-shaped tags: a letter first, then letters,
// digits, '-' or '_', at most MaxLanguageLength long.
func validLanguage(l string) bool {
	if len(l) > MaxLanguageLength {
		return false
	}
	for i, c := range l {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if i == 0 && !letter {
			return false
		}
		if !letter && !(c >= '0' && c <= '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

func pathUser(r *http.Request) (string, *apiError) {
	user := r.PathValue("user")
	if e := checkID("user", user); e != nil {
		return "", e
	}
	if store.ValidUser(user) != nil {
		return "", invalidField("user", "user id must be 1 to %d bytes", MaxIDBytes)
	}
	return user, nil
}

func userDevice(r *http.Request) (string, string, *apiError) {
	user, e := pathUser(r)
	if e != nil {
		return "", "", e
	}
	device := r.PathValue("device")
	if e := checkID("device", device); e != nil {
		return "", "", e
	}
	return user, device, nil
}

func checkID(field, id string) *apiError {
	if len(id) == 0 || len(id) > MaxIDBytes {
		return invalidField(field, "%s id must be 1 to %d bytes, not %d", field, MaxIDBytes, len(id))
	}
	if !utf8.ValidString(id) {
		return invalidField(field, "%s id is not valid UTF-8", field)
	}
	return nil
}

// storeError maps a store failure to an answer; what is not the caller's
// doing is logged and answered without detail.
func (s *Server) storeError(err error, doing string) *apiError {
	switch {
	case errors.Is(err, store.ErrShardFull):
		return newError(http.StatusInsufficientStorage, CodeShardFull, "",
			"the token store shard holding this user is full; the tenant's token store needs more shards or fewer devices per user")
	case errors.Is(err, store.ErrNotReady):
		return newError(http.StatusServiceUnavailable, CodeNotReady, "", "the token store is not loaded yet")
	case errors.Is(err, store.ErrUnavailable):
		s.log.Info("token store write failed: the API server is unavailable", "doing", doing, "error", err.Error())
		return newError(http.StatusServiceUnavailable, CodeNotReady, "", "the token store cannot reach the Kubernetes API server; the change may or may not have been written, retry")
	case errors.Is(err, store.ErrInvalidUser):
		return invalidField("user", "user id must be 1 to %d bytes", MaxIDBytes)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return newError(http.StatusServiceUnavailable, CodeNotReady, "", "the token store did not commit in time; the change may or may not have been written")
	}
	s.log.Error(err, doing)
	return newError(http.StatusInternalServerError, CodeInternal, "", "%s failed", doing)
}

// shortToken shows the first characters of a token, the most the API or a
// log ever shows.
func shortToken(token string) string {
	if utf8.RuneCountInString(token) <= shortTokenRunes {
		return token
	}
	n := 0
	for i := range token {
		if n == shortTokenRunes {
			return token[:i] + "…"
		}
		n++
	}
	return token
}
