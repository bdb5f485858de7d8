package store

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkSecretsGet is the read path the delivery engine takes per
// recipient: Get from the cache of a loaded store (16 shards of 10,000
// one-device users), from every P in parallel.
func BenchmarkSecretsGet(b *testing.B) {
	cfg := testConfig(16)
	s := newSecrets(nil, "bench", cfg, SecretsOptions{}, realClock{})
	const users = 10000
	data := make([]map[string][]byte, cfg.Shards)
	for i := range data {
		data[i] = map[string][]byte{}
	}
	for i := range users {
		user := fmt.Sprintf("user-%05d", i)
		shard := ShardIndex(user, cfg.Shards)
		applyOps(cfg.ShardName(shard), data[shard], []*op{{user: user,
			mutate: bindMutation("phone", Binding{CertificateName: "apns", Token: fmt.Sprintf("%064x", i)}, s.opts.Now(), 10)}}, 1<<30)
	}
	for i, sh := range s.shards {
		sh.observe(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: sh.name, ResourceVersion: strconv.Itoa(i + 1)}, Data: data[i]})
	}
	s.loaded.Store(true)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			u, err := s.Get(ctx, fmt.Sprintf("user-%05d", next.Add(1)%users))
			if err != nil || len(u.Devices) != 1 {
				b.Fatalf("Get = %+v, %v", u, err)
			}
		}
	})
}
