package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/imcloud/im-push-operator/dispatcher/policy"
	"github.com/imcloud/im-push-operator/dispatcher/store"
)

// Bounds of the notification API.
const (
	MaxRecipients        = 1000
	MaxMentions          = 1000
	MaxOnlineDevices     = 100
	MaxBatch             = 100
	MaxNotificationIDLen = 128 // characters
	DefaultWait          = 10 * time.Second
	MaxWait              = 30 * time.Second
	defaultRetryAfter    = time.Second
)

func (s *Server) postNotification(w http.ResponseWriter, r *http.Request) {
	wait, timeout, e := waitParams(r)
	if e != nil {
		writeError(w, e)
		return
	}
	body, e := readBody(w, r)
	if e != nil {
		writeError(w, e)
		return
	}
	receipt, e := s.submitNotification(body)
	if e != nil {
		writeError(w, e)
		return
	}
	if !wait {
		writeJSON(w, http.StatusAccepted, receipt)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	st, err := s.opts.Engine.Wait(ctx, receipt.ID)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		s.log.Error(err, "waiting for notification outcomes", "notification", receipt.ID)
		writeError(w, newError(http.StatusInternalServerError, CodeInternal, "", "waiting for the outcomes failed; the notification was accepted"))
		return
	}
	if st.Devices == nil {
		st.Devices = []DeviceOutcome{}
	}
	writeJSON(w, http.StatusOK, waitResponse{Receipt: receipt, Complete: st.Complete, Devices: st.Devices})
}

// submitNotification decodes, validates and submits a checked body
// (checkBody): all of POST /v1/notifications but the waiting, for both
// transports (ServeHTTP and FastHandler).
func (s *Server) submitNotification(body []byte) (Receipt, *apiError) {
	if e := s.admitEarly(body); e != nil {
		return Receipt{}, e
	}
	var n policy.Notification
	if e := decodeJSON(body, &n, ""); e != nil {
		return Receipt{}, e
	}
	if e := validateNotification(&n, ""); e != nil {
		return Receipt{}, e
	}
	receipt, err := s.opts.Engine.Submit(&n)
	if err != nil {
		return Receipt{}, s.submitError(err)
	}
	return receipt, nil
}

// admitEarly refuses a notification that its queue has no room for before
// its body is decoded. Under overload most requests are refused: in the
// saturated group-message windows of `make bench`, nine in ten, each after
// decoding 500 recipients, CPU the workers needed. Scanning for the id and
// the recipients' count costs about a third of decoding (BenchmarkPeekRecipients),
// and it is only done while the queue has less room than the body could
// need, so a queue with room pays nothing. A body refused here may also be
// invalid: the client retries it as any 429 and is then told why.
func (s *Server) admitEarly(body []byte) *apiError {
	a, ok := s.opts.Engine.(Admitter)
	if !ok || a.Room() >= mostRecipients(body) {
		return nil
	}
	id, recipients, ok := peekRecipients(body)
	if !ok {
		return nil // the decoder names what is wrong with it
	}
	if err := a.Admit(id, recipients); err != nil {
		return s.submitError(err)
	}
	return nil
}

// minRecipientBytes is the shortest a recipient can be in a body, with
// the comma after it.
const minRecipientBytes = len(`{"userId":"x"},`)

// mostRecipients bounds the recipients a body of this size can hold.
func mostRecipients(body []byte) int {
	return min(MaxRecipients, len(body)/minRecipientBytes+1)
}

// waitResponse is the receipt and the outcomes known when waiting ended;
// devices still retrying are reported as pending and complete is false.
type waitResponse struct {
	Receipt
	Complete bool            `json:"complete"`
	Devices  []DeviceOutcome `json:"devices"`
}

// waitParams reads ?wait=true&timeout=; timeout is a Go duration (5s,
// 1500ms) or whole seconds, capped at MaxWait.
func waitParams(r *http.Request) (bool, time.Duration, *apiError) {
	q := r.URL.Query()
	wait := false
	if v := q.Get("wait"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, 0, invalidField("wait", "wait must be true or false, not %q", v)
		}
		wait = b
	}
	timeout := DefaultWait
	if v := q.Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			secs, err2 := strconv.Atoi(v)
			if err2 != nil {
				return false, 0, invalidField("timeout", "timeout must be a duration such as 5s or whole seconds, not %q", v)
			}
			d = time.Duration(secs) * time.Second
		}
		if d <= 0 {
			return false, 0, invalidField("timeout", "timeout must be positive")
		}
		timeout = min(d, MaxWait)
	}
	return wait, timeout, nil
}

type batchRequest struct {
	Notifications []json.RawMessage `json:"notifications"`
}

type batchResponse struct {
	Results []batchResult `json:"results"`
}

// batchResult is one item's answer: its HTTP-equivalent status and either
// the receipt or the error.
type batchResult struct {
	Status int `json:"status"`
	*Receipt
	Error *apiError `json:"error,omitempty"`
}

