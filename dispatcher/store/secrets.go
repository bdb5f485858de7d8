package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/kube"
)

// DefaultFieldManager is the field manager of the dispatcher's shard writes.
const DefaultFieldManager = "im-push-dispatcher"

const (
	// maxBatch bounds one group commit, so one Update stays a bounded amount of work.
	maxBatch = 128
	// maxAttempts bounds the re-get-and-reapply rounds of one batch under
	// conflicts with other replicas.
	maxAttempts = 16
	// queueLength is how many calls may wait per shard while a write is in flight.
	queueLength = 512
)

// MetricsHooks are optional callbacks for the dispatcher's metrics; nil
// functions are skipped. They run on the shard's writer goroutine and must not
// block.
type MetricsHooks struct {
	// OnWrite: one Update of shard committed; bytes is the shard's data size written.
	OnWrite func(shard string, bytes int)
	// OnBatch: a group commit of ops calls finished (committed or failed).
	OnBatch func(shard string, ops int)
	// OnConflict: an Update was refused because another replica wrote first.
	OnConflict func(shard string)
	// OnShardFull: a call was refused with ErrShardFull.
	OnShardFull func(shard string)
}

// SecretsOptions tune a Secrets store; the zero value works.
type SecretsOptions struct {
	// Now is the clock for bound-at and updated-at times (time.Now when nil).
	Now func() time.Time
	// FieldManager names the writer in managedFields (DefaultFieldManager when empty).
	FieldManager string
	Logger       logr.Logger
	Metrics      MetricsHooks
}

// Secrets is the production Store: each shard is a Secret the operator
// pre-created; reads come from a cache fed by one name-scoped watch per shard,
// and the calls touching one shard are written together in one Update
// carrying the cached resourceVersion (group commit). Its RBAC needs get,
// watch and update on the shard Secrets by resourceNames, nothing else.
type Secrets struct {
	front
	client    *kube.Client
	namespace string
	cfg       config.TokenStore
	opts      SecretsOptions
	log       logr.Logger
	budget    *budget
	shards    []*shard

	started atomic.Bool
	loaded  atomic.Bool
	stopped chan struct{}
}

var _ Store = (*Secrets)(nil)

// shard is one shard Secret's cache entry and write queue.
type shard struct {
	name  string
	queue chan *pending

	mu sync.RWMutex
	// secret is the newest state seen (nil while the Secret does not exist);
	// it is shared with readers and never modified.
	secret *corev1.Secret
	// rv is the newest resourceVersion seen, deletions and bookmarks included.
	rv string
}

// pending is a queued call waiting for its group commit.
type pending struct {
	op   *op
	ctx  context.Context
	done chan struct{}
}

// NewSecrets returns a store over the shard Secrets of cfg in namespace. It
// serves nothing until Start has loaded every shard.
func NewSecrets(client *kube.Client, namespace string, cfg config.TokenStore, opts SecretsOptions) *Secrets {
	return newSecrets(client, namespace, cfg, opts, realClock{})
}

func newSecrets(client *kube.Client, namespace string, cfg config.TokenStore, opts SecretsOptions, budgetClock clock) *Secrets {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.FieldManager == "" {
		opts.FieldManager = DefaultFieldManager
	}
	cfg = withDefaults(cfg)
	s := &Secrets{
		client:    client,
		namespace: namespace,
		cfg:       cfg,
		opts:      opts,
		log:       opts.Logger.WithValues("namespace", namespace),
		// A burst of one second of budget: over any T seconds at most
		// (T+1)×budget bytes go out.
		budget:  newBudget(budgetClock, cfg.WriteBudgetBytesPerSecond, cfg.WriteBudgetBytesPerSecond),
		stopped: make(chan struct{}),
	}
	for _, name := range cfg.ShardNames() {
		s.shards = append(s.shards, &shard{name: name, queue: make(chan *pending, queueLength)})
	}
	s.front = front{maxDevices: int(cfg.MaxDevicesPerUser), now: opts.Now, read: s.read, commit: s.enqueue}
	return s
}

// Start loads every shard into the cache, then keeps it current with one watch
// per shard and starts one writer per shard, all until ctx ends. It returns
// once every shard is loaded, or with an error naming a shard that is missing,
// not readable or not a token-store shard (the store stays not ready).
func (s *Secrets) Start(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("token store already started")
	}
	for _, sh := range s.shards {
		if err := s.load(ctx, sh, true); err != nil {
			s.started.Store(false)
			return err
		}
	}
	for _, sh := range s.shards {
		go s.watchLoop(ctx, sh)
		go s.writeLoop(ctx, sh)
	}
	s.loaded.Store(true)
	go func() {
		<-ctx.Done()
		s.loaded.Store(false)
		close(s.stopped)
	}()
	s.log.Info("token store loaded", "shards", len(s.shards))
	return nil
}

