package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/store"
)

// noon is 20:00 in Shanghai.
var noon = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

var certs = map[string]config.Provider{
	"hw":    config.Huawei,
	"honor": config.Honor,
	"xm":    config.Xiaomi,
	"fcm":   config.FCM,
	"fcm2":  config.FCM,
	"apns":  config.APNs,
}

func providerOf(name string) (config.Provider, bool) {
	p, ok := certs[name]
	return p, ok
}

// newRenderer is NewRenderer for a policy the test expects to be valid.
func newRenderer(t *testing.T, p *config.Policy) *Renderer {
	t.Helper()
	r, err := NewRenderer(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func testPolicy() config.Policy {
	return config.Policy{
		MultiDevice:        AllOffline,
		ProviderPreference: VendorFirst,
		ShowContent:        true,
		Sound:              "default",
		Badge:              true,
		TTL:                metav1.Duration{Duration: time.Hour},
		Classification:     config.Classification{HuaweiCategory: "IM", VivoClassification: 1},
	}
}

func testNotification() *Notification {
	return &Notification{
		ID:           "n1",
		Sender:       Sender{ID: "alice", DisplayName: "Alice"},
		Conversation: Conversation{ID: "c1", Type: ConversationSingle},
		Recipients:   []Recipient{{UserID: "bob"}},
		Message:      Message{Text: "hi"},
	}
}

func device(id string, certNames ...string) store.Device {
	d := store.Device{ID: id}
	for _, c := range certNames {
		d.Bindings = append(d.Bindings, store.Binding{CertificateName: c, Token: id + "-" + c})
	}
	return d
}

func testUser() store.User {
	return store.User{Version: store.RecordVersion, Devices: []store.Device{
		device("phone", "fcm", "hw"),
		device("ipad", "apns"),
	}}
}

func shanghaiNight() *config.QuietHours {
	return &config.QuietHours{Start: "22:00", End: "07:00", TimeZone: "Asia/Shanghai"}
}

// summary renders deliveries as "device=cert,cert" for compact tables.
func summary(ds []Delivery) []string {
	var out []string
	for _, d := range ds {
		var names []string
		for _, b := range d.Bindings {
			names = append(names, b.CertificateName)
		}
		out = append(out, d.DeviceID+"="+strings.Join(names, ","))
	}
	return out
}

func TestDecide(t *testing.T) {
	all := []string{"phone=hw,fcm", "ipad=apns"}
	whole := func(r SkipReason) []Skip { return []Skip{{Reason: r}} }
	at := func(hhmm string) time.Time {
		t, err := time.Parse("2006-01-02 15:04", "2026-03-10 "+hhmm)
		if err != nil {
			panic(err)
		}
		return t
	}

	tests := []struct {
		name     string
		policy   func(*config.Policy)
		notif    func(*Notification)
		online   []string
		user     func(*store.User)
		now      time.Time
		want     []string
		wantSkip []Skip
	}{
		{name: "all offline delivers to every device", want: all},
		{name: "transient never pushes", notif: func(n *Notification) { n.Message.Transient = true }, wantSkip: whole(Transient)},
		{name: "transient wins over force", notif: func(n *Notification) { n.Message.Transient = true; n.Push = &Push{Force: true} }, wantSkip: whole(Transient)},
		{name: "no devices", user: func(u *store.User) { u.Devices = nil }, wantSkip: whole(NoDevices)},

		// Multi-device rules.
		{name: "AllOffline: an online desktop without push skips the user", online: []string{"desktop"}, wantSkip: whole(DeviceOnline)},
		{name: "AllOffline: an online phone skips the user", online: []string{"phone"}, wantSkip: whole(DeviceOnline)},
		{name: "empty multiDevice behaves as AllOffline", policy: func(p *config.Policy) { p.MultiDevice = "" }, online: []string{"phone"}, wantSkip: whole(DeviceOnline)},
		{name: "empty online ids are ignored", online: []string{""}, want: all},
		{name: "AllOffline: online is checked before mode", online: []string{"phone"}, user: func(u *store.User) { u.Settings.Mode = store.ModeNone }, wantSkip: whole(DeviceOnline)},
		{name: "AnyOffline: only the online device is skipped", policy: func(p *config.Policy) { p.MultiDevice = AnyOffline }, online: []string{"phone", "desktop"},
			want: []string{"ipad=apns"}, wantSkip: []Skip{{DeviceID: "phone", Reason: DeviceOnline}}},
		{name: "AnyOffline: every device online", policy: func(p *config.Policy) { p.MultiDevice = AnyOffline }, online: []string{"phone", "ipad"},
			wantSkip: []Skip{{DeviceID: "phone", Reason: DeviceOnline}, {DeviceID: "ipad", Reason: DeviceOnline}}},

		// Modes.
		{name: "mode None", user: func(u *store.User) { u.Settings.Mode = store.ModeNone }, wantSkip: whole(ModeNone)},
		{name: "force does not override mode None", user: func(u *store.User) { u.Settings.Mode = store.ModeNone }, notif: func(n *Notification) { n.Push = &Push{Force: true} }, wantSkip: whole(ModeNone)},
		{name: "mode None wins over a mention", user: func(u *store.User) { u.Settings.Mode = store.ModeNone }, notif: func(n *Notification) { n.Message.Mentions = []string{"bob"} }, wantSkip: whole(ModeNone)},
		{name: "MentionsOnly, not mentioned", user: func(u *store.User) { u.Settings.Mode = store.ModeMentionsOnly },
			notif: func(n *Notification) { n.Message.Mentions = []string{"carol"} }, wantSkip: whole(NotMentioned)},
		{name: "MentionsOnly, force does not override", user: func(u *store.User) { u.Settings.Mode = store.ModeMentionsOnly },
			notif: func(n *Notification) { n.Push = &Push{Force: true} }, wantSkip: whole(NotMentioned)},
		{name: "MentionsOnly, mentioned by id", user: func(u *store.User) { u.Settings.Mode = store.ModeMentionsOnly },
			notif: func(n *Notification) { n.Message.Mentions = []string{"carol", "bob"} }, want: all},
		{name: "MentionsOnly, mentionAll", user: func(u *store.User) { u.Settings.Mode = store.ModeMentionsOnly },
			notif: func(n *Notification) { n.Message.MentionAll = true }, want: all},
		{name: "conversation override All beats user None", user: func(u *store.User) {
			u.Settings.Mode = store.ModeNone
			u.Settings.Conversations = map[string]string{"c1": store.ModeAll}
		}, want: all},
		{name: "conversation override None beats user All", user: func(u *store.User) {
			u.Settings.Conversations = map[string]string{"c1": store.ModeNone}
		}, wantSkip: whole(ModeNone)},
		{name: "conversation override MentionsOnly beats user None", user: func(u *store.User) {
			u.Settings.Mode = store.ModeNone
			u.Settings.Conversations = map[string]string{"c1": store.ModeMentionsOnly}
		}, notif: func(n *Notification) { n.Message.Mentions = []string{"bob"} }, want: all},
		{name: "another conversation's override does not apply", user: func(u *store.User) {
			u.Settings.Conversations = map[string]string{"c2": store.ModeNone}
		}, want: all},
		{name: "empty conversation override falls back to the user's mode", user: func(u *store.User) {
			u.Settings.Mode = store.ModeNone
			u.Settings.Conversations = map[string]string{"c1": ""}
		}, wantSkip: whole(ModeNone)},
		{name: "unknown mode counts as All", user: func(u *store.User) { u.Settings.Mode = "Sometimes" }, want: all},

		// Quiet hours: 22:00-07:00 in Shanghai (UTC+8) is 14:00-23:00 UTC.
		{name: "quiet: 21:59 Shanghai is before the window", policy: func(p *config.Policy) { p.QuietHours = shanghaiNight() }, now: at("13:59"), want: all},
		{name: "quiet: 22:00 Shanghai starts the window", policy: func(p *config.Policy) { p.QuietHours = shanghaiNight() }, now: at("14:00"), wantSkip: whole(QuietHours)},
		{name: "quiet: 23:30 Shanghai", policy: func(p *config.Policy) { p.QuietHours = shanghaiNight() }, now: at("15:30"), wantSkip: whole(QuietHours)},
		{name: "quiet: 00:30 Shanghai, past midnight", policy: func(p *config.Policy) { p.QuietHours = shanghaiNight() }, now: at("16:30"), wantSkip: whole(QuietHours)},
		{name: "quiet: 06:59 Shanghai", policy: func(p *config.Policy) { p.QuietHours = shanghaiNight() }, now: at("22:59"), wantSkip: whole(QuietHours)},
		{name: "quiet: 07:00 Shanghai ends the window", policy: func(p *config.Policy) { p.QuietHours = shanghaiNight() }, now: at("23:00"), want: all},
		{name: "quiet: the same instant in UTC would be quiet, in Shanghai is not", policy: func(p *config.Policy) {
			p.QuietHours = shanghaiNight()
		}, now: at("23:30"), want: all},
		{name: "quiet: empty zone is UTC", policy: func(p *config.Policy) {
			p.QuietHours = &config.QuietHours{Start: "22:00", End: "07:00"}
		}, now: at("23:30"), wantSkip: whole(QuietHours)},
		{name: "quiet: unknown zone is UTC", policy: func(p *config.Policy) {
			p.QuietHours = &config.QuietHours{Start: "11:00", End: "13:00", TimeZone: "Mars/Olympus_Mons"}
		}, wantSkip: whole(QuietHours)},
		{name: "quiet: daytime window in New York during DST", policy: func(p *config.Policy) {
			// 2026-07-01 12:00 UTC is 08:00 EDT.
			p.QuietHours = &config.QuietHours{Start: "07:30", End: "09:00", TimeZone: "America/New_York"}
		}, now: time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC), wantSkip: whole(QuietHours)},
		{name: "quiet: daytime window, after it", policy: func(p *config.Policy) {
			p.QuietHours = &config.QuietHours{Start: "07:30", End: "09:00", TimeZone: "America/New_York"}
		}, now: time.Date(2026, 7, 1, 13, 0, 0, 0, time.UTC), want: all},
		{name: "quiet: start == end means none", policy: func(p *config.Policy) {
			p.QuietHours = &config.QuietHours{Start: "12:00", End: "12:00"}
		}, want: all},
		{name: "quiet: unparsable window means none", policy: func(p *config.Policy) {
			p.QuietHours = &config.QuietHours{Start: "noon", End: "13:00"}
		}, want: all},
		{name: "quiet: force overrides", policy: func(p *config.Policy) { p.QuietHours = shanghaiNight() },
			notif: func(n *Notification) { n.Push = &Push{Force: true} }, now: at("15:30"), want: all},
		{name: "quiet: mention breaks through", policy: func(p *config.Policy) {
			p.QuietHours = shanghaiNight()
			p.QuietHours.MentionsBreakThrough = true
		}, notif: func(n *Notification) { n.Message.Mentions = []string{"bob"} }, now: at("15:30"), want: all},
		{name: "quiet: mentionAll breaks through", policy: func(p *config.Policy) {
			p.QuietHours = shanghaiNight()
			p.QuietHours.MentionsBreakThrough = true
		}, notif: func(n *Notification) { n.Message.MentionAll = true }, now: at("15:30"), want: all},
		{name: "quiet: mention without break-through stays quiet", policy: func(p *config.Policy) { p.QuietHours = shanghaiNight() },
			notif: func(n *Notification) { n.Message.Mentions = []string{"bob"} }, now: at("15:30"), wantSkip: whole(QuietHours)},
		{name: "quiet: break-through needs a mention", policy: func(p *config.Policy) {
			p.QuietHours = shanghaiNight()
			p.QuietHours.MentionsBreakThrough = true
		}, notif: func(n *Notification) { n.Message.Mentions = []string{"carol"} }, now: at("15:30"), wantSkip: whole(QuietHours)},
		{name: "quiet: MentionsOnly and mentioned still respects quiet hours", policy: func(p *config.Policy) { p.QuietHours = shanghaiNight() },
			user:  func(u *store.User) { u.Settings.Mode = store.ModeMentionsOnly },
			notif: func(n *Notification) { n.Message.Mentions = []string{"bob"} }, now: at("15:30"), wantSkip: whole(QuietHours)},
		{name: "quiet: the user's window replaces the policy's", policy: func(p *config.Policy) { p.QuietHours = shanghaiNight() },
			user: func(u *store.User) {
				u.Settings.QuietHours = &config.QuietHours{Start: "01:00", End: "06:00", TimeZone: "Asia/Shanghai"}
			}, now: at("15:30"), want: all},
		{name: "quiet: the user's start == end switches the policy's off", policy: func(p *config.Policy) { p.QuietHours = shanghaiNight() },
			user: func(u *store.User) { u.Settings.QuietHours = &config.QuietHours{Start: "00:00", End: "00:00"} }, now: at("15:30"), want: all},
		{name: "quiet: the user's own window with no policy window", user: func(u *store.User) {
			// Noon UTC is 13:00 in Berlin (CET).
			u.Settings.QuietHours = &config.QuietHours{Start: "13:00", End: "14:00", TimeZone: "Europe/Berlin"}
		}, wantSkip: whole(QuietHours)},
		{name: "quiet: the user's break-through flag applies, not the policy's", policy: func(p *config.Policy) {
			p.QuietHours = shanghaiNight()
			p.QuietHours.MentionsBreakThrough = true
		}, user: func(u *store.User) { u.Settings.QuietHours = shanghaiNight() },
			notif: func(n *Notification) { n.Message.Mentions = []string{"bob"} }, now: at("15:30"), wantSkip: whole(QuietHours)},
		{name: "quiet: mode None is reported before quiet hours", policy: func(p *config.Policy) { p.QuietHours = shanghaiNight() },
			user: func(u *store.User) { u.Settings.Mode = store.ModeNone }, now: at("15:30"), wantSkip: whole(ModeNone)},

		// Binding order and usability.
		{name: "VendorFirst puts vendors first, APNs before FCM", user: func(u *store.User) {
			u.Devices = []store.Device{device("android", "fcm", "xm", "hw"), device("ios", "fcm", "apns")}
		}, want: []string{"android=hw,xm,fcm", "ios=apns,fcm"}},
		{name: "empty preference is VendorFirst", policy: func(p *config.Policy) { p.ProviderPreference = "" }, user: func(u *store.User) {
			u.Devices = []store.Device{device("android", "fcm", "honor")}
		}, want: []string{"android=honor,fcm"}},
		{name: "FCMFirst puts FCM first", policy: func(p *config.Policy) { p.ProviderPreference = FCMFirst }, user: func(u *store.User) {
			u.Devices = []store.Device{device("android", "xm", "hw", "fcm"), device("ios", "apns", "fcm")}
		}, want: []string{"android=fcm,hw,xm", "ios=fcm,apns"}},
		{name: "bindings of one provider keep their stored order", user: func(u *store.User) {
			u.Devices = []store.Device{device("android", "fcm2", "hw", "fcm")}
		}, want: []string{"android=hw,fcm2,fcm"}},
		{name: "unknown certificate is left out", user: func(u *store.User) {
			u.Devices = []store.Device{device("android", "retired", "fcm")}
		}, want: []string{"android=fcm"}},
		{name: "device with only unknown certificates", user: func(u *store.User) {
			u.Devices = []store.Device{device("old", "retired"), device("ios", "apns")}
		}, want: []string{"ios=apns"}, wantSkip: []Skip{{DeviceID: "old", Reason: NoUsableBinding}}},
		{name: "device without bindings", user: func(u *store.User) {
			u.Devices = []store.Device{device("bare")}
		}, wantSkip: []Skip{{DeviceID: "bare", Reason: NoUsableBinding}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy()
			if tt.policy != nil {
				tt.policy(&p)
			}
			n := testNotification()
			if tt.notif != nil {
				tt.notif(n)
			}
			u := testUser()
			if tt.user != nil {
				tt.user(&u)
			}
			now := tt.now
			if now.IsZero() {
				now = noon
			}
			r := newRenderer(t, &p)
			d := Decide(r, Input{Notification: n, Recipient: Recipient{UserID: "bob", OnlineDevices: tt.online}, User: u, ProviderOf: providerOf, Now: now})
			if d.UserID != "bob" {
				t.Errorf("UserID = %q", d.UserID)
			}
			if diff := cmp.Diff(tt.want, summary(d.Deliveries)); diff != "" {
				t.Errorf("deliveries (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantSkip, d.Skipped); diff != "" {
				t.Errorf("skipped (-want +got):\n%s", diff)
			}
			for _, del := range d.Deliveries {
				if del.Message.Title == "" || del.Message.ID != "n1" {
					t.Errorf("device %s: message not rendered: %+v", del.DeviceID, del.Message)
				}
			}
		})
	}
}

func TestDecideMessage(t *testing.T) {
	badge := func(n int) *int { return &n }
	base := providers.Message{
		ID:             "n1",
		Title:          "Alice",
		Body:           "hi",
		Sound:          "default",
		Data:           map[string]string{DataConversationID: "c1", DataConversationType: "single", DataSenderID: "alice"},
		CollapseKey:    "c1",
		ThreadID:       "c1",
		Expiration:     noon.Add(time.Hour),
		PushType:       PushAlert,
		Classification: config.Classification{HuaweiCategory: "IM", VivoClassification: 1},
	}
	tests := []struct {
		name   string
		policy func(*config.Policy)
		push   *Push
		want   func(*providers.Message)
	}{
		{name: "defaults"},
		{name: "badge from the request", push: &Push{Badge: badge(3)}, want: func(m *providers.Message) { m.Badge = badge(3) }},
		{name: "badge zero is still set", push: &Push{Badge: badge(0)}, want: func(m *providers.Message) { m.Badge = badge(0) }},
		{name: "badge off in the policy", policy: func(p *config.Policy) { p.Badge = false }, push: &Push{Badge: badge(3)}},
		{name: "no badge in the request", push: &Push{}},
		{name: "sound override", push: &Push{Sound: "ding.caf"}, want: func(m *providers.Message) { m.Sound = "ding.caf" }},
		{name: "no policy sound", policy: func(p *config.Policy) { p.Sound = "" }, want: func(m *providers.Message) { m.Sound = "" }},
		{name: "push data merged, reserved keys win", push: &Push{Data: map[string]string{"k": "v", DataConversationID: "spoofed"}},
			want: func(m *providers.Message) { m.Data["k"] = "v" }},
		{name: "collapse key override", push: &Push{CollapseKey: "call-7"}, want: func(m *providers.Message) { m.CollapseKey = "call-7" }},
		{name: "push type override", push: &Push{PushType: PushVoIP}, want: func(m *providers.Message) { m.PushType = PushVoIP }},
		{name: "TTL from the request", push: &Push{TTLSeconds: 60}, want: func(m *providers.Message) { m.Expiration = noon.Add(time.Minute) }},
		{name: "negative TTL uses the policy's", push: &Push{TTLSeconds: -5}},
		{name: "huge TTL is capped", push: &Push{TTLSeconds: 1 << 62}, want: func(m *providers.Message) { m.Expiration = noon.Add(MaxTTL) }},
		{name: "no policy TTL", policy: func(p *config.Policy) { p.TTL.Duration = 0 }, want: func(m *providers.Message) { m.Expiration = noon.Add(DefaultTTL) }},
		{name: "title and body overrides", push: &Push{Title: "Call", Body: "Alice is calling"}, want: func(m *providers.Message) { m.Title, m.Body = "Call", "Alice is calling" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy()
			if tt.policy != nil {
				tt.policy(&p)
			}
			n := testNotification()
			n.Push = tt.push
			r := newRenderer(t, &p)
			u := store.User{Devices: []store.Device{device("phone", "hw"), device("ipad", "apns")}}
			d := Decide(r, Input{Notification: n, Recipient: Recipient{UserID: "bob"}, User: u, ProviderOf: providerOf, Now: noon})
			if len(d.Deliveries) != 2 {
				t.Fatalf("deliveries = %v, skipped %v", summary(d.Deliveries), d.Skipped)
			}
			want := base
			want.Data = map[string]string{}
			for k, v := range base.Data {
				want.Data[k] = v
			}
			if tt.want != nil {
				tt.want(&want)
			}
			// The same with the data built once by the caller, as Submit does.
			shared := Decide(r, Input{Notification: n, Recipient: Recipient{UserID: "bob"}, User: u, ProviderOf: providerOf, Now: noon, Data: Data(n)})
			for _, del := range append(d.Deliveries, shared.Deliveries...) {
				if diff := cmp.Diff(want, del.Message); diff != "" {
					t.Errorf("device %s message (-want +got):\n%s", del.DeviceID, diff)
				}
			}
			if tt.push != nil && tt.push.Data != nil && tt.push.Data[DataConversationID] != "spoofed" {
				t.Error("the request's data map was modified")
			}
		})
	}
}

// TestDecideDeliveriesDoNotShareTheRequest: a device's deliveries share
// their rendered Data and Badge (clients only read them, see
// providers.Message), but never the request's own map or badge.
func TestDecideDeliveriesDoNotShareTheRequest(t *testing.T) {
	p := testPolicy()
	r := newRenderer(t, &p)
	n := testNotification()
	three := 3
	n.Push = &Push{Badge: &three, Data: map[string]string{"k": "v"}}
	d := Decide(r, Input{Notification: n, Recipient: Recipient{UserID: "bob"}, User: testUser(), ProviderOf: providerOf, Now: noon})
	if len(d.Deliveries) != 2 {
		t.Fatalf("deliveries = %v", summary(d.Deliveries))
	}
	a := d.Deliveries[0].Message
	a.Data["x"] = "y"
	*a.Badge = 9
	if len(n.Push.Data) != 1 || three != 3 {
		t.Errorf("a delivery shares the request's data %v or badge %d", n.Push.Data, three)
	}
}

// TestDecideUsesTheGivenData: with Input.Data set, every delivery carries
// that map itself, so the recipients of one notification share one.
func TestDecideUsesTheGivenData(t *testing.T) {
	p := testPolicy()
	r := newRenderer(t, &p)
	n := testNotification()
	data := Data(n)
	d := Decide(r, Input{Notification: n, Recipient: Recipient{UserID: "bob"}, User: testUser(), ProviderOf: providerOf, Now: noon, Data: data})
	if len(d.Deliveries) != 2 {
		t.Fatalf("deliveries = %v", summary(d.Deliveries))
	}
	data["probe"] = "x"
	for _, del := range d.Deliveries {
		if del.Message.Data["probe"] != "x" {
			t.Errorf("device %s carries a data map of its own: %v", del.DeviceID, del.Message.Data)
		}
	}
}

func TestDecideNilProviderOf(t *testing.T) {
	p := testPolicy()
	r := newRenderer(t, &p)
	d := Decide(r, Input{Notification: testNotification(), Recipient: Recipient{UserID: "bob"}, User: testUser(), Now: noon})
	want := []Skip{{DeviceID: "phone", Reason: NoUsableBinding}, {DeviceID: "ipad", Reason: NoUsableBinding}}
	if diff := cmp.Diff(want, d.Skipped); diff != "" || len(d.Deliveries) != 0 {
		t.Errorf("skipped (-want +got):\n%s\ndeliveries %v", diff, summary(d.Deliveries))
	}
}

func TestDecideRenderErrorCounted(t *testing.T) {
	p := testPolicy()
	p.Templates = []config.Template{{Title: "{{.Sender.Nickname}}", Body: "{{.Text}}!"}}
	r := newRenderer(t, &p)
	d := Decide(r, Input{Notification: testNotification(), Recipient: Recipient{UserID: "bob"}, User: testUser(), ProviderOf: providerOf, Now: noon})
	if len(d.RenderErrors) != 1 || !strings.Contains(d.RenderErrors[0].Error(), "Nickname") {
		t.Fatalf("RenderErrors = %v", d.RenderErrors)
	}
	for _, del := range d.Deliveries {
		if del.Message.Title != "Alice" || del.Message.Body != "hi!" {
			t.Errorf("device %s: title %q body %q", del.DeviceID, del.Message.Title, del.Message.Body)
		}
	}

	// Nothing is rendered, so nothing fails, when no device is left.
	d = Decide(r, Input{Notification: testNotification(), Recipient: Recipient{UserID: "bob", OnlineDevices: []string{"phone"}}, User: testUser(), ProviderOf: providerOf, Now: noon})
	if len(d.RenderErrors) != 0 {
		t.Errorf("RenderErrors with no delivery = %v", d.RenderErrors)
	}
}

// TestDecideConcurrent shares one Renderer across goroutines, as the
// dispatcher does; run with -race it checks the zone cache.
func TestDecideConcurrent(t *testing.T) {
	p := testPolicy()
	r := newRenderer(t, &p)
	zones := []string{"Asia/Shanghai", "Europe/Berlin", "America/New_York", "Nowhere/Else", ""}
	done := make(chan struct{})
	for i := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for j := range 50 {
				u := testUser()
				u.Settings.QuietHours = &config.QuietHours{Start: "00:00", End: "23:59", TimeZone: zones[(i+j)%len(zones)]}
				d := Decide(r, Input{Notification: testNotification(), Recipient: Recipient{UserID: fmt.Sprint("u", i)}, User: u, ProviderOf: providerOf, Now: noon})
				if len(d.Deliveries) != 0 {
					t.Errorf("zone %q: expected quiet hours, got deliveries", zones[(i+j)%len(zones)])
				}
			}
		}()
	}
	for range 8 {
		<-done
	}
}
