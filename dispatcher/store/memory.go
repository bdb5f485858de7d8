package store

import (
	"context"
	"sync"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/config"
)

// Memory is a Store held in memory, for unit tests of the packages that use
// a Store. It keeps records in the same encoded shards as Secrets, through
// the same mutation code, so limits (devices per user, shard bytes) and
// results match the production store.
type Memory struct {
	front
	cfg    config.TokenStore
	mu     sync.Mutex
	shards []map[string][]byte
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty store; now is its clock (time.Now when nil).
func NewMemory(cfg config.TokenStore, now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	cfg = withDefaults(cfg)
	m := &Memory{cfg: cfg, shards: make([]map[string][]byte, cfg.Shards)}
	for i := range m.shards {
		m.shards[i] = map[string][]byte{}
	}
	m.front = front{maxDevices: int(cfg.MaxDevicesPerUser), now: now, read: m.read, commit: m.apply}
	return m
}

func (m *Memory) read(_ context.Context, user string) (User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return lookupUser(m.shards[ShardIndex(user, m.cfg.Shards)], user)
}

func (m *Memory) apply(ctx context.Context, o *op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	i := ShardIndex(o.user, m.cfg.Shards)
	applyOps(m.cfg.ShardName(i), m.shards[i], []*op{o}, m.cfg.MaxShardBytes)
	return nil
}

// ShardFill returns each shard's data bytes by shard name.
func (m *Memory) ShardFill() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	fill := make(map[string]int64, len(m.shards))
	for i, data := range m.shards {
		fill[m.cfg.ShardName(i)] = dataBytes(data)
	}
	return fill
}