// Ready reports whether every shard is loaded and still exists.
func (s *Secrets) Ready() bool {
	if !s.loaded.Load() {
		return false
	}
	for _, sh := range s.shards {
		if sh.current() == nil {
			return false
		}
	}
	return true
}

// ShardFill returns each cached shard's data bytes by shard name.
func (s *Secrets) ShardFill() map[string]int64 {
	fill := make(map[string]int64, len(s.shards))
	for _, sh := range s.shards {
		if sec := sh.current(); sec != nil {
			fill[sh.name] = dataBytes(sec.Data)
		}
	}
	return fill
}

func (s *Secrets) shardOf(user string) *shard {
	return s.shards[ShardIndex(user, s.cfg.Shards)]
}

func (s *Secrets) missing(sh *shard) error {
	return fmt.Errorf("token store shard Secret %s/%s does not exist: %w", s.namespace, sh.name, ErrNotReady)
}

func (s *Secrets) read(_ context.Context, user string) (User, error) {
	if !s.loaded.Load() {
		return User{}, ErrNotReady
	}
	sh := s.shardOf(user)
	sec := sh.current()
	if sec == nil {
		return User{}, s.missing(sh)
	}
	u, err := lookupUser(sec.Data, user)
	if err != nil {
		return User{}, fmt.Errorf("user record in shard %s: %w", sh.name, err)
	}
	return u, nil
}

// enqueue hands o to its shard's writer and waits for the commit. A caller
// whose ctx ends after enqueueing gets ctx's error, though its change may
// still be committed.
func (s *Secrets) enqueue(ctx context.Context, o *op) error {
	if !s.loaded.Load() {
		return ErrNotReady
	}
	p := &pending{op: o, ctx: ctx, done: make(chan struct{})}
	select {
	case s.shardOf(o.user).queue <- p:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stopped:
		return ErrNotReady
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stopped:
		return ErrNotReady
	}
}

// writeLoop takes whatever calls queued up while the previous write was in
// flight and commits them as one batch.
func (s *Secrets) writeLoop(ctx context.Context, sh *shard) {
	for {
		var batch []*pending
		select {
		case <-ctx.Done():
			return
		case p := <-sh.queue:
			batch = append(batch, p)
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case p := <-sh.queue:
				batch = append(batch, p)
			default:
				break drain
			}
		}
		s.commit(ctx, sh, batch)
	}
}

