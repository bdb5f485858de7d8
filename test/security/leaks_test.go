package security

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
	"github.com/imcloud/im-push-operator/hack/localrun"
)

// canary is a secret planted to be searched for.
type canary struct {
	name string
	// value is the whole Secret value (or token) as stored; core the part
	// that is secret (for a PEM key, a line of key material).
	value, core string
}

// forms are what a leak could look like: the raw secret, the whole value
// base64 (standard and URL alphabets) or hex encoded, and the secret's
// first nine characters (the most a log may show of a device token is
// eight).
func (c canary) forms() map[string]string {
	mid := func(s string) string {
		// A long encoding is searched by a middle slice, which a partial
		// or re-wrapped copy still contains.
		if len(s) > 96 {
			return s[32:96]
		}
		return s
	}
	return map[string]string{
		"raw":       c.core,
		"base64":    mid(base64.StdEncoding.EncodeToString([]byte(c.value))),
		"base64url": mid(base64.URLEncoding.EncodeToString([]byte(c.value))),
		"hex":       mid(hex.EncodeToString([]byte(c.value))),
		"prefix9":   c.core[:9],
	}
}

type canarySet struct{ list []canary }

func (s *canarySet) add(name, value, core string) {
	s.list = append(s.list, canary{name: name, value: value, core: core})
}

// pemLine returns the second line of the first PEM block's base64 body:
// key material, never the fixed ASN.1 header the first line starts with.
func pemLine(p string) (string, error) {
	block, _ := pem.Decode([]byte(p))
	if block == nil {
		return "", fmt.Errorf("no PEM block")
	}
	body := base64.StdEncoding.EncodeToString(block.Bytes)
	if len(body) < 128 {
		return "", fmt.Errorf("PEM body of %d characters", len(body))
	}
	return body[64:128], nil
}

// seedCanaries replaces every vendor secret of certs with a random canary
// (registering it with the fakes, so sends still authenticate) and records
// the APNs and FCM private keys as canaries too.
func seedCanaries(s *localrun.System, certs []*config.Certificate) (*canarySet, error) {
	set := &canarySet{}
	secret := func(c *config.Certificate, key string) {
		v := "cnry" + randomHex(14)
		c.Data[key] = []byte(v)
		set.add(c.Name+" "+key, v, v)
	}
	// OPPO's and vivo's appKey ship inside the client app and the status
	// names OPPO's as the credential's subject: an identifier, not a
	// secret, so it is replaced but not searched for.
	identifier := func(c *config.Certificate, key string) {
		c.Data[key] = []byte("id" + randomHex(10))
	}
	for _, c := range certs {
		switch c.Provider {
		case config.APNs:
			line, err := pemLine(string(c.Data[config.KeyAPNsAuthKey]))
			if err != nil {
				return nil, err
			}
			set.add(c.Name+" authKey", string(c.Data[config.KeyAPNsAuthKey]), line)
		case config.FCM:
			var sa struct {
				PrivateKey   string `json:"private_key"`
				PrivateKeyID string `json:"private_key_id"`
			}
			raw := string(c.Data[config.KeyFCMServiceAcct])
			if err := json.Unmarshal([]byte(raw), &sa); err != nil {
				return nil, err
			}
			line, err := pemLine(sa.PrivateKey)
			if err != nil {
				return nil, err
			}
			set.add(c.Name+" private_key", raw, line)
			set.add(c.Name+" private_key_id", sa.PrivateKeyID, sa.PrivateKeyID)
		case config.Huawei:
			secret(c, config.KeyClientSecret)
			s.Huawei.Allow(c)
		case config.Honor:
			secret(c, config.KeyClientSecret)
			s.Honor.Allow(c)
		case config.Xiaomi:
			secret(c, config.KeyAppSecret)
			s.Xiaomi.Allow(c)
		case config.OPPO:
			identifier(c, config.KeyAppKey)
			secret(c, config.KeyMasterSecret)
			s.OPPO.Allow(c)
		case config.Vivo:
			identifier(c, config.KeyAppKey)
			secret(c, config.KeyAppSecret)
			s.Vivo.Allow(c)
		case config.Meizu:
			secret(c, config.KeyAppSecret)
			s.Meizu.Allow(c)
		}
		c.Fingerprint = config.Fingerprint(c.Data)
	}
	return set, nil
}

// document is one place searched: a log line, an event, a status...
type document struct{ kind, name, text string }

type corpus struct{ docs []document }

func (c *corpus) add(kind, name string, v any) {
	var text string
	switch x := v.(type) {
	case string:
		text = x
	case []byte:
		text = string(x)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		text = string(b)
	}
	c.docs = append(c.docs, document{kind, name, text})
}