// postBatch submits up to MaxBatch notifications; a malformed envelope fails
// the whole request, a bad item fails only itself.
func (s *Server) postBatch(w http.ResponseWriter, r *http.Request) {
	var req batchRequest
	if !readJSON(w, r, &req) {
		return
	}
	switch {
	case len(req.Notifications) == 0:
		writeError(w, invalidField("notifications", "notifications must hold at least one notification"))
		return
	case len(req.Notifications) > MaxBatch:
		writeError(w, invalidField("notifications", "a batch holds at most %d notifications, not %d", MaxBatch, len(req.Notifications)))
		return
	}
	resp := batchResponse{Results: make([]batchResult, len(req.Notifications))}
	for i, raw := range req.Notifications {
		resp.Results[i] = s.submitItem(raw, fmt.Sprintf("notifications[%d]", i))
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) submitItem(raw json.RawMessage, prefix string) batchResult {
	var n policy.Notification
	if e := decodeJSON(raw, &n, prefix); e != nil {
		return batchResult{Status: e.status, Error: e}
	}
	if e := validateNotification(&n, prefix); e != nil {
		return batchResult{Status: e.status, Error: e}
	}
	receipt, err := s.opts.Engine.Submit(&n)
	if err != nil {
		e := s.submitError(err)
		return batchResult{Status: e.status, Error: e}
	}
	return batchResult{Status: http.StatusAccepted, Receipt: &receipt}
}

func (s *Server) getNotification(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if e := checkNotificationID(id, "id"); e != nil {
		writeError(w, e)
		return
	}
	st, ok := s.opts.Engine.Status(id)
	if !ok {
		writeError(w, newError(http.StatusNotFound, CodeNotFound, "id", "notification %q is not known to this replica (never accepted here, or older than the idempotency window)", id))
		return
	}
	if st.Devices == nil {
		st.Devices = []DeviceOutcome{}
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) submitError(err error) *apiError {
	switch {
	case errors.Is(err, ErrQueueFull):
		e := newError(http.StatusTooManyRequests, CodeQueueFull, "", "the delivery queue is full; retry later")
		e.retryAfter = defaultRetryAfter
		if ra, ok := errors.AsType[RetryAfterError](err); ok && ra.RetryAfter() > 0 {
			e.retryAfter = ra.RetryAfter()
		}
		return e
	case errors.Is(err, ErrDraining):
		return newError(http.StatusServiceUnavailable, CodeDraining, "", "this dispatcher replica is shutting down; retry on another")
	case errors.Is(err, ErrNotReady):
		return newError(http.StatusServiceUnavailable, CodeNotReady, "", "the delivery engine has not loaded its config yet")
	}
	s.log.Error(err, "submitting notification")
	return newError(http.StatusInternalServerError, CodeInternal, "", "submitting the notification failed")
}

func checkNotificationID(id, field string) *apiError {
	if n := utf8.RuneCountInString(id); n == 0 || n > MaxNotificationIDLen {
		return invalidField(field, "id must be 1 to %d characters, not %d", MaxNotificationIDLen, n)
	}
	if !utf8.ValidString(id) {
		return invalidField(field, "id is not valid UTF-8")
	}
	return nil
}

// validateNotification checks what the engine and policy rely on, naming the
// first offending field (prefixed with prefix in a batch).
func validateNotification(n *policy.Notification, prefix string) *apiError {
	f := func(field string) string { return joinField(prefix, field) }
	if e := checkNotificationID(n.ID, f("id")); e != nil {
		return e
	}
	if store.ValidUser(n.Sender.ID) != nil {
		return invalidField(f("sender.id"), "sender.id must be 1 to %d bytes", MaxIDBytes)
	}
	if n.Conversation.ID == "" || len(n.Conversation.ID) > MaxIDBytes {
		return invalidField(f("conversation.id"), "conversation.id must be 1 to %d bytes", MaxIDBytes)
	}
	switch n.Conversation.Type {
	case policy.ConversationSingle, policy.ConversationGroup:
	default:
		return invalidField(f("conversation.type"), "conversation.type %q is not single or group", n.Conversation.Type)
	}
	if len(n.Recipients) == 0 || len(n.Recipients) > MaxRecipients {
		return invalidField(f("recipients"), "recipients must hold 1 to %d users, not %d", MaxRecipients, len(n.Recipients))
	}
	seen := make(map[string]int, len(n.Recipients))
	for i, rc := range n.Recipients {
		field := f(fmt.Sprintf("recipients[%d]", i))
		if store.ValidUser(rc.UserID) != nil {
			return invalidField(field+".userId", "userId must be 1 to %d bytes", MaxIDBytes)
		}
		if j, dup := seen[rc.UserID]; dup {
			return invalidField(field+".userId", "user %q is already recipients[%d]", rc.UserID, j)
		}
		seen[rc.UserID] = i
		if len(rc.OnlineDevices) > MaxOnlineDevices {
			return invalidField(field+".onlineDevices", "at most %d online devices, not %d", MaxOnlineDevices, len(rc.OnlineDevices))
		}
		for k, d := range rc.OnlineDevices {
			if d == "" || len(d) > MaxIDBytes {
				return invalidField(fmt.Sprintf("%s.onlineDevices[%d]", field, k), "a device id must be 1 to %d bytes", MaxIDBytes)
			}
		}
	}
	if len(n.Message.Mentions) > MaxMentions {
		return invalidField(f("message.mentions"), "at most %d mentions, not %d", MaxMentions, len(n.Message.Mentions))
	}
	if p := n.Push; p != nil {
		switch p.PushType {
		case "", policy.PushAlert, policy.PushBackground, policy.PushVoIP:
		default:
			return invalidField(f("push.pushType"), "pushType %q is not alert, background or voip", p.PushType)
		}
		if p.Badge != nil && *p.Badge < 0 {
			return invalidField(f("push.badge"), "badge must not be negative")
		}
		if p.TTLSeconds < 0 {
			return invalidField(f("push.ttlSeconds"), "ttlSeconds must not be negative")
		}
	}
	return nil
}
