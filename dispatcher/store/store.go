// Package store keeps device-token bindings and per-user settings. The
// production implementation writes Secrets-backed shards (DESIGN.md "Token
// store format"); Memory implements the same interface for unit tests.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/config"
)

// RecordVersion is the version of the JSON record stored per user.
const RecordVersion = 1

// Binding ties a device to one provider token through a certificate name.
type Binding struct {
	CertificateName string    `json:"certificateName"`
	Token           string    `json:"token"`
	BoundAt         time.Time `json:"boundAt"`
}

// Device is one of a user's devices with its bindings (an Android phone may
// hold a vendor token and an FCM token).
type Device struct {
	ID       string    `json:"id"`
	Bindings []Binding `json:"bindings"`
	// UpdatedAt is the last bind; the oldest device goes when the cap is hit.
	UpdatedAt time.Time `json:"updatedAt"`
}

// Notification modes.
const (
	ModeAll          = "All"
	ModeMentionsOnly = "MentionsOnly"
	ModeNone         = "None"
)

// Settings are a user's push preferences.
type Settings struct {
	// Mode is All (default when empty), MentionsOnly or None.
	Mode string `json:"mode,omitempty"`
	// Conversations overrides Mode per conversation id.
	Conversations map[string]string `json:"conversations,omitempty"`
	// QuietHours overrides the policy's quiet hours when set.
	QuietHours *config.QuietHours `json:"quietHours,omitempty"`
	// Language picks the template variant ("" = policy default).
	Language string `json:"language,omitempty"`
}

// User is the versioned record stored under a user's key.
type User struct {
	Version  int      `json:"v"`
	Devices  []Device `json:"devices,omitempty"`
	Settings Settings `json:"settings,omitempty"`
}

// Errors a caller may act on.
var (
	// ErrShardFull: the write would take a shard past its byte cap.
	ErrShardFull = errors.New("token store shard is full")
	// ErrInvalidUser: the user id is empty or longer than 128 bytes.
	ErrInvalidUser = errors.New("user id must be 1 to 128 bytes")
	// ErrNotReady: the store has not loaded its shards yet.
	ErrNotReady = errors.New("token store is not ready")
	// ErrUnavailable: the API server could not be reached, or failed on its
	// side, while writing; the change may or may not have been written.
	ErrUnavailable = errors.New("the Kubernetes API server is unavailable")
)

// Store is what the API server and the delivery engine need.
type Store interface {
	// Get returns the user's record; a user never seen is an empty record.
	// It reads the store's cache and must not block: the delivery engine
	// calls it for every recipient without a deadline.
	Get(ctx context.Context, user string) (User, error)
	// Bind adds or replaces the binding of device for b.CertificateName and
	// returns once the write is committed. It enforces maxDevicesPerUser by
	// dropping the least recently updated device.
	Bind(ctx context.Context, user, device string, b Binding) error
	// Unbind removes a device; found is false when it was not there.
	Unbind(ctx context.Context, user, device string) (found bool, err error)
	// DeleteUser forgets a user entirely.
	DeleteUser(ctx context.Context, user string) (found bool, err error)
	// PutSettings replaces the user's settings.
	PutSettings(ctx context.Context, user string, s Settings) error
	// RemoveToken is compare-and-delete: it removes device's binding for
	// certificate only if it still holds token and was bound at or before
	// notAfter (a token re-registered after the failing send stays).
	RemoveToken(ctx context.Context, user, device, certificate, token string, notAfter time.Time) (removed bool, err error)
}

// maxUserBytes is the longest user id.
const maxUserBytes = 128

// ValidUser checks a user id against the store's rules.
func ValidUser(user string) error {
	if len(user) == 0 || len(user) > maxUserBytes {
		return ErrInvalidUser
	}
	return nil
}