// hits lists every canary form found in the corpus.
func (c *corpus) hits(set *canarySet) []string {
	var out []string
	for _, d := range c.docs {
		for _, can := range set.list {
			for form, needle := range can.forms() {
				if strings.Contains(d.text, needle) {
					out = append(out, fmt.Sprintf("%s %s: %s (%s)", d.kind, d.name, can.name, form))
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func (c *corpus) counts() map[string]int {
	n := map[string]int{}
	for _, d := range c.docs {
		n[d.kind]++
	}
	return n
}

func notification(id string, users ...string) map[string]any {
	var rcpts []map[string]any
	for _, u := range users {
		rcpts = append(rcpts, map[string]any{"userId": u})
	}
	return map[string]any{
		"id": id, "sender": map[string]string{"id": "carol", "displayName": "Carol"},
		"conversation": map[string]string{"id": "c-" + id, "type": "single"},
		"recipients":   rcpts, "message": map[string]any{"text": "canary run " + id},
	}
}

// TestNoSecretLeaks plants canary credentials and device tokens, drives
// binds, deliveries at every provider, invalid-token and bad-credential
// answers, an APNs key rotation, refused callers and two corrupt credential
// Secrets through the operator and a real dispatcher process, then searches
// every log line, Event, status, ConfigMap, non-Secret object, /metrics page
// and API answer for every canary in five forms.
func TestNoSecretLeaks(t *testing.T) {
	s := system(t)
	ctx := context.Background()
	a := api(t, tenant)
	b := api(t, other)
	canaries.add("API token "+tenant, a.Token, a.Token)
	canaries.add("API token "+other, b.Token, b.Token)

	tokens := map[string]string{
		"apns-demo": randomHex(32), "fcm-demo": "fcm" + randomHex(40), "huawei-demo": "IQAA" + randomHex(30),
		"honor-demo": "hon" + randomHex(30), "xiaomi-demo": "mi" + randomHex(30), "oppo-demo": "CN_" + randomHex(20),
		"vivo-demo": "viv" + randomHex(20), "meizu-demo": "mz" + randomHex(20),
	}
	certNames := make([]string, 0, len(tokens))
	for cert := range tokens {
		certNames = append(certNames, cert)
	}
	sort.Strings(certNames)
	for _, cert := range certNames {
		canaries.add("device token "+cert, tokens[cert], tokens[cert])
		if err := a.Bind(ctx, "alice", "dev-"+cert, cert, tokens[cert]); err != nil {
			t.Fatal(err)
		}
	}

	st, err := a.Notify(ctx, notification("leak-1", "alice"))
	if err != nil {
		t.Fatal(err)
	}
	delivered := 0
	for _, d := range st.Devices {
		if d.State == "delivered" {
			delivered++
		}
	}
	if delivered != len(tokens) {
		t.Fatalf("first notification: %d of %d delivered: %+v", delivered, len(tokens), st.Devices)
	}

	// Answers that make the dispatcher log about a token or a credential.
	s.Huawei.State.Script(tokens["huawei-demo"], fake.Answer{Code: "80300007"})
	s.APNs.State.Script(tokens["apns-demo"], fake.Answer{Code: "InvalidProviderToken", Times: 1})
	s.Xiaomi.State.Script(tokens["xiaomi-demo"], fake.Answer{Code: "21301", Times: 1})
	s.OPPO.State.Script(tokens["oppo-demo"], fake.Answer{Code: "status:503", Times: 1})
	if _, err := a.Notify(ctx, notification("leak-2", "alice")); err != nil {
		t.Fatal(err)
	}

	keyID, err := s.RotateAPNsKey(ctx, ns, "apns-demo")
	if err != nil {
		t.Fatal(err)
	}
	rotated := &corev1.Secret{}
	if err := s.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "apns-demo-keys"}, rotated); err != nil {
		t.Fatal(err)
	}
	line, err := pemLine(string(rotated.Data[config.KeyAPNsAuthKey]))
	if err != nil {
		t.Fatal(err)
	}
	canaries.add("rotated apns-demo authKey", string(rotated.Data[config.KeyAPNsAuthKey]), line)
	i := 0
	until(t, "an APNs send signed with the rotated key", func() error {
		i++
		if _, err := a.Notify(ctx, notification(fmt.Sprintf("leak-rot-%d", i), "alice")); err != nil {
			return err
		}
		for _, r := range s.APNs.State.Received() {
			if r.Token == tokens["apns-demo"] && r.Fields["kid"] == keyID {
				return nil
			}
		}
		return fmt.Errorf("no send with kid %s yet", keyID)
	})

	// Callers with another tenant's token or a made-up one are refused.
	intruder := "cnry" + randomHex(14)
	canaries.add("intruder bearer", intruder, intruder)
	for _, bad := range []string{b.Token, intruder} {
		x := &localrun.API{URL: a.URL, Token: bad}
		if err := x.Do(ctx, http.MethodGet, "/v1/users/alice/devices", nil, http.StatusUnauthorized, nil); err != nil {
			t.Fatal(err)
		}
		if err := x.Bind(ctx, "mallory", "d", "apns-demo", tokens["apns-demo"]); err == nil {
			t.Fatal("a bind with a wrong token succeeded")
		}
	}

	brokenCertificates(t, s)

	// What the tenant's own API answers.
	var c corpus
	var listing bytes.Buffer
	for _, path := range []string{"/v1/users/alice/devices", "/v1/notifications/leak-1", "/v1/notifications/leak-2", "/readyz", "/openapi.json"} {
		var raw json.RawMessage
		if err := a.Do(ctx, http.MethodGet, path, nil, http.StatusOK, &raw); err != nil {
			t.Fatal(err)
		}
		c.add("API answer", path, string(raw))
		listing.Write(raw)
	}
	if !strings.Contains(listing.String(), tokens["apns-demo"][:8]+"…") {
		t.Fatalf("the device listing does not show the 8-character token prefix; the search below would prove nothing: %s", listing.String())
	}

	for _, name := range []string{tenant, other} {
		for _, rep := range s.Runner.Replicas(ns, name) {
			c.add("dispatcher /metrics", name, httpGet(t, rep.URL+"/metrics"))
		}
	}
	mfs, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var mgrMetrics bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&mgrMetrics, mf); err != nil {
			t.Fatal(err)
		}
	}
	c.add("manager /metrics", "registry", mgrMetrics.String())

	gatherObjects(t, s.Client, &c)
	logLines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	for i, l := range logLines {
		c.add("log line", fmt.Sprint(i), l)
	}

	if hits := c.hits(canaries); len(hits) > 0 {
		t.Errorf("%d canary hits:\n%s", len(hits), strings.Join(hits, "\n"))
	}

	// Positive control: the same search finds the canaries where they
	// belong, so zero hits above means absent, not unsearchable.
	var owned corpus
	secrets := &corev1.SecretList{}
	if err := s.Client.List(ctx, secrets, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for i := range secrets.Items {
		if sec := &secrets.Items[i]; strings.HasPrefix(sec.Name, tenant+"-") || strings.HasSuffix(sec.Name, "-keys") {
			owned.add("Secret", sec.Name, string(bytes.Join(values(sec.Data), []byte("\n"))))
		}
	}
	found := map[string]bool{}
	for _, h := range owned.hits(canaries) {
		found[strings.SplitN(strings.SplitN(h, ": ", 2)[1], " (", 2)[0]] = true
	}
	for _, can := range canaries.list {
		if !strings.HasPrefix(can.name, "API token") && !strings.HasPrefix(can.name, "intruder") &&
			can.name != "apns-demo authKey" && can.name != "device token huawei-demo" && !strings.Contains(can.name, "broken") && !found[can.name] {
			t.Errorf("positive control: canary %q not found in the Secrets that hold it", can.name)
		}
	}

	n := c.counts()
	t.Logf("searched %d log lines, %d Events, %d custom-resource objects (status included), %d ConfigMaps, %d other objects, %d dispatcher /metrics pages, %d manager /metrics page (%d bytes), %d API answers for %d canaries in 5 forms each: %d hits; positive control found %d canaries in their own Secrets",
		n["log line"], n["Event"], n["custom resource"], n["ConfigMap"], n["object"], n["dispatcher /metrics"], n["manager /metrics"], mgrMetrics.Len(),
		n["API answer"], len(canaries.list), len(c.hits(canaries)), len(found))
}

func values(m map[string][]byte) [][]byte {
	out := make([][]byte, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// brokenCertificates installs two credentials whose Secrets are corrupt
// and waits for the actionable condition each must get; their canaries are
// then searched with the rest (a validation message quoting the value
// would leak it).
func brokenCertificates(t *testing.T, s *localrun.System) {
	t.Helper()
	ctx := context.Background()
	hwSecret := "cnry" + randomHex(14)
	canaries.add("broken huawei clientSecret", hwSecret, hwSecret)
	certs, err := s.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	var hw, fcm *config.Certificate
	for _, c := range certs {
		switch c.Provider {
		case config.Huawei:
			hw = c
		case config.FCM:
			fcm = c
		}
	}
	// Names of their own each call: the package's system outlives a test
	// run, and `go test -count=N` runs this again against it.
	suffix := randomHex(3)
	hwName, fcmName := "huawei-broken-"+suffix, "fcm-broken-"+suffix
	hw.Name, hw.Resource = hwName, hwName
	hw.Data = map[string][]byte{config.KeyClientSecret: []byte(hwSecret[:10] + "\x01" + hwSecret[10:])}
	fcm.Name, fcm.Resource = fcmName, fcmName
	whole := string(fcm.Data[config.KeyFCMServiceAcct])
	var sa struct {
		PrivateKey string `json:"private_key"`
	}
	if err := json.Unmarshal([]byte(whole), &sa); err != nil {
		t.Fatal(err)
	}
	line, err := pemLine(sa.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	truncated := whole[:len(whole)-40]
	canaries.add("broken fcm private_key", truncated, line)
	fcm.Data = map[string][]byte{config.KeyFCMServiceAcct: []byte(truncated)}

	for _, c := range []*config.Certificate{hw, fcm} {
		sec, pc := localrun.CertificateObjects(ns, c)
		if err := s.Client.Create(ctx, sec); err != nil {
			t.Fatal(err)
		}
		if err := s.Client.Create(ctx, pc); err != nil {
			t.Fatal(err)
		}
	}
	for name, key := range map[string]string{hwName: config.KeyClientSecret, fcmName: config.KeyFCMServiceAcct} {
		until(t, name+" gets an actionable condition", func() error {
			pc := &pushv1.PushCertificate{}
			if err := s.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pc); err != nil {
				return err
			}
			for _, cond := range pc.Status.Conditions {
				if cond.Type == pushv1.ConditionReady && cond.Status == metav1.ConditionFalse && cond.Reason == "InvalidCredentials" && strings.Contains(cond.Message, key) {
					t.Logf("%s: Ready False %s: %s", name, cond.Reason, cond.Message)
					return nil
				}
			}
			return fmt.Errorf("conditions %+v", pc.Status.Conditions)
		})
	}
}

// gatherObjects adds every Event, custom resource, ConfigMap and the
// tenant namespace's other non-Secret objects to c.
func gatherObjects(t *testing.T, k client.Client, c *corpus) {
	t.Helper()
	ctx := context.Background()
	list := func(l client.ObjectList, opts ...client.ListOption) {
		if err := k.List(ctx, l, opts...); err != nil {
			t.Fatalf("listing %T: %v", l, err)
		}
	}
	events := &corev1.EventList{}
	list(events)
	for i := range events.Items {
		c.add("Event", events.Items[i].Name, events.Items[i])
	}
	newEvents := &eventsv1.EventList{}
	list(newEvents)
	for i := range newEvents.Items {
		c.add("Event", newEvents.Items[i].Name, newEvents.Items[i])
	}
	pcs := &pushv1.PushCertificateList{}
	list(pcs)
	for i := range pcs.Items {
		c.add("custom resource", pcs.Items[i].Name, pcs.Items[i])
	}
	pps := &pushv1.PushPolicyList{}
	list(pps)
	for i := range pps.Items {
		c.add("custom resource", pps.Items[i].Name, pps.Items[i])
	}
	ats := &pushv1.AppTenantList{}
	list(ats)
	for i := range ats.Items {
		c.add("custom resource", ats.Items[i].Name, ats.Items[i])
	}
	cms := &corev1.ConfigMapList{}
	list(cms)
	for i := range cms.Items {
		c.add("ConfigMap", cms.Items[i].Namespace+"/"+cms.Items[i].Name, cms.Items[i])
	}
	for _, l := range []client.ObjectList{
		&appsv1.DeploymentList{}, &corev1.ServiceList{}, &corev1.ServiceAccountList{}, &rbacv1.RoleList{},
		&rbacv1.RoleBindingList{}, &networkingv1.NetworkPolicyList{}, &policyv1.PodDisruptionBudgetList{},
	} {
		list(l, client.InNamespace(ns))
		items, err := metaItems(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			c.add("object", fmt.Sprintf("%T", l), it)
		}
	}
}

// metaItems returns a list's items as raw JSON objects.
func metaItems(l client.ObjectList) ([]json.RawMessage, error) {
	b, err := json.Marshal(l)
	if err != nil {
		return nil, err
	}
	var v struct {
		Items []json.RawMessage `json:"items"`
	}
	return v.Items, json.Unmarshal(b, &v)
}
