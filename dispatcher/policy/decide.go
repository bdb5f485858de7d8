package policy

import (
	"cmp"
	"maps"
	"slices"
	"time"

	// Zone data is compiled in so the operator (validating zones) and every
	// dispatcher image agree on which zones exist, tzdata installed or not.
	_ "time/tzdata"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/store"
)

// Multi-device rules and provider preferences (config.Policy).
const (
	AllOffline  = "AllOffline"
	AnyOffline  = "AnyOffline"
	VendorFirst = "VendorFirst"
	FCMFirst    = "FCMFirst"
)

// Data keys Decide adds to every message's data so the app can open the
// conversation from the notification. They win over push data of the same
// name: a request cannot point a notification at another conversation.
const (
	DataConversationID   = "imConversationId"
	DataConversationType = "imConversationType"
	DataSenderID         = "imSenderId"
)

// DefaultTTL applies when neither the request nor the policy sets one.
const DefaultTTL = 24 * time.Hour

// MaxTTL caps a request's TTL: FCM keeps a message at most 28 days, and the
// cap keeps seconds-to-Duration from overflowing.
const MaxTTL = 28 * 24 * time.Hour

// SkipReason says why a user or device gets no push. The values are
// CamelCase so they can be metric labels and API outcome reasons.
type SkipReason string

const (
	// Transient: the message is transient (typing, signalling).
	Transient SkipReason = "Transient"
	// NoDevices: the user has no registered device.
	NoDevices SkipReason = "NoDevices"
	// DeviceOnline: under AllOffline some device of the user is online (the
	// whole user is skipped); under AnyOffline this device is online.
	DeviceOnline SkipReason = "DeviceOnline"
	// ModeNone: the user's mode (or the conversation's) is None.
	ModeNone SkipReason = "ModeNone"
	// NotMentioned: the mode is MentionsOnly and the message does not
	// mention the user.
	NotMentioned SkipReason = "NotMentioned"
	// QuietHours: now is inside the user's or the policy's quiet hours.
	QuietHours SkipReason = "QuietHours"
	// NoUsableBinding: the device has no binding with a known certificate.
	NoUsableBinding SkipReason = "NoUsableBinding"
)

// Input is everything Decide looks at for one recipient.
type Input struct {
	Notification *Notification
	Recipient    Recipient
	// User is the recipient's stored record.
	User store.User
	// ProviderOf resolves a binding's certificate name; false means the
	// tenant has no such certificate (now), and the binding is left out.
	ProviderOf func(certificateName string) (config.Provider, bool)
	Now        time.Time
	// Data is Data(Notification), which a caller deciding for many
	// recipients builds once: every recipient's deliveries then share one
	// map (read-only, see providers.Message) instead of one map each. Nil:
	// Decide builds it.
	Data map[string]string
}

// Decision is the outcome for one recipient.
type Decision struct {
	UserID     string
	Deliveries []Delivery
	Skipped    []Skip
	// RenderErrors are template execution failures; the field concerned fell
	// back to its built-in default and the push still goes out.
	RenderErrors []error
}

// Delivery is one device to push to.
type Delivery struct {
	DeviceID string
	// Bindings in the order to try them; never empty.
	Bindings []Binding
	// Message is rendered for this device with Token empty: the delivery
	// engine fills in each binding's token. Data and Badge are this
	// Delivery's own copies.
	Message providers.Message
}

// Binding is a stored binding with its provider resolved.
type Binding struct {
	store.Binding
	Provider config.Provider
}

// Skip records one user (DeviceID "") or device that gets no push.
type Skip struct {
	DeviceID string
	Reason   SkipReason
}

// Decide applies the policy to one recipient of n. Whole-user checks run in
// this order and the first that applies is the only one reported:
// Transient, NoDevices, DeviceOnline (AllOffline), ModeNone, NotMentioned,
// QuietHours; then each device is checked for DeviceOnline (AnyOffline) and
// NoUsableBinding. Nothing is rendered when no device is left.
func Decide(r *Renderer, in Input) Decision {
	p, n := &r.policy, in.Notification
	d := Decision{UserID: in.Recipient.UserID}
	skipUser := func(reason SkipReason) Decision {
		d.Skipped = append(d.Skipped, Skip{Reason: reason})
		return d
	}

	if n.Message.Transient {
		return skipUser(Transient)
	}
	if len(in.User.Devices) == 0 {
		return skipUser(NoDevices)
	}
	online := make(map[string]bool, len(in.Recipient.OnlineDevices))
	for _, id := range in.Recipient.OnlineDevices {
		if id != "" {
			online[id] = true
		}
	}
	anyOffline := p.MultiDevice == AnyOffline
	// Under AllOffline any online device counts, registered for push or not:
	// a desktop or web client online means the user sees the message there.
	if !anyOffline && len(online) > 0 {
		return skipUser(DeviceOnline)
	}

	mentioned := mentions(n, in.Recipient.UserID)
	switch effectiveMode(in.User.Settings, n.Conversation.ID) {
	case store.ModeNone:
		// Force does not reach here: None is the user muting the
		// conversation, while force exists to cross a time window (DND).
		return skipUser(ModeNone)
	case store.ModeMentionsOnly:
		if !mentioned {
			return skipUser(NotMentioned)
		}
	}

	q := p.QuietHours
	if in.User.Settings.QuietHours != nil {
		q = in.User.Settings.QuietHours
	}
	force := n.Push != nil && n.Push.Force
	if !force && r.inQuietHours(q, in.Now) && !(mentioned && q.MentionsBreakThrough) {
		return skipUser(QuietHours)
	}

	for _, dev := range in.User.Devices {
		if anyOffline && online[dev.ID] {
			d.Skipped = append(d.Skipped, Skip{DeviceID: dev.ID, Reason: DeviceOnline})
			continue
		}
		bindings := orderBindings(dev.Bindings, in.ProviderOf, p.ProviderPreference)
		if len(bindings) == 0 {
			d.Skipped = append(d.Skipped, Skip{DeviceID: dev.ID, Reason: NoUsableBinding})
			continue
		}
		d.Deliveries = append(d.Deliveries, Delivery{DeviceID: dev.ID, Bindings: bindings})
	}
	if len(d.Deliveries) == 0 {
		return d
	}

	text := r.Render(n, in.Recipient.UserID, in.User.Settings.Language)
	d.RenderErrors = text.Errors
	data := in.Data
	if data == nil {
		data = Data(n)
	}
	msg := message(p, n, in.Now, data)
	msg.Title, msg.Body = text.Title, text.Body
	// The devices share Data and Badge: clients only read them (see
	// providers.Message), and a copy per device was a map per delivery.
	for i := range d.Deliveries {
		d.Deliveries[i].Message = msg
	}
	return d
}

