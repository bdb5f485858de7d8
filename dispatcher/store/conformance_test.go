package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/internal/testenv"
)

// newStore builds a ready, empty store for one conformance case.
type newStore func(t *testing.T, cfg config.TokenStore, now func() time.Time) Store

func newMemoryStore(_ *testing.T, cfg config.TokenStore, now func() time.Time) Store {
	return NewMemory(cfg, now)
}

func newSecretsStore(t *testing.T, cfg config.TokenStore, now func() time.Time) Store {
	_, cs := apiServer(t)
	ns := testenv.Namespace(t, cs, "store")
	createShards(t, cs, ns, cfg)
	return startSecrets(t, adminClient(t), ns, cfg, SecretsOptions{Now: now})
}

// TestConformance runs the same behaviour table against both stores, so the
// Memory store other packages test with behaves like production.
func TestConformance(t *testing.T) {
	for name, build := range map[string]newStore{"Memory": newMemoryStore, "Secrets": newSecretsStore} {
		t.Run(name, func(t *testing.T) { runConformance(t, build) })
	}
}

type conformanceCase struct {
	name string
	cfg  config.TokenStore
	run  func(t *testing.T, s Store, clk *fakeClock)
}

func runConformance(t *testing.T, build newStore) {
	for _, tc := range conformanceCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if cfg.Shards == 0 {
				cfg.Shards = 3
			}
			cfg.ShardPrefix = "chat-devices-"
			clk := newClock()
			tc.run(t, build(t, cfg, clk.Now), clk)
		})
	}
}

var ctx = context.Background()

