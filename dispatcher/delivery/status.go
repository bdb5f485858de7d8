package delivery

import (
	"sync"
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

// record is one accepted notification.
type record struct {
	receipt Receipt
	// done is closed when pending reaches zero.
	done chan struct{}

	mu       sync.Mutex
	outcomes []DeviceOutcome
	pending  int
}

func newRecord(r Receipt) *record { return &record{receipt: r, done: make(chan struct{})} }

func (r *record) status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Status{
		ID:         r.receipt.ID,
		AcceptedAt: r.receipt.AcceptedAt,
		Done:       r.pending == 0,
		Outcomes:   append([]DeviceOutcome(nil), r.outcomes...),
	}
}

func (r *record) isDone() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// update changes a pending outcome in place.
func (r *record) update(i int, f func(o *DeviceOutcome)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.outcomes[i])
}

// settle makes outcome i final and closes done after the last one.
func (r *record) settle(i int, f func(o *DeviceOutcome)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.outcomes[i])
	r.pending--
	if r.pending == 0 {
		close(r.done)
	}
}
