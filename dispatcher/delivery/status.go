package delivery

import (
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/config"
)

// State is where one device delivery (or skip) stands.
type State string

const (
	// Pending: queued, in flight, or waiting to retry.
	Pending State = "pending"
	// Delivered: a provider accepted the message.
	Delivered State = "delivered"
	// Failed: every binding was tried and given up on; Reason says why the
	// last one was.
	Failed State = "failed"
	// Dropped: this replica let go of the delivery (shutdown).
	Dropped State = "dropped"
	// Skipped: policy decided no push (Reason is a policy.SkipReason or
	// InvalidUser).
	Skipped State = "skipped"
)

// Reasons of failed and dropped outcomes. Skips use policy.SkipReason values.
const (
	ReasonMaxAttempts = "MaxAttempts"
	ReasonExpired     = "Expired"
	// ReasonTokenInvalid: the provider said the token is invalid (the binding
	// was removed from the store unless it was re-bound meanwhile).
	ReasonTokenInvalid = "TokenInvalid"
	// ReasonCredentialSuspect: a token-invalid answer from a credential whose
	// recent answers are mostly token-invalid; the token was kept.
	ReasonCredentialSuspect = "CredentialSuspect"
	ReasonBadCredentials    = "BadCredentials"
	ReasonBadMessage        = "BadMessage"
	// ReasonQuotaExceeded: the credential is paused beyond the message's TTL.
	ReasonQuotaExceeded = "QuotaExceeded"
	// ReasonCertificateRemoved: the binding's certificate left the config
	// (or lost its client) before the attempt.
	ReasonCertificateRemoved = "CertificateRemoved"
	// ReasonUnknownOutcome: a client returned an outcome this engine does
	// not know; treated as permanent for the message.
	ReasonUnknownOutcome = "UnknownOutcome"
	ReasonShutdown       = "Shutdown"
	// ReasonQueueFull labels refused deliveries in the dropped metric.
	ReasonQueueFull = "QueueFull"
	// ReasonInvalidUser: a recipient's user id is not a valid store key.
	ReasonInvalidUser = "InvalidUser"
)

// Receipt is what Submit answers.
type Receipt struct {
	ID         string    `json:"id"`
	AcceptedAt time.Time `json:"acceptedAt"`
	// Deliveries is the number of device deliveries queued.
	Deliveries int `json:"deliveries"`
	// Skipped is the number of users and devices policy left out.
	Skipped int `json:"skipped"`
	// Duplicate is true when the id was already accepted within the
	// idempotency window: this is the first receipt, and nothing was sent
	// again.
	Duplicate bool `json:"duplicate,omitempty"`
}

// DeviceOutcome is one device's delivery (or one user's or device's skip:
// Device is empty when the whole user was skipped).
type DeviceOutcome struct {
	User   string `json:"user"`
	Device string `json:"device,omitempty"`
	// Certificate and Provider are the binding being tried, or last tried.
	Certificate string          `json:"certificate,omitempty"`
	Provider    config.Provider `json:"provider,omitempty"`
	State       State           `json:"state"`
	Reason      string          `json:"reason,omitempty"`
	// ProviderReason is the provider's own code for the last answer
	// ("Unregistered", "80300007"), when there was one.
	ProviderReason string `json:"providerReason,omitempty"`
	// Attempts counts provider calls for this device, all bindings.
	Attempts int `json:"attempts"`
}

// Status is a notification's outcomes.
type Status struct {
	ID         string          `json:"id"`
	AcceptedAt time.Time       `json:"acceptedAt"`
	Done       bool            `json:"done"`
	Outcomes   []DeviceOutcome `json:"outcomes"`
}

// record is one accepted notification. Records are kept for the idempotency
// window (up to IdempotencyMax of them) and were the dispatcher's largest
// live holder of memory under load, so they are kept small: outcomes are
// compact, a single device's outcome lives in the record itself, and the
// done channel is only allocated while deliveries are pending.
type record struct {
	receipt Receipt

	mu sync.Mutex
	// done is closed when pending reaches zero, and then replaced by the
	// shared closedChan so that the record no longer holds a channel.
	done     chan struct{}
	pending  int
	outcomes []keptOutcome
	first    [1]keptOutcome
}

// closedChan is the done channel of every finished record.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func newRecord(r Receipt) *record {
	rec := &record{receipt: r}
	rec.outcomes = rec.first[:0]
	return rec
}

// add appends an outcome and returns its index. Only Submit calls it,
// before the record is shared.
func (r *record) add(o DeviceOutcome) int {
	r.outcomes = append(r.outcomes, compact(o))
	return len(r.outcomes) - 1
}

// reserve makes room for n outcomes; only Submit calls it, before add.
func (r *record) reserve(n int) {
	if n > cap(r.outcomes) {
		r.outcomes = make([]keptOutcome, 0, n)
	}
}

