package store

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/imcloud/im-push-operator/internal/testenv"
)

// raceCall is one call of a round and its answer.
type raceCall struct {
	replica      int
	user, device string
	bind         bool
	token        string
	found        bool
	err          error
}

func (c *raceCall) String() string {
	if c.bind {
		return fmt.Sprintf("replica %d Bind(%s)", c.replica, c.token)
	}
	return fmt.Sprintf("replica %d Unbind → found %v", c.replica, c.found)
}

// serialOrder returns which of the serial orders of a and b, run from the
// device's state before the round (token, or "" when unbound), ends in got
// and answers every Unbind as it was answered: "" when none does.
func serialOrder(before, got string, a, b *raceCall) string {
	for _, order := range [][2]*raceCall{{a, b}, {b, a}} {
		state, ok := before, true
		for _, c := range order {
			if c.bind {
				state = c.token
				continue
			}
			ok = ok && c.found == (state != "")
			state = ""
		}
		if ok && state == got {
			return fmt.Sprintf("replica %d first", order[0].replica)
		}
	}
	return ""
}

// TestSecretsReplicasRaceOnSameDevices has two store instances (two
// dispatcher replicas) bind and unbind the very same devices of the same
// users at once, in rounds started together. After each round the shard
// Secrets, read straight from the API server, must hold for every device
// what one serial order of that round's two calls gives, and each Unbind's
// found must match that order: a binding lost or an unbound device
// resurrected by a replica writing over the other's change fails it.
// TestSecretsReplicasDoNotLoseBindings covers distinct devices of the same
// users.
func TestSecretsReplicasRaceOnSameDevices(t *testing.T) {
	_, cs := apiServer(t)
	ns := testenv.Namespace(t, cs, "store")
	cfg := testConfig(2)
	createShards(t, cs, ns, cfg)
	var conflicts atomic.Int64
	opts := SecretsOptions{Metrics: MetricsHooks{OnConflict: func(string) { conflicts.Add(1) }}}
	replicas := []*Secrets{startSecrets(t, adminClient(t), ns, cfg, opts), startSecrets(t, adminClient(t), ns, cfg, opts)}

	users := []string{"alice", "bob", "carol"}
	devices := []string{"phone", "tablet"}
	model := map[string]map[string]string{}
	for _, u := range users {
		model[u] = map[string]string{}
	}
	rng := rand.New(rand.NewPCG(6, 2))
	const rounds = 30
	orders := map[string]int{}
	calls := 0
	for r := range rounds {
		var round []*raceCall
		for _, u := range users {
			for _, d := range devices {
				for rep := range replicas {
					c := &raceCall{replica: rep, user: u, device: d}
					if rng.IntN(2) == 0 {
						c.bind, c.token = true, fmt.Sprintf("r%d-%s-%s-%d", r, u, d, rep)
					}
					round = append(round, c)
				}
			}
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		for _, c := range round {
			wg.Go(func() {
				<-start
				s := replicas[c.replica]
				if c.bind {
					c.err = s.Bind(ctx, c.user, c.device, Binding{CertificateName: "fcm", Token: c.token})
				} else {
					c.found, c.err = s.Unbind(ctx, c.user, c.device)
				}
			})
		}
		close(start)
		wg.Wait()
		calls += len(round)
		for _, c := range round {
			if c.err != nil {
				t.Fatalf("round %d: %s on %s/%s: %v", r, c, c.user, c.device, c.err)
			}
		}

		stored := readShards(t, cs, ns, cfg)
		for i := 0; i < len(round); i += 2 {
			a, b := round[i], round[i+1]
			got := deviceTokens(stored[UserKey(a.user)])[a.device]
			before := model[a.user][a.device]
			order := serialOrder(before, got, a, b)
			if order == "" {
				t.Errorf("round %d, %s/%s: stored %q after %s and %s from %q: no serial order gives that", r, a.user, a.device, got, a, b, before)
			}
			orders[order]++
			if got == "" {
				delete(model[a.user], a.device)
			} else {
				model[a.user][a.device] = got
			}
		}
		for _, u := range users {
			if got := deviceTokens(stored[UserKey(u)]); len(got) > len(devices) {
				t.Errorf("round %d: %s has devices %v", r, u, got)
			}
		}
		if t.Failed() {
			return
		}
	}
	if conflicts.Load() == 0 {
		t.Fatal("the replicas never wrote over each other's version; the rounds did not race")
	}
	for i, s := range replicas {
		eventually(t, fmt.Sprintf("replica %d's cache to hold the final state", i), func() bool {
			for _, u := range users {
				got, err := s.Get(ctx, u)
				if err != nil || !maps.Equal(model[u], deviceTokens(got)) {
					return false
				}
			}
			return true
		})
	}
	t.Logf("%d rounds, %d calls, %d conflicts retried; serial orders seen per device: %v", rounds, calls, conflicts.Load(), orders)
}