// commit applies batch to the newest cached Secret and, once the write budget
// allows the shard's bytes, writes it with one Update; on a conflict it gets
// the Secret again and re-applies the batch.
func (s *Secrets) commit(ctx context.Context, sh *shard, batch []*pending) {
	ops := make([]*op, 0, len(batch))
	for _, p := range batch {
		if p.ctx.Err() == nil {
			ops = append(ops, p.op)
		}
	}
	defer func() {
		for _, p := range batch {
			close(p.done)
		}
		if s.opts.Metrics.OnBatch != nil {
			s.opts.Metrics.OnBatch(sh.name, len(batch))
		}
	}()
	failAll := func(err error) {
		for _, o := range ops {
			o.found, o.err = false, err
		}
	}
	if len(ops) == 0 {
		return
	}
	ctx, release := callersContext(ctx, batch)
	defer release()
	log := s.log.WithValues("shard", sh.name)
	base := sh.current()
	for attempt := 1; ; attempt++ {
		if base == nil {
			failAll(s.missing(sh))
			return
		}
		data := maps.Clone(base.Data)
		if data == nil {
			data = map[string][]byte{}
		}
		if !applyOps(sh.name, data, ops, s.cfg.MaxShardBytes) {
			s.reportRefused(log, sh, ops)
			return
		}
		fill := dataBytes(data)
		next := base.DeepCopy()
		next.Data = data
		if next.Annotations == nil {
			next.Annotations = map[string]string{}
		}
		next.Annotations[AnnotationFillBytes] = strconv.FormatInt(fill, 10)
		body, err := runtime.Encode(secretEncoder, next)
		if err != nil {
			failAll(fmt.Errorf("encoding token store shard Secret %s/%s: %w", s.namespace, sh.name, err))
			return
		}
		// The budget is charged the request body itself (the whole object,
		// metadata and managedFields included), not the data it carries.
		if err := s.budget.wait(ctx, len(body)); err != nil {
			failAll(fmt.Errorf("waiting for the token store write budget: %w", err))
			return
		}
		updated, err := s.update(ctx, sh.name, body)
		if err == nil {
			sh.observe(updated)
			if s.opts.Metrics.OnWrite != nil {
				s.opts.Metrics.OnWrite(sh.name, int(fill))
			}
			log.V(1).Info("shard written", "calls", len(ops), "bytes", fill, "resourceVersion", updated.ResourceVersion, "attempt", attempt)
			s.reportRefused(log, sh, ops)
			return
		}
		if !apierrors.IsConflict(err) || attempt == maxAttempts {
			if apierrors.IsNotFound(err) {
				sh.deleted("")
			}
			if unavailable(err) {
				err = fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
			failAll(fmt.Errorf("updating token store shard Secret %s/%s: %w", s.namespace, sh.name, err))
			return
		}
		if s.opts.Metrics.OnConflict != nil {
			s.opts.Metrics.OnConflict(sh.name)
		}
		log.V(1).Info("shard changed underneath, re-reading", "attempt", attempt)
		if err := s.load(ctx, sh, false); err != nil {
			failAll(err)
			return
		}
		base = sh.current()
	}
}

// secretEncoder is protobuf, what the typed client sends Secrets as; the
// store encodes the body itself so the bytes it charges are the bytes sent.
var secretEncoder = func() runtime.Encoder {
	info, ok := runtime.SerializerInfoForMediaType(kube.Codecs.SupportedMediaTypes(), runtime.ContentTypeProtobuf)
	if !ok {
		panic("no protobuf serializer for the core API")
	}
	return kube.Codecs.EncoderForVersion(info.Serializer, corev1.SchemeGroupVersion)
}()

// update PUTs an encoded shard Secret, as the typed client's Update does.
func (s *Secrets) update(ctx context.Context, name string, body []byte) (*corev1.Secret, error) {
	updated := &corev1.Secret{}
	err := s.client.RESTClient().Put().
		UseProtobufAsDefault().
		Namespace(s.namespace).Resource("secrets").Name(name).
		VersionedParams(&metav1.UpdateOptions{FieldManager: s.opts.FieldManager}, kube.ParameterCodec).
		SetHeader("Content-Type", runtime.ContentTypeProtobuf).
		Body(body).
		Do(ctx).Into(updated)
	return updated, err
}

// unavailable reports whether err is the API server being unreachable or
// failing on its side (as opposed to refusing this write), so callers can
// be told to retry.
func unavailable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return true
	}
	return apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsServerTimeout(err) ||
		apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) || apierrors.IsUnexpectedServerError(err)
}

// callersContext ends when ctx ends or every caller of batch has gone, so a
// batch nobody waits for any more neither waits for budget nor gets written.
func callersContext(ctx context.Context, batch []*pending) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	var waiting atomic.Int32
	waiting.Store(int32(len(batch)))
	stops := make([]func() bool, 0, len(batch))
	for _, p := range batch {
		stops = append(stops, context.AfterFunc(p.ctx, func() {
			if waiting.Add(-1) == 0 {
				cancel()
			}
		}))
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}

func (s *Secrets) reportRefused(log logr.Logger, sh *shard, ops []*op) {
	for _, o := range ops {
		if errors.Is(o.err, ErrShardFull) {
			log.Info("token store shard is full, write refused", "maxShardBytes", s.cfg.MaxShardBytes)
			if s.opts.Metrics.OnShardFull != nil {
				s.opts.Metrics.OnShardFull(sh.name)
			}
		}
	}
}

// load gets a shard Secret by name into the cache. At start it retries
// transient errors until ctx ends; a missing, forbidden or foreign Secret is
// an error at once.
func (s *Secrets) load(ctx context.Context, sh *shard, starting bool) error {
	delay := 200 * time.Millisecond
	for {
		sec, err := s.client.Secrets(s.namespace).Get(ctx, sh.name, metav1.GetOptions{})
		switch {
		case err == nil:
			if sec.Type != SecretType {
				return fmt.Errorf("shard Secret %s/%s has type %q, not %q: it is not a token store shard", s.namespace, sh.name, sec.Type, SecretType)
			}
			sh.observe(sec)
			return nil
		case apierrors.IsNotFound(err):
			sh.deleted("")
			return fmt.Errorf("token store shard Secret %s/%s does not exist (the operator creates it with the AppTenant): %w", s.namespace, sh.name, err)
		case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) || !starting:
			return fmt.Errorf("getting token store shard Secret %s/%s: %w", s.namespace, sh.name, err)
		}
		s.log.Info("getting token store shard failed, retrying", "shard", sh.name, "error", err.Error())
		if !sleep(ctx, delay) {
			return fmt.Errorf("getting token store shard Secret %s/%s: %w", s.namespace, sh.name, ctx.Err())
		}
		delay = min(2*delay, 5*time.Second)
	}
}

