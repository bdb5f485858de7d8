package install

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

const validationNamespace = "validation"

// Valid objects the cases below break; %s is the object's name.
const (
	apnsCert = `
apiVersion: push.imcloud.io/v1alpha1
kind: PushCertificate
metadata: {name: %s}
spec:
  provider: APNs
  certificateName: ios
  secretRef: {name: apns}
  apns: {authType: Token, teamID: ABCDE12345, keyID: FGHIJ67890, bundleID: com.example.chat}
`
	fcmCert = `
apiVersion: push.imcloud.io/v1alpha1
kind: PushCertificate
metadata: {name: %s}
spec:
  provider: FCM
  certificateName: fcm
  secretRef: {name: fcm}
  fcm: {}
`
	policy = `
apiVersion: push.imcloud.io/v1alpha1
kind: PushPolicy
metadata: {name: %s}
spec: {}
`
	tenant = `
apiVersion: push.imcloud.io/v1alpha1
kind: AppTenant
metadata: {name: %s}
spec:
  appKey: chat-app
  certificates: [apns]
  policyRef: {name: policy}
`
)

// TestValidationRejects applies bad objects to the real API server and checks
// each is refused as Invalid with a message that names the offending field.
// Cases with an update first create the valid object, then apply the change.
func TestValidationRejects(t *testing.T) {
	c := getCluster(t)
	c.installCRDs(t)
	c.createNamespace(t, validationNamespace)

	type edit func(o *unstructured.Unstructured)
	set := func(value any, fields ...string) edit {
		return func(o *unstructured.Unstructured) {
			if err := unstructured.SetNestedField(o.Object, value, fields...); err != nil {
				panic(err)
			}
		}
	}
	remove := func(fields ...string) edit {
		return func(o *unstructured.Unstructured) { unstructured.RemoveNestedField(o.Object, fields...) }
	}

	cases := []struct {
		name   string
		base   string
		create bool // create base first; the edits are then an update
		edits  []edit
		want   []string
	}{
		{
			name:  "provider block missing",
			base:  apnsCert,
			edits: []edit{remove("spec", "apns")},
			want:  []string{"spec.apns must be set exactly when provider is APNs"},
		},
		{
			name:  "provider block mismatched",
			base:  apnsCert,
			edits: []edit{set("Huawei", "spec", "provider")},
			want:  []string{"spec.apns must be set exactly when provider is APNs", "spec.huawei must be set exactly when provider is Huawei"},
		},
		{
			name:  "certificateName too long",
			base:  apnsCert,
			edits: []edit{set(strings.Repeat("a", 33), "spec", "certificateName")},
			want:  []string{"spec.certificateName", "32"},
		},
		{
			name:  "certificateName bad characters",
			base:  apnsCert,
			edits: []edit{set("ios prod/1", "spec", "certificateName")},
			want:  []string{"spec.certificateName", "should match"},
		},
		{
			name:   "provider is immutable",
			base:   fcmCert,
			create: true,
			edits:  []edit{set("Huawei", "spec", "provider"), remove("spec", "fcm"), set(map[string]any{"appID": "100000001"}, "spec", "huawei")},
			want:   []string{"spec.provider", "provider is immutable"},
		},
		{
			name:  "APNs token auth without keyID",
			base:  apnsCert,
			edits: []edit{remove("spec", "apns", "keyID")},
			want:  []string{"spec.apns", "keyID"},
		},
		{
			name:  "APNs bad teamID",
			base:  apnsCert,
			edits: []edit{set("abc", "spec", "apns", "teamID")},
			want:  []string{"spec.apns.teamID", "should match"},
		},
		{
			name:  "endpoint not https",
			base:  apnsCert,
			edits: []edit{set("http://push-gateway.internal", "spec", "endpoint")},
			want:  []string{"spec.endpoint", "should match"},
		},
		{
			name:  "PushPolicy bad multiDevice",
			base:  policy,
			edits: []edit{set("Sometimes", "spec", "multiDevice")},
			want:  []string{"spec.multiDevice", "Unsupported value"},
		},
		{
			name:  "quiet hours 25:00",
			base:  policy,
			edits: []edit{set(map[string]any{"start": "25:00", "end": "07:00"}, "spec", "quietHours")},
			want:  []string{"spec.quietHours.start", "should match"},
		},
		{
			name:  "ttl not a duration",
			base:  policy,
			edits: []edit{set("ten minutes", "spec", "delivery", "ttl")},
			want:  []string{"spec.delivery.ttl", "should match"},
		},
		{
			name:  "backoff initial above max",
			base:  policy,
			edits: []edit{set(map[string]any{"initial": "10m", "max": "1m"}, "spec", "delivery", "backoff")},
			want:  []string{"spec.delivery", "delivery.backoff.initial must not exceed delivery.backoff.max"},
		},
		{
			name:  "maxAttempts 0",
			base:  policy,
			edits: []edit{set(int64(0), "spec", "delivery", "maxAttempts")},
			want:  []string{"spec.delivery.maxAttempts", "greater than or equal to 1"},
		},
		{
			name:  "AppTenant without certificates",
			base:  tenant,
			edits: []edit{set([]any{}, "spec", "certificates")},
			want:  []string{"spec.certificates", "at least 1 items"},
		},
		{
			name:  "bad appKey",
			base:  tenant,
			edits: []edit{set("chat app!", "spec", "appKey")},
			want:  []string{"spec.appKey", "should match"},
		},
		{
			name:   "tokenStore.shards changed after creation",
			base:   tenant, // created with the default of 16 shards
			create: true,
			edits:  []edit{set(int64(32), "spec", "tokenStore", "shards")},
			want:   []string{"spec.tokenStore", "tokenStore.shards is immutable once set"},
		},
		{
			name:  "shards 0",
			base:  tenant,
			edits: []edit{set(int64(0), "spec", "tokenStore", "shards")},
			want:  []string{"spec.tokenStore.shards", "greater than or equal to 1"},
		},
		{
			name:  "replicas 0",
			base:  tenant,
			edits: []edit{set(int64(0), "spec", "dispatcher", "replicas")},
			want:  []string{"spec.dispatcher.replicas", "greater than or equal to 1"},
		},
		{
			name:  "allowedClients entry empty",
			base:  tenant,
			edits: []edit{set([]any{map[string]any{}}, "spec", "dispatcher", "allowedClients")},
			want:  []string{"spec.dispatcher.allowedClients[0]", "allowedClients entries need namespaceSelector or podSelector"},
		},
	}

	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			obj := mustParse(t, fmt.Sprintf(tc.base, fmt.Sprintf("case-%d", i)))
			// The unedited object is valid: a failure below is the edit's.
			if _, err := c.applyObj(ctx, obj, validationNamespace, !tc.create); err != nil {
				t.Fatalf("valid base object rejected: %v", err)
			}
			for _, e := range tc.edits {
				e(obj)
			}
			_, err := c.applyObj(ctx, obj, validationNamespace, !tc.create)
			if err == nil {
				t.Fatalf("accepted; want rejection naming %q", tc.want)
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestDefaultsApplied creates minimal objects and checks the API server fills
// in the documented defaults, which the controllers and dispatcher rely on.
func TestDefaultsApplied(t *testing.T) {
	c := getCluster(t)
	c.installCRDs(t)
	c.createNamespace(t, validationNamespace)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	check := func(t *testing.T, obj *unstructured.Unstructured, want map[string]any) {
		t.Helper()
		for path, w := range want {
			got, ok, err := unstructured.NestedFieldNoCopy(obj.Object, strings.Split(path, ".")...)
			if err != nil || !ok {
				t.Errorf("%s not defaulted", path)
				continue
			}
			if !reflect.DeepEqual(got, w) {
				t.Errorf("%s = %v (%T), want %v (%T)", path, got, got, w, w)
			}
		}
	}

	t.Run("PushPolicy without spec", func(t *testing.T) {
		obj := mustParse(t, `
apiVersion: push.imcloud.io/v1alpha1
kind: PushPolicy
metadata: {name: defaults}
`)
		out, err := c.applyObj(ctx, obj, validationNamespace, false)
		if err != nil {
			t.Fatal(err)
		}
		check(t, out, map[string]any{
			"spec.multiDevice":                       "AllOffline",
			"spec.providerPreference":                "VendorFirst",
			"spec.notification.showContent":          true,
			"spec.notification.hiddenTitle":          "New message",
			"spec.notification.hiddenBody":           "You have a new message",
			"spec.notification.sound":                "default",
			"spec.notification.badge":                true,
			"spec.delivery.ttl":                      "24h",
			"spec.delivery.maxAttempts":              int64(5),
			"spec.delivery.backoff.initial":          "1s",
			"spec.delivery.backoff.max":              "5m",
			"spec.classification.huaweiCategory":     "IM",
			"spec.classification.honorImportance":    "NORMAL",
			"spec.classification.oppoCategory":       "IM",
			"spec.classification.oppoNotifyLevel":    int64(2),
			"spec.classification.vivoCategory":       "IM",
			"spec.classification.vivoClassification": int64(1),
			"spec.classification.meizuNoticeMsgType": int64(1),
		})
	})

	t.Run("PushPolicy quiet hours", func(t *testing.T) {
		obj := mustParse(t, `
apiVersion: push.imcloud.io/v1alpha1
kind: PushPolicy
metadata: {name: defaults-quiet}
spec:
  quietHours: {start: "22:00", end: "08:00"}
`)
		out, err := c.applyObj(ctx, obj, validationNamespace, false)
		if err != nil {
			t.Fatal(err)
		}
		check(t, out, map[string]any{
			"spec.quietHours.timeZone":             "UTC",
			"spec.quietHours.mentionsBreakThrough": true,
		})
	})

	t.Run("AppTenant", func(t *testing.T) {
		obj := mustParse(t, fmt.Sprintf(tenant, "defaults"))
		out, err := c.applyObj(ctx, obj, validationNamespace, false)
		if err != nil {
			t.Fatal(err)
		}
		check(t, out, map[string]any{
			"spec.dispatcher.replicas":                  int64(2),
			"spec.tokenStore.shards":                    int64(16),
			"spec.tokenStore.maxDevicesPerUser":         int64(10),
			"spec.tokenStore.maxShardBytes":             int64(262144),
			"spec.tokenStore.writeBudgetBytesPerSecond": int64(1048576),
			"spec.tokenStore.retainOnDelete":            true,
		})
	})

	t.Run("PushCertificate APNs", func(t *testing.T) {
		obj := mustParse(t, fmt.Sprintf(apnsCert, "defaults"))
		unstructured.RemoveNestedField(obj.Object, "spec", "apns", "authType")
		out, err := c.applyObj(ctx, obj, validationNamespace, false)
		if err != nil {
			t.Fatal(err)
		}
		check(t, out, map[string]any{
			"spec.apns.authType":    "Token",
			"spec.apns.environment": "Production",
		})
	})
}