// seal sets the pending count once Submit has added every outcome.
func (r *record) seal(pending int) {
	r.pending = pending
	r.done = closedChan
	if pending > 0 {
		r.done = make(chan struct{})
	}
	if len(r.outcomes) < cap(r.outcomes)/2 {
		r.outcomes = append([]keptOutcome(nil), r.outcomes...)
	}
}

func (r *record) status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Status{
		ID:         r.receipt.ID,
		AcceptedAt: r.receipt.AcceptedAt,
		Done:       r.pending == 0,
		Outcomes:   make([]DeviceOutcome, len(r.outcomes)),
	}
	for i := range r.outcomes {
		st.Outcomes[i] = r.outcomes[i].expand()
	}
	return st
}

// doneChan is closed once every outcome is final.
func (r *record) doneChan() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.done
}

func (r *record) isDone() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pending == 0
}

// The setters below change an outcome in its kept form: expanding it for a
// callback to change would move a DeviceOutcome to the heap on every send.

// attempted records a provider call on pending outcome i: the binding's
// certificate and provider, the attempts so far and the provider's reason.
func (r *record) attempted(i int, cert string, provider config.Provider, attempts int, providerReason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := &r.outcomes[i]
	o.cert, o.provider, o.attempts, o.providerReason = tags.of(cert), tags.of(string(provider)), int32(attempts), providerReason
}

// rebound records that pending outcome i moved to another binding.
func (r *record) rebound(i int, cert string, provider config.Provider) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := &r.outcomes[i]
	o.cert, o.provider = tags.of(cert), tags.of(string(provider))
}

// settle makes outcome i final (the provider's reason is kept unless a new
// one is given) and closes done after the last one.
func (r *record) settle(i int, s State, reason string, attempts int, providerReason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := &r.outcomes[i]
	o.state, o.reason, o.attempts = tags.of(string(s)), tags.of(reason), int32(attempts)
	if providerReason != "" {
		o.providerReason = providerReason
	}
	r.pending--
	if r.pending == 0 {
		close(r.done)
		r.done = closedChan
	}
}

// keptOutcome is a DeviceOutcome as a record keeps it: the fields that take few
// values (certificate, provider, state, reason) are interned tags, which
// halves its size (64 bytes instead of 120 plus an allocation per record).
// The provider's reason comes from outside and is kept as it is.
type keptOutcome struct {
	user, device, providerReason string
	attempts                     int32
	cert, provider, state        tag
	reason                       tag
}

func compact(o DeviceOutcome) keptOutcome {
	return keptOutcome{
		user: o.User, device: o.Device, providerReason: o.ProviderReason, attempts: int32(o.Attempts),
		cert: tags.of(o.Certificate), provider: tags.of(string(o.Provider)),
		state: tags.of(string(o.State)), reason: tags.of(o.Reason),
	}
}

func (o keptOutcome) expand() DeviceOutcome {
	return DeviceOutcome{
		User: o.user, Device: o.device, ProviderReason: o.providerReason, Attempts: int(o.attempts),
		Certificate: tags.name(o.cert), Provider: config.Provider(tags.name(o.provider)),
		State: State(tags.name(o.state)), Reason: tags.name(o.reason),
	}
}

// tag is an interned string.
type tag uint16

// tags interns the certificate names, providers, states and reasons of
// outcomes: a few dozen values over a process's life. Reads are lock-free
// (a copy-on-write table); additions are rare.
var tags = newInterner(math.MaxUint16 + 1)

// overflowName stands in for any string after the table is full, which
// would take 65,535 distinct certificate names.
const overflowName = "(too many distinct values)"

type interner struct {
	max int        // names at most, overflowName included
	mu  sync.Mutex // serialises additions
	tab atomic.Pointer[tagTable]
}

type tagTable struct {
	index map[string]tag
	names []string
}

func newInterner(max int) *interner {
	in := &interner{max: max}
	in.tab.Store(&tagTable{index: map[string]tag{"": 0, overflowName: 1}, names: []string{"", overflowName}})
	return in
}

func (in *interner) of(s string) tag {
	if l, ok := in.tab.Load().index[s]; ok {
		return l
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	t := in.tab.Load()
	if l, ok := t.index[s]; ok {
		return l
	}
	if len(t.names) >= in.max {
		return t.index[overflowName]
	}
	l := tag(len(t.names))
	nt := &tagTable{index: make(map[string]tag, len(t.index)+1), names: append(t.names[:len(t.names):len(t.names)], strings.Clone(s))}
	for k, v := range t.index {
		nt.index[k] = v
	}
	nt.index[nt.names[l]] = l
	in.tab.Store(nt)
	return l
}

func (in *interner) name(l tag) string { return in.tab.Load().names[l] }