// effectiveMode: the conversation's override, else the user's mode, else
// All. An unrecognised mode counts as All: the API validates settings, and
// a push too many is easier to notice and fix than pushes silently lost.
func effectiveMode(s store.Settings, conversation string) string {
	mode := s.Mode
	if m := s.Conversations[conversation]; m != "" {
		mode = m
	}
	switch mode {
	case store.ModeNone, store.ModeMentionsOnly:
		return mode
	}
	return store.ModeAll
}

// Data is the data every push of n carries: the caller's push data and the
// conversation and sender ids; nil when there is none.
func Data(n *Notification) map[string]string {
	var push map[string]string
	if n.Push != nil {
		push = n.Push.Data
	}
	data := make(map[string]string, len(push)+3)
	maps.Copy(data, push)
	for _, kv := range [...][2]string{
		{DataConversationID, n.Conversation.ID},
		{DataConversationType, n.Conversation.Type},
		{DataSenderID, n.Sender.ID},
	} {
		if kv[1] != "" {
			data[kv[0]] = kv[1]
		}
	}
	if len(data) == 0 {
		return nil
	}
	return data
}

// message builds everything of a providers.Message except the text and
// token, with data as its Data.
func message(p *config.Policy, n *Notification, now time.Time, data map[string]string) providers.Message {
	m := providers.Message{
		ID:             n.ID,
		Sound:          p.Sound,
		CollapseKey:    n.Conversation.ID,
		ThreadID:       n.Conversation.ID,
		PushType:       PushAlert,
		Classification: p.Classification,
	}
	ttl := p.TTL.Duration
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if push := n.Push; push != nil {
		if push.Badge != nil && p.Badge {
			b := *push.Badge
			m.Badge = &b
		}
		if push.Sound != "" {
			m.Sound = push.Sound
		}
		if push.CollapseKey != "" {
			m.CollapseKey = push.CollapseKey
		}
		if push.PushType != "" {
			m.PushType = push.PushType
		}
		if push.TTLSeconds > 0 {
			ttl = MaxTTL
			if push.TTLSeconds < int64(MaxTTL/time.Second) {
				ttl = time.Duration(push.TTLSeconds) * time.Second
			}
		}
	}
	m.Expiration = now.Add(ttl)
	m.Data = data
	return m
}

// orderBindings drops bindings whose certificate is unknown and sorts the
// rest by preference, keeping stored order among equals. APNs counts as a
// native channel like the vendors': an iOS device holding both an APNs and
// an FCM token goes direct to APNs under VendorFirst, through FCM under
// FCMFirst.
func orderBindings(bs []store.Binding, providerOf func(string) (config.Provider, bool), preference string) []Binding {
	if providerOf == nil {
		return nil
	}
	out := make([]Binding, 0, len(bs))
	for _, b := range bs {
		if prov, ok := providerOf(b.CertificateName); ok {
			out = append(out, Binding{Binding: b, Provider: prov})
		}
	}
	if len(out) < 2 {
		return out
	}
	fcmFirst := preference == FCMFirst
	slices.SortStableFunc(out, func(a, b Binding) int {
		return cmp.Compare(providerRank(a.Provider, fcmFirst), providerRank(b.Provider, fcmFirst))
	})
	return out
}

// providerRank: vendors in config.Providers order, then APNs, with FCM
// before all of them (FCMFirst) or after (VendorFirst, the default).
// Unknown providers go last.
func providerRank(p config.Provider, fcmFirst bool) int {
	if p == config.FCM {
		if fcmFirst {
			return -1
		}
		return len(config.Providers)
	}
	if p == config.APNs {
		return len(config.Providers) - 1
	}
	for i, q := range config.Providers {
		if q == p {
			return i
		}
	}
	return len(config.Providers) + 1
}
