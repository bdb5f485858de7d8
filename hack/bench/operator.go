package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	pushv1 "github.com/imcloud/im-push-operator/api/v1alpha1"
	"github.com/imcloud/im-push-operator/dispatcher/config"
	fakeapns "github.com/imcloud/im-push-operator/dispatcher/providers/fake/apns"
	"github.com/imcloud/im-push-operator/hack/localrun"
)

// runOperator applies o.tenants AppTenants (each with its certificate Secret,
// PushCertificate and PushPolicy) in a fresh namespace, times how long until
// every owned object exists and every tenant is Ready for its generation,
// then restarts the operator and counts, in the API server's audit log, the
// writes its reconciling of the unchanged tenants causes. It returns the
// running (restarted) operator.
func runOperator(ctx context.Context, cl *cluster, mgr *managerProcess, o options, dir string, rep *report, run int) (*managerProcess, error) {
	const section = "operator"
	ns := fmt.Sprintf("operator-bench-%d", run)
	c := cl.client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return mgr, err
	}
	// No kubelet runs: Deployments in ns are marked available as soon as
	// they are written, so that Ready can settle.
	kubeletCtx, stopKubelet := context.WithCancel(ctx)
	defer stopKubelet()
	go fakeKubelet(kubeletCtx, c, ns)

	data, spec, err := fakeapns.TokenCredential("com.example.chat")
	if err != nil {
		return mgr, err
	}
	var objects [][]client.Object
	for i := range o.tenants {
		name := fmt.Sprintf("tenant-%03d", i)
		cert := &config.Certificate{
			Name: "ios", Resource: name + "-apns", Provider: config.APNs,
			Data: data, Fingerprint: config.Fingerprint(data), APNs: spec,
		}
		secret, pc := localrun.CertificateObjects(ns, cert)
		policy := &pushv1.PushPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-policy"},
			Spec: pushv1.PushPolicySpec{Notification: pushv1.NotificationSpec{Title: "{{.Sender.DisplayName}}", Body: "{{.Text}}"}}}
		tenant := &pushv1.AppTenant{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: pushv1.AppTenantSpec{
				AppKey: name, Certificates: []string{pc.Name},
				PolicyRef: pushv1.LocalObjectReference{Name: policy.Name},
			},
		}
		objects = append(objects, []client.Object{secret, pc, policy, tenant})
	}

	start := time.Now()
	if err := applyAll(ctx, c, objects); err != nil {
		return mgr, err
	}
	applied := time.Since(start)
	var settled time.Duration
	if err := poll(ctx, 10*time.Minute, func() (bool, error) {
		ok, err := allSettled(ctx, c, ns, o.tenants)
		if ok {
			settled = time.Since(start)
		}
		return ok, err
	}); err != nil {
		return mgr, fmt.Errorf("waiting for %d tenants to settle: %w", o.tenants, err)
	}
	rep.add(section, fmt.Sprintf("apply %d AppTenants (+Secret, PushCertificate, PushPolicy each)", o.tenants), "s", "", applied.Seconds())
	rep.add(section, fmt.Sprintf("apply → all owned objects exist and %d tenants Ready", o.tenants), "s", "< 30", settled.Seconds())
	if rss, err := peakRSS(mgr.pid()); err == nil {
		rep.add(section, "operator peak RSS (VmHWM), first start", "MiB", "", float64(rss)/(1<<20))
	}

	// Let the operator go idle, then restart it: at start it reconciles
	// every tenant, none of which has changed.
	if err := waitIdle(ctx, mgr); err != nil {
		return mgr, err
	}
	mgr.stop()
	restarted := time.Now()
	mgr, err = cl.startManager(o.manager, filepath.Join(dir, "manager.log"), o.managerQPS, o.managerBurst)
	if err != nil {
		return nil, err
	}
	tenants := &pushv1.AppTenantList{}
	if err := c.List(ctx, tenants); err != nil {
		return mgr, err
	}
	if err := poll(ctx, 2*time.Minute, func() (bool, error) {
		total, _, err := mgr.reconciles(ctx, "apptenant")
		return err == nil && total >= float64(len(tenants.Items)), nil
	}); err != nil {
		return mgr, fmt.Errorf("waiting for the restarted operator to reconcile every tenant: %w", err)
	}
	if err := waitIdle(ctx, mgr); err != nil {
		return mgr, err
	}
	writes, total, err := cl.auditWrites(restarted)
	if err != nil {
		return mgr, err
	}
	// One row across runs; later runs' clusters hold the earlier runs'
	// tenants too, all reconciled after the restart.
	rep.add(section, "writes by the operator reconciling every unchanged tenant after a restart", "requests", "0", float64(total))
	if run > 1 {
		rep.note("the restarted operator reconciled %d unchanged tenants (earlier runs' included)", len(tenants.Items))
	}
	if total > 0 {
		var parts []string
		for k, v := range writes {
			parts = append(parts, fmt.Sprintf("%s ×%d", k, v))
		}
		sort.Strings(parts)
		rep.note("writes after the restart: %s", strings.Join(parts, ", "))
	}
	if rss, err := peakRSS(mgr.pid()); err == nil {
		rep.add(section, "operator peak RSS (VmHWM), restart with every tenant", "MiB", "", float64(rss)/(1<<20))
	}
	return mgr, nil
}