var conformanceCases = []conformanceCase{
	{
		name: "a user never seen is an empty record",
		run: func(t *testing.T, s Store, _ *fakeClock) {
			wantUser(t, s, "nobody", User{Version: RecordVersion})
		},
	},
	{
		name: "invalid arguments are refused",
		run: func(t *testing.T, s Store, clk *fakeClock) {
			b := Binding{CertificateName: "apns", Token: "tok"}
			for _, user := range []string{"", strings.Repeat("u", 129)} {
				_, errGet := s.Get(ctx, user)
				errBind := s.Bind(ctx, user, "d1", b)
				_, errUnbind := s.Unbind(ctx, user, "d1")
				_, errDelete := s.DeleteUser(ctx, user)
				errSettings := s.PutSettings(ctx, user, Settings{Mode: ModeNone})
				_, errRemove := s.RemoveToken(ctx, user, "d1", "apns", "tok", clk.Now())
				for i, err := range []error{errGet, errBind, errUnbind, errDelete, errSettings, errRemove} {
					if !errors.Is(err, ErrInvalidUser) {
						t.Errorf("user of %d bytes, call %d: got %v, want ErrInvalidUser", len(user), i, err)
					}
				}
			}
			for _, tc := range []struct{ device, cert, token string }{{"", "apns", "tok"}, {"d1", "", "tok"}, {"d1", "apns", ""}} {
				if err := s.Bind(ctx, "u", tc.device, Binding{CertificateName: tc.cert, Token: tc.token}); !errors.Is(err, ErrInvalidBinding) {
					t.Errorf("Bind(%q, %q, %q) = %v, want ErrInvalidBinding", tc.device, tc.cert, tc.token, err)
				}
			}
			if _, err := s.Unbind(ctx, "u", ""); !errors.Is(err, ErrInvalidBinding) {
				t.Errorf("Unbind of an empty device id = %v, want ErrInvalidBinding", err)
			}
		},
	},
	{
		name: "user ids of 1 to 128 bytes of any UTF-8 are kept apart",
		run: func(t *testing.T, s Store, clk *fakeClock) {
			users := []string{"a", "用户-1", "user/with+odd=chars?", strings.Repeat("x", 128), strings.Repeat("x", 127)}
			for i, u := range users {
				mustBind(t, s, u, "phone", Binding{CertificateName: "fcm", Token: fmt.Sprintf("tok-%d", i)})
			}
			for i, u := range users {
				wantUser(t, s, u, User{Version: RecordVersion, Devices: []Device{{
					ID: "phone", UpdatedAt: clk.Now(),
					Bindings: []Binding{{CertificateName: "fcm", Token: fmt.Sprintf("tok-%d", i), BoundAt: clk.Now()}},
				}}})
			}
		},
	},
	{
		name: "bind adds a binding per certificate and replaces the same certificate's",
		run: func(t *testing.T, s Store, clk *fakeClock) {
			t0 := clk.Now()
			mustBind(t, s, "u", "d1", Binding{CertificateName: "huawei", Token: "hw-1"})
			t1 := clk.Advance(time.Minute)
			mustBind(t, s, "u", "d1", Binding{CertificateName: "fcm", Token: "fcm-1"})
			t2 := clk.Advance(time.Minute)
			mustBind(t, s, "u", "d1", Binding{CertificateName: "huawei", Token: "hw-2"})
			explicit := t0.Add(-time.Hour)
			mustBind(t, s, "u", "d2", Binding{CertificateName: "apns", Token: "apns-1", BoundAt: explicit})
			wantUser(t, s, "u", User{Version: RecordVersion, Devices: []Device{
				{ID: "d1", UpdatedAt: t2, Bindings: []Binding{
					{CertificateName: "huawei", Token: "hw-2", BoundAt: t2},
					{CertificateName: "fcm", Token: "fcm-1", BoundAt: t1},
				}},
				{ID: "d2", UpdatedAt: t2, Bindings: []Binding{{CertificateName: "apns", Token: "apns-1", BoundAt: explicit}}},
			}})
		},
	},
	{
		name: "the device cap drops the least recently updated device",
		cfg:  config.TokenStore{MaxDevicesPerUser: 3},
		run: func(t *testing.T, s Store, clk *fakeClock) {
			for _, d := range []string{"d1", "d2", "d3"} {
				mustBind(t, s, "u", d, Binding{CertificateName: "fcm", Token: "tok-" + d})
				clk.Advance(time.Minute)
			}
			// d1 binds again, so d2 is now the oldest.
			mustBind(t, s, "u", "d1", Binding{CertificateName: "fcm", Token: "tok-d1b"})
			clk.Advance(time.Minute)
			mustBind(t, s, "u", "d4", Binding{CertificateName: "fcm", Token: "tok-d4"})
			wantDevices(t, s, "u", map[string]string{"d1": "tok-d1b", "d3": "tok-d3", "d4": "tok-d4"})
		},
	},
	{
		name: "unbind removes one device and an emptied user goes",
		run: func(t *testing.T, s Store, _ *fakeClock) {
			wantFound(t, "unbind of a user never seen", false)(s.Unbind(ctx, "u", "d1"))
			mustBind(t, s, "u", "d1", Binding{CertificateName: "fcm", Token: "t1"})
			mustBind(t, s, "u", "d2", Binding{CertificateName: "fcm", Token: "t2"})
			wantFound(t, "unbind d1", true)(s.Unbind(ctx, "u", "d1"))
			wantFound(t, "unbind d1 again", false)(s.Unbind(ctx, "u", "d1"))
			wantDevices(t, s, "u", map[string]string{"d2": "t2"})
			wantFound(t, "unbind d2", true)(s.Unbind(ctx, "u", "d2"))
			wantUser(t, s, "u", User{Version: RecordVersion})
			wantFound(t, "delete of the emptied user", false)(s.DeleteUser(ctx, "u"))
		},
	},
	{
		name: "settings are kept without devices and a zero value forgets them",
		run: func(t *testing.T, s Store, _ *fakeClock) {
			settings := Settings{
				Mode:          ModeMentionsOnly,
				Conversations: map[string]string{"group-1": ModeNone, "dm-2": ModeAll},
				QuietHours:    &config.QuietHours{Start: "22:00", End: "07:00", TimeZone: "Asia/Shanghai", MentionsBreakThrough: true},
				Language:      "zh-CN",
			}
			if err := s.PutSettings(ctx, "u", settings); err != nil {
				t.Fatal(err)
			}
			wantUser(t, s, "u", User{Version: RecordVersion, Settings: settings})
			mustBind(t, s, "u", "d1", Binding{CertificateName: "fcm", Token: "t1"})
			wantFound(t, "unbind", true)(s.Unbind(ctx, "u", "d1"))
			wantUser(t, s, "u", User{Version: RecordVersion, Settings: settings})
			if err := s.PutSettings(ctx, "u", Settings{Conversations: map[string]string{}}); err != nil {
				t.Fatal(err)
			}
			wantUser(t, s, "u", User{Version: RecordVersion})
			wantFound(t, "delete of a user with zero settings", false)(s.DeleteUser(ctx, "u"))
		},
	},
	{
		name: "delete user forgets devices and settings",
		run: func(t *testing.T, s Store, _ *fakeClock) {
			mustBind(t, s, "u", "d1", Binding{CertificateName: "fcm", Token: "t1"})
			mustBind(t, s, "other", "d1", Binding{CertificateName: "fcm", Token: "t9"})
			if err := s.PutSettings(ctx, "u", Settings{Mode: ModeNone}); err != nil {
				t.Fatal(err)
			}
			wantFound(t, "delete", true)(s.DeleteUser(ctx, "u"))
			wantUser(t, s, "u", User{Version: RecordVersion})
			wantFound(t, "delete again", false)(s.DeleteUser(ctx, "u"))
			wantDevices(t, s, "other", map[string]string{"d1": "t9"})
		},
	},
	{
		name: "remove token deletes only the binding the caller saw",
		run: func(t *testing.T, s Store, clk *fakeClock) {
			t0 := clk.Now()
			mustBind(t, s, "u", "d1", Binding{CertificateName: "huawei", Token: "hw"})
			mustBind(t, s, "u", "d1", Binding{CertificateName: "fcm", Token: "fcm"})
			clk.Advance(time.Minute)
			for _, tc := range []struct {
				name, device, cert, token string
				notAfter                  time.Time
			}{
				{"another device", "d2", "huawei", "hw", t0},
				{"another certificate", "d1", "xiaomi", "hw", t0},
				{"another token", "d1", "huawei", "hw-new", t0},
				{"bound after notAfter", "d1", "huawei", "hw", t0.Add(-time.Nanosecond)},
			} {
				wantFound(t, tc.name, false)(s.RemoveToken(ctx, "u", tc.device, tc.cert, tc.token, tc.notAfter))
			}
			wantFound(t, "matching binding", true)(s.RemoveToken(ctx, "u", "d1", "huawei", "hw", t0))
			wantDevices(t, s, "u", map[string]string{"d1": "fcm"})
			wantFound(t, "last binding", true)(s.RemoveToken(ctx, "u", "d1", "fcm", "fcm", clk.Now()))
			wantUser(t, s, "u", User{Version: RecordVersion})
		},
	},
	{
		name: "remove token leaves a token re-registered after the failed send",
		run: func(t *testing.T, s Store, clk *fakeClock) {
			mustBind(t, s, "u", "d1", Binding{CertificateName: "apns", Token: "same"})
			sent := clk.Now()
			t1 := clk.Advance(time.Second)
			mustBind(t, s, "u", "d1", Binding{CertificateName: "apns", Token: "same"})
			wantFound(t, "stale compare", false)(s.RemoveToken(ctx, "u", "d1", "apns", "same", sent))
			wantUser(t, s, "u", User{Version: RecordVersion, Devices: []Device{{
				ID: "d1", UpdatedAt: t1, Bindings: []Binding{{CertificateName: "apns", Token: "same", BoundAt: t1}},
			}}})
		},
	},
	{
		name: "a write past the shard cap is refused and shrinking writes pass",
		cfg:  config.TokenStore{Shards: 1, MaxShardBytes: 1024},
		run: func(t *testing.T, s Store, _ *fakeClock) {
			var full int
			for i := 0; ; i++ {
				err := s.Bind(ctx, fmt.Sprintf("user-%d", i), "d1", Binding{CertificateName: "fcm", Token: strings.Repeat("t", 100)})
				if err == nil {
					continue
				}
				if !errors.Is(err, ErrShardFull) || !strings.Contains(err.Error(), "chat-devices-000") || !strings.Contains(err.Error(), "1024") {
					t.Fatalf("bind %d: got %v, want ErrShardFull naming the shard and its cap", i, err)
				}
				full = i
				break
			}
			if full < 2 {
				t.Fatalf("shard refused the bind of user %d; the cap should hold more", full)
			}
			wantUser(t, s, fmt.Sprintf("user-%d", full), User{Version: RecordVersion})
			wantDevices(t, s, "user-0", map[string]string{"d1": strings.Repeat("t", 100)})
			wantFound(t, "unbind in a full shard", true)(s.Unbind(ctx, "user-0", "d1"))
			mustBind(t, s, fmt.Sprintf("user-%d", full), "d1", Binding{CertificateName: "fcm", Token: strings.Repeat("t", 100)})
		},
	},
}