var errExpired = errors.New("watch resourceVersion expired")

// watchLoop keeps sh's cache current: it watches the one Secret by a
// metadata.name field selector (which RBAC authorises by resourceNames),
// resumes from the newest resourceVersion seen, and gets the Secret again
// when that version has expired.
func (s *Secrets) watchLoop(ctx context.Context, sh *shard) {
	log := s.log.WithValues("shard", sh.name)
	delay := 200 * time.Millisecond
	reload := false
	for ctx.Err() == nil {
		if reload {
			if err := s.load(ctx, sh, false); err != nil && !apierrors.IsNotFound(err) {
				log.Info("reloading token store shard failed", "error", err.Error())
				if !sleep(ctx, delay) {
					return
				}
				delay = min(2*delay, 30*time.Second)
				continue
			}
			reload = false
		}
		events, err := s.watch(ctx, sh)
		switch {
		case errors.Is(err, errExpired):
			reload = true
		case err != nil && ctx.Err() == nil:
			log.Info("watching token store shard failed", "error", err.Error())
			if !sleep(ctx, delay) {
				return
			}
			delay = min(2*delay, 30*time.Second)
		case events > 0:
			delay = 200 * time.Millisecond
		default:
			// A watch that ends with nothing delivered (a dropped connection)
			// must not turn into a tight loop.
			if !sleep(ctx, delay) {
				return
			}
		}
	}
}

// watch runs one watch until the server ends it, returning how many events
// it delivered.
func (s *Secrets) watch(ctx context.Context, sh *shard) (int, error) {
	// Servers end watches after the timeout; a spread keeps replicas from
	// re-watching in step.
	timeout := int64(300 + rand.IntN(300))
	w, err := s.client.Secrets(s.namespace).Watch(ctx, metav1.ListOptions{
		FieldSelector:       fields.OneTermEqualSelector("metadata.name", sh.name).String(),
		ResourceVersion:     sh.resourceVersion(),
		AllowWatchBookmarks: true,
		TimeoutSeconds:      &timeout,
	})
	if err != nil {
		if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			return 0, errExpired
		}
		return 0, err
	}
	defer w.Stop()
	events := 0
	for {
		select {
		case <-ctx.Done():
			return events, nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return events, nil
			}
			events++
			switch ev.Type {
			case watch.Added, watch.Modified:
				if sec, ok := ev.Object.(*corev1.Secret); ok {
					sh.observe(sec)
				}
			case watch.Deleted:
				if sec, ok := ev.Object.(*corev1.Secret); ok {
					s.log.Info("token store shard Secret was deleted", "shard", sh.name)
					sh.deleted(sec.ResourceVersion)
				}
			case watch.Bookmark:
				if m, err := meta.Accessor(ev.Object); err == nil {
					sh.bookmark(m.GetResourceVersion())
				}
			case watch.Error:
				err := apierrors.FromObject(ev.Object)
				if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
					return events, errExpired
				}
				return events, err
			}
		}
	}
}

func (sh *shard) current() *corev1.Secret {
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.secret
}

func (sh *shard) resourceVersion() string {
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.rv
}

// newer reports whether rv is after the newest version seen. Writes answer
// and watch events arrive on different paths, so an older state must never
// replace a newer one. An unparsable version is taken as newer.
func (sh *shard) newer(rv string) bool {
	if sh.rv == "" {
		return true
	}
	c, err := resourceversion.CompareResourceVersion(rv, sh.rv)
	return err != nil || c > 0
}

func (sh *shard) observe(sec *corev1.Secret) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.newer(sec.ResourceVersion) {
		sh.secret, sh.rv = sec, sec.ResourceVersion
	}
}

// deleted records that the Secret is gone; rv is the deletion's version, or
// "" when a request found it missing (the next watch then starts from now).
func (sh *shard) deleted(rv string) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if rv == "" || sh.newer(rv) {
		sh.secret, sh.rv = nil, rv
	}
}

func (sh *shard) bookmark(rv string) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if rv != "" && sh.newer(rv) {
		sh.rv = rv
	}
}

// sleep waits d or until ctx ends; it reports whether the wait was complete.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