// applyAll creates each tenant's objects in order, 16 tenants at a time.
func applyAll(ctx context.Context, c client.Client, objects [][]client.Object) error {
	sem := make(chan struct{}, 16)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for _, objs := range objects {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			for _, obj := range objs {
				if err := c.Create(ctx, obj); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// allSettled reports whether n tenants in ns are Ready for their generation
// and every object the operator owns for them exists.
func allSettled(ctx context.Context, c client.Client, ns string, n int) (bool, error) {
	tenants := &pushv1.AppTenantList{}
	if err := c.List(ctx, tenants, client.InNamespace(ns)); err != nil {
		return false, err
	}
	if len(tenants.Items) < n {
		return false, nil
	}
	for i := range tenants.Items {
		if !tenantReady(&tenants.Items[i]) {
			return false, nil
		}
	}
	// Every tenant is Ready; count what it owns.
	owned := map[string]int{}
	count := func(list client.ObjectList, kind string) error {
		if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
			return err
		}
		objs, err := meta.ExtractList(list)
		if err != nil {
			return err
		}
		for _, obj := range objs {
			o, ok := obj.(client.Object)
			if !ok {
				continue
			}
			for _, ref := range o.GetOwnerReferences() {
				if ref.Kind == "AppTenant" {
					owned[kind]++
				}
			}
			if o.GetLabels()["push.imcloud.io/tenant"] != "" && kind == "Secret" && len(o.GetOwnerReferences()) == 0 {
				owned["shard"]++
			}
		}
		return nil
	}
	for kind, list := range map[string]client.ObjectList{
		"Deployment": &appsv1.DeploymentList{}, "Service": &corev1.ServiceList{}, "ServiceAccount": &corev1.ServiceAccountList{},
		"Secret": &corev1.SecretList{},
	} {
		if err := count(list, kind); err != nil {
			return false, err
		}
	}
	// Per tenant: a Deployment, a Service, a ServiceAccount, the config and
	// API-token Secrets, and the pre-created shards (16 by default).
	return owned["Deployment"] >= n && owned["Service"] >= n && owned["ServiceAccount"] >= n &&
		owned["Secret"] >= 2*n && owned["shard"] >= 16*n, nil
}

// waitIdle waits until the operator's AppTenant queue has been empty for two
// seconds.
func waitIdle(ctx context.Context, mgr *managerProcess) error {
	var emptySince time.Time
	return poll(ctx, 2*time.Minute, func() (bool, error) {
		_, depth, err := mgr.reconciles(ctx, "apptenant")
		if err != nil || depth > 0 {
			emptySince = time.Time{}
			return false, nil
		}
		if emptySince.IsZero() {
			emptySince = time.Now()
		}
		return time.Since(emptySince) >= 2*time.Second, nil
	})
}

// fakeKubelet marks every Deployment in ns available with all its replicas,
// as a kubelet and the Deployment controller would once pods run.
func fakeKubelet(ctx context.Context, c client.WithWatch, ns string) {
	for ctx.Err() == nil {
		w, err := c.Watch(ctx, &appsv1.DeploymentList{}, client.InNamespace(ns))
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		for ev := range w.ResultChan() {
			d, ok := ev.Object.(*appsv1.Deployment)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			n := int32(1)
			if d.Spec.Replicas != nil {
				n = *d.Spec.Replicas
			}
			st := &d.Status
			if st.ObservedGeneration == d.Generation && st.Replicas == n && st.AvailableReplicas == n && st.ReadyReplicas == n && st.UpdatedReplicas == n {
				continue
			}
			st.ObservedGeneration = d.Generation
			st.Replicas, st.UpdatedReplicas, st.ReadyReplicas, st.AvailableReplicas, st.UnavailableReplicas = n, n, n, n, 0
			_ = c.Status().Update(ctx, d)
		}
	}
}