func mustBind(t *testing.T, s Store, user, device string, b Binding) {
	t.Helper()
	if err := s.Bind(ctx, user, device, b); err != nil {
		t.Fatalf("Bind(%q, %q): %v", user, device, err)
	}
}

func wantUser(t *testing.T, s Store, user string, want User) {
	t.Helper()
	got, err := s.Get(ctx, user)
	if err != nil {
		t.Fatalf("Get(%q): %v", user, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Get(%q) (-want +got):\n%s", user, diff)
	}
}

// wantDevices checks the user's devices and each one's first token.
func wantDevices(t *testing.T, s Store, user string, want map[string]string) {
	t.Helper()
	u, err := s.Get(ctx, user)
	if err != nil {
		t.Fatalf("Get(%q): %v", user, err)
	}
	if diff := cmp.Diff(want, deviceTokens(u)); diff != "" {
		t.Errorf("devices of %q (-want +got):\n%s", user, diff)
	}
}

func deviceTokens(u User) map[string]string {
	got := map[string]string{}
	for _, d := range u.Devices {
		if len(d.Bindings) > 0 {
			got[d.ID] = d.Bindings[0].Token
		}
	}
	return got
}

// wantFound checks the (found, err) answer of Unbind, DeleteUser or RemoveToken.
func wantFound(t *testing.T, what string, want bool) func(bool, error) {
	t.Helper()
	return func(got bool, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got != want {
			t.Errorf("%s: found = %v, want %v", what, got, want)
		}
	}
}
