package main

import (
	"errors"
	"maps"
	"math"
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/policy"
)

// TestSteadyMeasuresAgainUnderSteal checks which window steady keeps.
func TestSteadyMeasuresAgainUnderSteal(t *testing.T) {
	for _, c := range []struct {
		name      string
		maxSteal  float64
		steal     []float64 // of each try, 0 to 1
		wantTries int
	}{
		{"quiet", 5, []float64{0.01}, 1},
		{"at the bound", 5, []float64{0.05}, 1},
		{"stolen once", 5, []float64{0.2, 0.03}, 2},
		{"stolen throughout: the last repeat is kept", 5, []float64{0.2, 0.3, 0.4, 0.01}, 3},
		{"off", 100, []float64{0.9}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			rep := &report{}
			tries := 0
			res, err := timing{maxSteal: c.maxSteal}.steady(rep, "w", func() (*loadResult, error) {
				tries++
				return &loadResult{MachineSteal: c.steal[tries-1]}, nil
			})
			if err != nil || tries != c.wantTries || res.MachineSteal != c.steal[c.wantTries-1] {
				t.Fatalf("tries %d, kept steal %v, err %v; want %d tries, steal %v", tries, res.MachineSteal, err, c.wantTries, c.steal[c.wantTries-1])
			}
			if len(rep.Notes) != c.wantTries-1 {
				t.Errorf("notes %q: want one per repeat", rep.Notes)
			}
		})
	}
	tries := 0
	boom := errors.New("boom")
	if _, err := (timing{maxSteal: 5}).steady(&report{}, "w", func() (*loadResult, error) { tries++; return nil, boom }); err != boom || tries != 1 {
		t.Errorf("an error: tries %d, err %v; want it returned at once", tries, err)
	}
}

// TestCeilingSendsTheDispatchersMessage checks that the ceiling's message is
// the one the dispatcher's policy makes of the load's notification, and that
// each send changes only what changes per notification.
func TestCeilingSendsTheDispatchersMessage(t *testing.T) {
	cfg := &config.Config{
		Version: config.Version, Tenant: benchTenant, Namespace: benchNamespace,
		TokenStore:   config.TokenStore{Shards: benchShards},
		Certificates: []config.Certificate{{Name: "apns-bench", Provider: config.APNs}, {Name: "fcm-bench", Provider: config.FCM}},
		Policy: config.Policy{
			ShowContent: true, Sound: "default", TTL: metav1.Duration{Duration: time.Hour},
			Templates: []config.Template{{Title: "{{.Sender.DisplayName}}", Body: "{{.Text}}"}},
		},
	}
	now := time.Now()
	for _, p := range []config.Provider{config.APNs, config.FCM} {
		m, ttl, err := benchMessage(cfg, p, now)
		if err != nil {
			t.Fatal(err)
		}
		if m.Title != "Bench" || m.Body != "hello from the benchmark" || m.Sound != "default" || ttl != time.Hour {
			t.Errorf("%s: title %q, body %q, sound %q, ttl %v: want the policy's rendering of the load's notification", p, m.Title, m.Body, m.Sound, ttl)
		}
		if m.CollapseKey != "c-1" || m.Data[policy.DataConversationID] != "c-1" || m.Data[policy.DataSenderID] != "bench-sender" {
			t.Errorf("%s: collapse key %q, data %v: want the conversation's", p, m.CollapseKey, m.Data)
		}

		job := loadJob{Provider: string(p), Message: m, MessageTTL: ttl}
		a, b := ceilingSend(job, 3), ceilingSend(job, 4)
		if a.ID == b.ID || a.ID == m.ID || a.Token != TokenOf(string(p), 3) || b.Token != TokenOf(string(p), 4) {
			t.Errorf("%s: IDs %q, %q and tokens %q, %q: want a new ID and the user's token per send", p, a.ID, b.ID, a.Token, b.Token)
		}
		if a.Expiration.Sub(now) < ttl || a.Data[sentAtKey] == "" || a.Data[sentAtKey] == m.Data[sentAtKey] {
			t.Errorf("%s: expiration %v, stamp %q: want a fresh expiration and stamp", p, a.Expiration, a.Data[sentAtKey])
		}
		// Everything else is the dispatcher's message.
		same := *a
		same.ID, same.Token, same.Expiration, same.Data = m.ID, m.Token, m.Expiration, maps.Clone(a.Data)
		same.Data[sentAtKey] = m.Data[sentAtKey]
		if !reflect.DeepEqual(&same, m) {
			t.Errorf("%s: the send differs from the dispatcher's message beyond ID, token, expiration and stamp:\n%+v\n%+v", p, same, *m)
		}
	}
}

// TestBracketTakesBothCeilings checks that the two ceilings count as one
// measurement over both windows.
func TestBracketTakesBothCeilings(t *testing.T) {
	before := &loadResult{Seconds: 5, Delivered: 30000, BodyBytes: 30000 * 224, LoadCPU: 2, FakeCPU: 6, MachineBusy: 0.9, MachineSteal: 0.02}
	after := &loadResult{Seconds: 5, Delivered: 20000, BodyBytes: 20000 * 224, LoadCPU: 1.5, FakeCPU: 5, MachineBusy: 0.8, MachineSteal: 0}
	c := bracket(before, after)
	if c.PerSecond != 5000 || c.Delivered != 50000 || c.BodyBytes != 50000*224 {
		t.Errorf("sends/s %v, sends %d, bytes %d: want 5000 over both windows, 50000, 50000·224", c.PerSecond, c.Delivered, c.BodyBytes)
	}
	if tenK(c.LoadCPU, c) != 0.7 || tenK(c.FakeCPU, c) != 2.2 {
		t.Errorf("client %v and fake %v CPU s per 10k: want 0.7 and 2.2, both windows' CPU over both windows' sends", tenK(c.LoadCPU, c), tenK(c.FakeCPU, c))
	}
	if math.Abs(c.MachineBusy-0.85) > 1e-9 || math.Abs(c.MachineSteal-0.01) > 1e-9 {
		t.Errorf("busy %v, steal %v: want the windows' mean, 0.85 and 0.01", c.MachineBusy, c.MachineSteal)
	}
}
