package main

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/kube"
	"github.com/imcloud/im-push-operator/dispatcher/store"
)

// runStore measures one run of the token-store figures against the bench
// tenant's shards (20,000 users in 64 shards, etcd with fsync).
func runStore(ctx context.Context, s *system, rep *report, t timing, run int) error {
	const section = "token store"
	base := loadJob{
		Kind: jobBind, Provider: string(config.APNs), CertificateName: "apns-bench",
		DispatcherURL: s.api.URL, Token: s.api.Token, DispatcherPID: s.pid,
		// Counters are read around the whole job, so there is no warm-up.
		Window: t.window,
	}
	measureBinds := func(name string, job loadJob) (*loadResult, error) {
		if err := s.idle(ctx); err != nil {
			return nil, err
		}
		before, err := s.cl.writeCounters(ctx)
		if err != nil {
			return nil, err
		}
		// The job lasts until its last bind is answered, which under a
		// spent write budget is well after the window: rates are per second
		// of the whole job, so the bytes a bind costs are not credited to
		// the window alone.
		start := time.Now()
		res, err := s.job(ctx, job)
		if err != nil {
			return nil, err
		}
		took := time.Since(start).Seconds()
		after, err := s.cl.writeCounters(ctx)
		if err != nil {
			return nil, err
		}
		noteErrors(rep, section+" "+name, res)
		n := float64(len(res.Bound))
		if n == 0 {
			return res, fmt.Errorf("token store %s: no binding was confirmed (%s)", name, res.LastError)
		}
		rep.add(section, name+": bindings confirmed (first request to last answer)", "bindings/s", "", n/took)
		rep.add(section, name+": Secret update bytes into the API server per second (first request to last answer)", "bytes/s", "", (after.apiBytes-before.apiBytes)/took)
		rep.add(section, name+": Secret update bytes into the API server per binding", "bytes", "", (after.apiBytes-before.apiBytes)/n)
		rep.add(section, name+": Secret updates per binding", "updates", "", (after.apiUpdates-before.apiUpdates)/n)
		rep.add(section, name+": etcd WAL bytes (fsynced) per binding", "bytes", "", (after.walBytes-before.walBytes)/n)
		return res, nil
	}

	job := base
	// A longer window for the sustained figure, so the budget's burst (one
	// second of budget) weighs little in it.
	job.Concurrency, job.UserPrefix, job.Window = 4, fmt.Sprintf("w4-r%d-", run), 4*t.window
	res, err := measureBinds("4 writers", job)
	if err != nil {
		return err
	}
	lost, err := countBack(ctx, s.cl.client, res.Bound)
	if err != nil {
		return err
	}
	rep.add(section, "4 writers: confirmed bindings missing when counted back", "bindings", "0", float64(lost))

	for _, rate := range []float64{10, 100} {
		job := base
		job.Rate, job.UserPrefix = rate, fmt.Sprintf("r%g-r%d-", rate, run)
		res, err := measureBinds(fmt.Sprintf("%g/s offered", rate), job)
		if err != nil {
			return err
		}
		lost, err := countBack(ctx, s.cl.client, res.Bound)
		if err != nil {
			return err
		}
		if lost > 0 {
			rep.note("%s %g/s: %d confirmed bindings missing when counted back", section, rate, lost)
		}
	}

	warm, users, fill, err := warmUp(ctx, s.cl)
	if err != nil {
		return err
	}
	rep.add(section, fmt.Sprintf("cache warm-up: load %d shards", benchShards), "ms", "", float64(warm.Microseconds())/1000)
	rep.add(section, "users in the store", "users", "", float64(users))
	rep.add(section, "mean shard fill", "KiB", "", fill/1024)
	return nil
}

// countBack reads every shard from the API server and returns how many of
// the confirmed users have no record.
func countBack(ctx context.Context, c client.Client, users []string) (int, error) {
	list := &corev1.SecretList{}
	if err := c.List(ctx, list, client.InNamespace(benchNamespace), client.MatchingLabels{store.LabelTenant: benchTenant}); err != nil {
		return 0, err
	}
	keys := map[string]bool{}
	for _, sec := range list.Items {
		if sec.Type != store.SecretType {
			continue
		}
		for k := range sec.Data {
			keys[k] = true
		}
	}
	lost := 0
	for _, u := range users {
		if !keys[store.UserKey(u)] {
			lost++
		}
	}
	return lost, nil
}

// warmUp times the Secrets store loading every shard of the bench tenant
// into its cache, as a dispatcher does when it starts.
func warmUp(ctx context.Context, cl *cluster) (time.Duration, int, float64, error) {
	cfg := rest.CopyConfig(cl.cfg)
	// The dispatcher's own client settings (dispatcher/cmd/dispatcher).
	cfg.QPS, cfg.Burst = 50, 100
	cs, err := kube.NewForConfig(cfg)
	if err != nil {
		return 0, 0, 0, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	st := store.NewSecrets(cs, benchNamespace, config.TokenStore{Shards: benchShards, ShardPrefix: config.ShardPrefix(benchTenant)}, store.SecretsOptions{})
	start := time.Now()
	if err := st.Start(runCtx); err != nil {
		return 0, 0, 0, err
	}
	took := time.Since(start)
	var total int64
	for _, f := range st.ShardFill() {
		total += f
	}
	list := &corev1.SecretList{}
	if err := cl.client.List(ctx, list, client.InNamespace(benchNamespace), client.MatchingLabels{store.LabelTenant: benchTenant}); err != nil {
		return 0, 0, 0, err
	}
	users := 0
	for _, sec := range list.Items {
		users += len(sec.Data)
	}
	return took, users, float64(total) / benchShards, nil
}
