package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
	"github.com/imcloud/im-push-operator/dispatcher/store"
	"github.com/imcloud/im-push-operator/hack/localrun"
	"github.com/imcloud/im-push-operator/internal/faultproxy"
)

// answer is what one bind was answered.
type answer struct {
	status  int
	code    string
	message string
}

// bind calls PUT /v1/users/{user}/devices/{device} and decodes an error body.
func bind(api *localrun.API, user, device, cert, token string) (answer, error) {
	body, _ := json.Marshal(map[string]string{"certificateName": cert, "token": token})
	req, err := http.NewRequest(http.MethodPut, api.URL+"/v1/users/"+user+"/devices/"+device, bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Authorization", "Bearer "+api.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 40 * time.Second}).Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode}
	if resp.StatusCode != http.StatusNoContent {
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			return a, fmt.Errorf("HTTP %d with a body that is not a JSON error: %q", resp.StatusCode, raw)
		}
		a.code, a.message = e.Error.Code, e.Error.Message
	}
	return a, nil
}

// devicesOf calls GET /v1/users/{user}/devices and returns device → certificate names.
func devicesOf(api *localrun.API, user string) (map[string]string, error) {
	var out struct {
		Devices []struct {
			ID       string `json:"id"`
			Bindings []struct {
				CertificateName string `json:"certificateName"`
			} `json:"bindings"`
		} `json:"devices"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := api.Do(ctx, http.MethodGet, "/v1/users/"+user+"/devices", nil, http.StatusOK, &out); err != nil {
		return nil, err
	}
	got := map[string]string{}
	for _, d := range out.Devices {
		for _, b := range d.Bindings {
			got[d.ID] = b.CertificateName
		}
	}
	return got, nil
}

// TestAPIServerAway slows the operator's and both dispatcher replicas'
// connections to the API server, then cuts them off, first black-holing
// their connections, then refusing them,
// while four callers bind new devices through both replicas and read the
// devices bound before. Every bind must be answered: 204, or a 503 JSON
// error with a code and a message (retry). Afterwards every bind answered 204 must
// be in the shard Secrets read straight from the API server. Reads must be
// served throughout. The tenant is scaled from 2 to 3 replicas during the
// outage: the operator must not have seen it while away and must converge
// once the API server is back, and the new replica must serve every
// acknowledged binding.
func TestAPIServerAway(t *testing.T) {
	ctx := context.Background()
	certs, err := sys.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	const cert = "fcm-demo"
	tn := install(t, "faults-away", "away", certs[1:2], 2)
	apis := tn.apis(t)

	before := []string{"before-0", "before-1", "before-2", "before-3"}
	for i, u := range before {
		if a, err := bind(apis[i%2], u, "phone", cert, "tok-"+u); err != nil || a.status != http.StatusNoContent {
			t.Fatalf("bind %s: %+v, %v", u, a, err)
		}
	}
	for _, api := range apis {
		for _, u := range before {
			until(t, "every replica to serve "+u, func() error {
				got, err := devicesOf(api, u)
				if err == nil && got["phone"] != cert {
					err = fmt.Errorf("devices %v", got)
				}
				return err
			})
		}
	}

	var (
		mu       sync.Mutex
		acked    = map[string]string{} // user → token
		refused  = map[string]string{}
		outcomes = map[string]int{}
		seq      atomic.Int64
		reads    atomic.Int64
	)
	call := func(phase string, api *localrun.API) {
		user := fmt.Sprintf("%s-%d", phase, seq.Add(1))
		token := "tok-" + user
		a, err := bind(api, user, "phone", cert, token)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			t.Errorf("%s: bind of %s: %v", phase, user, err)
		case a.status == http.StatusNoContent:
			acked[user] = token
			outcomes[phase+": 204"]++
		case a.status == http.StatusServiceUnavailable && a.code != "" && a.message != "":
			refused[user] = token
			outcomes[fmt.Sprintf("%s: %d %s %q", phase, a.status, a.code, a.message)]++
		default:
			t.Errorf("%s: bind of %s answered %+v; want 204 or a 503 JSON error", phase, user, a)
		}
	}
	countRefused := func(phase string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for user := range refused {
			if len(user) > len(phase) && user[:len(phase)+1] == phase+"-" {
				n++
			}
		}
		return n
	}
	countAcked := func(phase string) int {
		mu.Lock()
		defer mu.Unlock()
		return outcomes[phase+": 204"]
	}
	// run binds from four callers through both replicas until done, each
	// caller also reading the devices bound before the outage. While the
	// API server is unreachable (away) a 204 is wrong and ends the phase.
	run := func(phase string, away bool, done func() bool) {
		var wg sync.WaitGroup
		var stop atomic.Bool
		for w := range 4 {
			wg.Go(func() {
				for i := 0; !stop.Load(); i++ {
					if i >= 100 {
						t.Errorf("%s: 100 binds by one caller did not reach the phase's end", phase)
						stop.Store(true)
						return
					}
					api := apis[(w+i)%len(apis)]
					call(phase, api)
					for _, u := range before {
						got, err := devicesOf(api, u)
						reads.Add(1)
						if err != nil || got["phone"] != cert {
							t.Errorf("%s: read of %s from %s: %v, %v", phase, u, api.URL, got, err)
						}
					}
					if away && countAcked(phase) > 0 {
						t.Errorf("%s: a bind was answered 204 while the API server was unreachable", phase)
						stop.Store(true)
					}
					if done() {
						stop.Store(true)
					}
				}
			})
		}
		wg.Wait()
	}

	proxy.SetLatency(50 * time.Millisecond)
	run("slow", false, func() bool { return countAcked("slow") >= 12 })
	proxy.SetLatency(0)

	proxy.Set(faultproxy.Blackhole)
	outage := time.Now()
	scale(t, tn, 3)
	run("blackholed", true, func() bool { return countRefused("blackholed") >= 4 })
	proxy.Set(faultproxy.Refuse)
	run("refusing", true, func() bool { return countRefused("refusing") >= 8 })

	// The operator was cut off: it has not acted on the new replica count.
	d := &appsv1.Deployment{}
	if err := sys.Client.Get(ctx, client.ObjectKey{Namespace: tn.ns, Name: tn.name + "-dispatcher"}, d); err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 2 {
		t.Fatalf("the Deployment went to %d replicas while the operator could not reach the API server: the fault did not hold", *d.Spec.Replicas)
	}
	away := time.Since(outage)
	proxy.Set(faultproxy.Pass)
	back := time.Now()

	until(t, "a bind to be acknowledged once the API server is back", func() error {
		a, err := bind(apis[0], "recovered", "phone", cert, "tok-recovered")
		if err == nil && a.status != http.StatusNoContent {
			err = fmt.Errorf("%+v", a)
		}
		return err
	})
	acked["recovered"] = "tok-recovered"
	tn.waitReady(t, 3)
	converged := time.Since(back)

	stored := tn.storedUsers(t)
	lost := 0
	for user, token := range acked {
		u := stored[store.UserKey(user)]
		if len(u.Devices) != 1 || u.Devices[0].Bindings[0].Token != token {
			lost++
			t.Errorf("bind of %s was answered 204 but the shard Secrets hold %+v", user, u)
		}
	}
	written := 0
	for user := range refused {
		if _, ok := stored[store.UserKey(user)]; ok {
			written++
		}
	}
	newest := tn.apis(t)[2]
	for user := range acked {
		until(t, "the replica started after the outage to serve "+user, func() error {
			got, err := devicesOf(newest, user)
			if err == nil && got["phone"] != cert {
				err = fmt.Errorf("devices %v", got)
			}
			return err
		})
	}
	t.Logf("outage %v: binds %d answered 204 (%d stored, %d lost), %d refused (%d written anyway); answers: %v",
		away.Round(100*time.Millisecond), len(acked), len(acked)-lost, lost, len(refused), written, outcomes)
	t.Logf("reads served during the outage: %d; the operator converged (3 replicas Ready) %v after the API server came back; proxy %+v",
		reads.Load(), converged.Round(100*time.Millisecond), proxy.Stats())
}

// scale sets the tenant's dispatcher replicas.
func scale(t *testing.T, tn *tenant, replicas int32) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		at := &pushv1.AppTenant{}
		if err := sys.Client.Get(context.Background(), client.ObjectKey{Namespace: tn.ns, Name: tn.name}, at); err != nil {
			return err
		}
		at.Spec.Dispatcher.Replicas = &replicas
		return sys.Client.Update(context.Background(), at)
	})
	if err != nil {
		t.Fatal(err)
	}
}
