package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/store"
	"github.com/imcloud/im-push-operator/internal/testenv"
)

var restCfg *rest.Config

func TestMain(m *testing.M) {
	env, cfg, err := testenv.Start(false)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	restCfg = cfg
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping envtest:", err)
	}
	os.Exit(code)
}

// syncBuffer collects log lines written from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

const (
	apiToken  = "api-token-of-chat"
	appKeyVal = "app-123"
)

func setup(t *testing.T, client kubernetes.Interface) (namespace string, doc []byte) {
	t.Helper()
	return createTenant(t, client, "tenant-chat", []config.Certificate{{
		Name: "vivo", Resource: "vivo-prod", Provider: config.Vivo, Vivo: &config.VivoSpec{AppID: "1001"},
		Data: map[string][]byte{config.KeyAppKey: []byte("k"), config.KeyAppSecret: []byte("s")},
	}})
}

// createTenant creates a namespace named from prefix with the Secrets the
// operator would render for tenant "chat" with certs: config, API token and
// empty shards. It returns the namespace and the config document.
func createTenant(t *testing.T, client kubernetes.Interface, prefix string, certs []config.Certificate) (namespace string, doc []byte) {
	t.Helper()
	ctx := context.Background()
	namespace = testenv.Namespace(t, client, prefix)
	cfg := config.Config{
		Version: config.Version, Tenant: "chat", Namespace: namespace, AppKey: appKeyVal, Replicas: 1,
		Certificates:   certs,
		Policy:         config.Policy{MultiDevice: "AnyOffline", ProviderPreference: "VendorFirst"},
		TokenStore:     config.TokenStore{Shards: 2, ShardPrefix: config.ShardPrefix("chat")},
		AuthSecretName: config.AuthSecretName("chat"),
	}
	doc, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	secrets := []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: config.ConfigSecretName("chat")}, Data: map[string][]byte{config.SecretKey: doc}},
		{ObjectMeta: metav1.ObjectMeta{Name: config.AuthSecretName("chat")}, Data: map[string][]byte{config.AuthTokenKey: []byte(apiToken)}},
	}
	for _, name := range cfg.TokenStore.ShardNames() {
		secrets = append(secrets, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{store.LabelTenant: "chat"}},
			Type:       store.SecretType,
		})
	}
	for _, s := range secrets {
		if _, err := client.CoreV1().Secrets(namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return namespace, doc
}

func call(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// TestServeAndDrain runs the dispatcher against a real API server: it gets
// ready once config, token and shards are loaded, binds a device into a shard
// Secret, accepts a notification, and drains on the signal.
func TestServeAndDrain(t *testing.T) {
	client := kubernetes.NewForConfigOrDie(restCfg)
	ns, doc := setup(t, client)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + lis.Addr().String()
	logs := &syncBuffer{}
	var appKey atomic.Value
	appKey.Store("")
	signals, signal := context.WithCancel(context.Background())
	defer signal()
	done := make(chan error, 1)
	go func() {
		done <- run(signals, options{namespace: ns, configSecret: config.ConfigSecretName("chat"), drainTimeout: 5 * time.Second},
			restCfg, lis, newLogger(logs, &appKey), &appKey)
	}()

	// Eventually ready, as the readiness probe sees it.
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var ready struct{ Status, ConfigHash string }
	for {
		code, body := call(t, http.MethodGet, base+"/readyz", "")
		if code == http.StatusOK {
			if err := json.Unmarshal([]byte(body), &ready); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within 30s: %d %s\n%s", code, body, logs)
		}
		<-tick.C
	}
	if ready.ConfigHash != config.Hash(doc) {
		t.Fatalf("readyz hash = %s, want %s", ready.ConfigHash, config.Hash(doc))
	}

	if code, body := call(t, http.MethodPut, base+"/v1/users/bob/devices/phone", `{"certificateName":"vivo","token":"vivo-token-123456"}`); code != http.StatusNoContent {
		t.Fatalf("bind = %d %s", code, body)
	}
	shard := config.TokenStore{ShardPrefix: config.ShardPrefix("chat")}.ShardName(store.ShardIndex("bob", 2))
	sec, err := client.CoreV1().Secrets(ns).Get(context.Background(), shard, metav1.GetOptions{})
	if err != nil || !strings.Contains(string(sec.Data[store.UserKey("bob")]), "vivo-token-123456") {
		t.Fatalf("shard %s after bind: %v %v", shard, sec.Data, err)
	}
	if code, body := call(t, http.MethodPut, base+"/v1/users/bob/devices/phone", `{"certificateName":"apns","token":"x"}`); code != http.StatusUnprocessableEntity {
		t.Fatalf("bind with an unknown certificate = %d %s", code, body)
	}

	// A user with no devices: accepted, nothing to send, complete at once.
	n := `{"id":"m1","sender":{"id":"alice"},"conversation":{"id":"c1","type":"single"},"recipients":[{"userId":"nobody"}],"message":{"text":"hi"}}`
	sent := time.Now()
	code, body := call(t, http.MethodPost, base+"/v1/notifications?wait=true&timeout=10s", n)
	var w struct {
		ID         string
		Accepted   int
		AcceptedAt time.Time
		Complete   bool
		Devices    []struct{ User, State string }
	}
	if err := json.Unmarshal([]byte(body), &w); err != nil || code != http.StatusOK || w.ID != "m1" || !w.Complete || w.Accepted != 0 {
		t.Fatalf("notify = %d %s", code, body)
	}
	if w.AcceptedAt.Before(sent) || w.AcceptedAt.After(time.Now()) {
		t.Errorf("acceptedAt %v is not between the request (%v) and its answer", w.AcceptedAt, sent)
	}
	if code, body := call(t, http.MethodGet, base+"/v1/notifications/m1", ""); code != http.StatusOK || !strings.Contains(body, `"complete":true`) {
		t.Fatalf("status = %d %s", code, body)
	}

	if _, body := call(t, http.MethodGet, base+"/metrics", ""); !strings.Contains(body, `impush_dispatcher_config_info{hash="`+config.Hash(doc)+`"} 1`) ||
		!strings.Contains(body, `impush_dispatcher_config_reloads_total{result="success"} 1`) {
		t.Fatalf("metrics lack the config series:\n%s", body)
	}
	// The one committed bind shows as a store write on bob's shard, and the
	// fill gauge reports that shard's bytes as the API server holds them.
	_, body = call(t, http.MethodGet, base+"/metrics", "")
	sec, err = client.CoreV1().Secrets(ns).Get(context.Background(), shard, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fill := 0
	for k, v := range sec.Data {
		fill += len(k) + len(v)
	}
	for _, want := range []string{
		`impush_dispatcher_store_writes_total{shard="` + shard + `"} 1`,
		`impush_dispatcher_store_calls_total{shard="` + shard + `"} 1`,
		fmt.Sprintf(`impush_dispatcher_store_shard_fill_bytes{shard="%s"} %d`, shard, fill),
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s:\n%s", want, body)
		}
	}

	signal()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no shutdown within 20s")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("still serving after shutdown")
	}

	out := logs.String()
	sawDrained := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %s", sc.Text())
		}
		if _, ok := line["appKey"]; !ok {
			t.Errorf("log line without appKey: %s", sc.Text())
		}
		if line["msg"] == "drained" {
			sawDrained = true
			if line["appKey"] != appKeyVal || line["dropped"] != float64(0) {
				t.Errorf("drained line = %s", sc.Text())
			}
		}
	}
	if !sawDrained {
		t.Errorf("no drained line in:\n%s", out)
	}
	for _, secret := range []string{apiToken, "vivo-token-123456"} {
		if strings.Contains(out, secret) {
			t.Errorf("logs contain %q", secret)
		}
	}
}
