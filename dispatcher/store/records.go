package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"

	"github.com/imcloud/im-push-operator/dispatcher/config"
)

// Names the operator and the dispatcher share for the shard Secrets.
const (
	// SecretType is the type of every shard Secret.
	SecretType = "push.imcloud.io/device-tokens"
	// LabelTenant names the AppTenant a shard Secret belongs to.
	LabelTenant = "push.imcloud.io/tenant"
	// AnnotationFillBytes holds the shard's data bytes after the last write,
	// so the operator reads fill from metadata alone.
	AnnotationFillBytes = "push.imcloud.io/fill-bytes"
)

// ErrInvalidBinding: a device id, certificate name or token is empty.
var ErrInvalidBinding = errors.New("device id, certificate name and token must not be empty")

// UserKey is the key of a user's record inside its shard Secret.
func UserKey(user string) string { return base64.RawURLEncoding.EncodeToString([]byte(user)) }

// ShardIndex is the shard a user's record lives in: FNV-1a (32 bits) of the
// user id modulo the shards. Computed here rather than with hash/fnv, whose
// hasher escapes to the heap: an allocation per recipient read.
func ShardIndex(user string, shards int32) int {
	if shards < 1 {
		shards = 1
	}
	const offset32, prime32 = 2166136261, 16777619
	h := uint32(offset32)
	for i := 0; i < len(user); i++ {
		h ^= uint32(user[i])
		h *= prime32
	}
	return int(h % uint32(shards))
}

// withDefaults fills the zero limits the same way config.WithDefaults does, so
// a store built from a bare TokenStore behaves like a rendered one.
func withDefaults(cfg config.TokenStore) config.TokenStore {
	if cfg.Shards < 1 {
		cfg.Shards = 1
	}
	if cfg.MaxDevicesPerUser < 1 {
		cfg.MaxDevicesPerUser = config.DefaultMaxDevicesPerUser
	}
	if cfg.MaxShardBytes < 1 {
		cfg.MaxShardBytes = config.DefaultMaxShardBytes
	}
	if cfg.WriteBudgetBytesPerSecond < 1 {
		cfg.WriteBudgetBytesPerSecond = config.DefaultWriteBudget
	}
	return cfg
}

// dataBytes is a shard's fill: keys and values, the part a Secret's size
// limit is about.
func dataBytes(data map[string][]byte) int64 {
	var n int64
	for k, v := range data {
		n += int64(len(k) + len(v))
	}
	return n
}

func decodeUser(raw []byte) (User, error) {
	u, ok := canonicalUser(raw)
	if !ok {
		if err := jsonv2.Unmarshal(raw, &u, recordReading); err != nil {
			return User{}, fmt.Errorf("decoding user record: %w", err)
		}
	}
	if u.Version != RecordVersion {
		return User{}, fmt.Errorf("user record version %d is not %d", u.Version, RecordVersion)
	}
	return u, nil
}

// recordReading makes the v2 decoder (go-json-experiment, the design of
// encoding/json/v2) read exactly what encoding/json reads (other letter case,
// repeated names, loose times; FuzzDecodeUserMatchesEncodingJSON checks it),
// as records written by earlier dispatchers or by hand (DESIGN.md "Token
// store format") may be. It decodes a record in 40% less time with 12 fewer
// allocations than encoding/json. It reads only the records canonicalUser
// declines: the delivery engine decodes one per recipient, and the general
// decoder was the largest cost of a group message (BenchmarkNotification).
// Records are still written by encoding/json.
var recordReading = jsonv1.DefaultOptionsV1()

// readUser returns the record under key, or an empty record.
func readUser(data map[string][]byte, key string) (User, error) {
	raw, ok := data[key]
	return storedUser(raw, ok)
}

func storedUser(raw []byte, ok bool) (User, error) {
	if !ok {
		return User{Version: RecordVersion}, nil
	}
	return decodeUser(raw)
}

// lookupUser is readUser for a user id, with the key built on the stack:
// the read path of every recipient.
func lookupUser(data map[string][]byte, user string) (User, error) {
	if len(user) > maxUserBytes {
		return readUser(data, UserKey(user))
	}
	var id [maxUserBytes]byte
	var key [(maxUserBytes*8 + 5) / 6]byte
	n := copy(id[:], user)
	k := key[:base64.RawURLEncoding.EncodedLen(n)]
	base64.RawURLEncoding.Encode(k, id[:n])
	raw, ok := data[string(k)] // no allocation: the conversion is only a map index
	return storedUser(raw, ok)
}

func emptyUser(u *User) bool {
	return len(u.Devices) == 0 && reflect.DeepEqual(u.Settings, Settings{})
}

// mutation changes one user's record. It reports whether it found what it
// acts on (Unbind, DeleteUser, RemoveToken); an error leaves the record as is.
type mutation func(u *User) (found bool, err error)

// op is one queued call: the user it touches, what it does, and its outcome.
type op struct {
	user   string
	mutate mutation
	found  bool
	err    error
}

// applyOps applies ops in order to data (changed in place). An op whose
// record would take the shard past maxBytes is refused with ErrShardFull and
// the rest still apply; shrinking writes always pass so a full shard can be
// cleaned. It reports whether data changed.
func applyOps(shard string, data map[string][]byte, ops []*op, maxBytes int64) bool {
	changed := false
	total := dataBytes(data)
	for _, o := range ops {
		o.found, o.err = false, nil
		key := UserKey(o.user)
		u, err := readUser(data, key)
		if err != nil {
			o.err = fmt.Errorf("user record in shard %s: %w", shard, err)
			continue
		}
		before, had := data[key]
		found, err := o.mutate(&u)
		if err != nil {
			o.err = err
			continue
		}
		o.found = found
		var after []byte
		if !emptyUser(&u) {
			u.Version = RecordVersion
			if after, err = json.Marshal(u); err != nil {
				o.err = fmt.Errorf("encoding user record: %w", err)
				continue
			}
		}
		oldSize, newSize := int64(0), int64(0)
		if had {
			oldSize = int64(len(key) + len(before))
		}
		if after != nil {
			newSize = int64(len(key) + len(after))
		}
		if next := total - oldSize + newSize; newSize > oldSize && next > maxBytes {
			o.found = false
			o.err = fmt.Errorf("%w: shard %s holds %d bytes and this %d-byte record would take it to %d, above its cap of %d",
				ErrShardFull, shard, total, newSize, next, maxBytes)
			continue
		}
		switch {
		case after == nil && had:
			delete(data, key)
			changed = true
		case after != nil && string(after) != string(before):
			data[key] = after
			changed = true
		}
		total = total - oldSize + newSize
	}
	return changed
}

// bindMutation adds or replaces device's binding for b.CertificateName and
// drops the least recently updated other devices beyond maxDevices.
func bindMutation(device string, b Binding, now time.Time, maxDevices int) mutation {
	if b.BoundAt.IsZero() {
		b.BoundAt = now
	}
	return func(u *User) (bool, error) {
		i := deviceIndex(u, device)
		if i < 0 {
			u.Devices = append(u.Devices, Device{ID: device})
			i = len(u.Devices) - 1
		}
		d := &u.Devices[i]
		replaced := false
		for j := range d.Bindings {
			if d.Bindings[j].CertificateName == b.CertificateName {
				d.Bindings[j] = b
				replaced = true
			}
		}
		if !replaced {
			d.Bindings = append(d.Bindings, b)
		}
		d.UpdatedAt = now
		for len(u.Devices) > maxDevices {
			victim := -1
			for j := range u.Devices {
				if u.Devices[j].ID == device {
					continue
				}
				if victim < 0 || u.Devices[j].UpdatedAt.Before(u.Devices[victim].UpdatedAt) {
					victim = j
				}
			}
			u.Devices = append(u.Devices[:victim], u.Devices[victim+1:]...)
		}
		return true, nil
	}
}

func unbindMutation(device string) mutation {
	return func(u *User) (bool, error) {
		i := deviceIndex(u, device)
		if i < 0 {
			return false, nil
		}
		u.Devices = append(u.Devices[:i], u.Devices[i+1:]...)
		return true, nil
	}
}

func deleteUserMutation() mutation {
	return func(u *User) (bool, error) {
		found := !emptyUser(u)
		*u = User{}
		return found, nil
	}
}

func putSettingsMutation(s Settings) mutation {
	// A zero Settings must compare equal to Settings{} so the record can go.
	if len(s.Conversations) == 0 {
		s.Conversations = nil
	}
	return func(u *User) (bool, error) {
		u.Settings = s
		return true, nil
	}
}

// removeTokenMutation removes the binding only if it is still the one the
// caller saw: same certificate, same token, bound at or before notAfter. A
// device left with no binding goes too.
func removeTokenMutation(device, certificate, token string, notAfter time.Time) mutation {
	return func(u *User) (bool, error) {
		i := deviceIndex(u, device)
		if i < 0 {
			return false, nil
		}
		d := &u.Devices[i]
		for j, b := range d.Bindings {
			if b.CertificateName != certificate || b.Token != token || b.BoundAt.After(notAfter) {
				continue
			}
			d.Bindings = append(d.Bindings[:j], d.Bindings[j+1:]...)
			if len(d.Bindings) == 0 {
				u.Devices = append(u.Devices[:i], u.Devices[i+1:]...)
			}
			return true, nil
		}
		return false, nil
	}
}

func deviceIndex(u *User, device string) int {
	for i := range u.Devices {
		if u.Devices[i].ID == device {
			return i
		}
	}
	return -1
}

// front implements Store once for both stores: it validates arguments, turns
// each call into an op and hands it to commit, which returns once the op has
// been applied (its outcome in op.found and op.err) or could not be.
type front struct {
	maxDevices int
	now        func() time.Time
	read       func(ctx context.Context, user string) (User, error)
	commit     func(ctx context.Context, o *op) error
}

func (f *front) run(ctx context.Context, user string, m mutation) (bool, error) {
	o := &op{user: user, mutate: m}
	if err := f.commit(ctx, o); err != nil {
		return false, err
	}
	return o.found, o.err
}

// Get returns the user's record; a user never seen is an empty record.
func (f *front) Get(ctx context.Context, user string) (User, error) {
	if err := ValidUser(user); err != nil {
		return User{}, err
	}
	return f.read(ctx, user)
}

// Bind adds or replaces device's binding for b.CertificateName; a zero
// b.BoundAt becomes now.
func (f *front) Bind(ctx context.Context, user, device string, b Binding) error {
	if err := ValidUser(user); err != nil {
		return err
	}
	if device == "" || b.CertificateName == "" || b.Token == "" {
		return ErrInvalidBinding
	}
	_, err := f.run(ctx, user, bindMutation(device, b, f.now(), f.maxDevices))
	return err
}

// Unbind removes a device.
func (f *front) Unbind(ctx context.Context, user, device string) (bool, error) {
	if err := ValidUser(user); err != nil {
		return false, err
	}
	if device == "" {
		return false, ErrInvalidBinding
	}
	return f.run(ctx, user, unbindMutation(device))
}

// DeleteUser forgets a user entirely.
func (f *front) DeleteUser(ctx context.Context, user string) (bool, error) {
	if err := ValidUser(user); err != nil {
		return false, err
	}
	return f.run(ctx, user, deleteUserMutation())
}

// PutSettings replaces the user's settings.
func (f *front) PutSettings(ctx context.Context, user string, s Settings) error {
	if err := ValidUser(user); err != nil {
		return err
	}
	_, err := f.run(ctx, user, putSettingsMutation(s))
	return err
}

// RemoveToken is compare-and-delete (see Store).
func (f *front) RemoveToken(ctx context.Context, user, device, certificate, token string, notAfter time.Time) (bool, error) {
	if err := ValidUser(user); err != nil {
		return false, err
	}
	if device == "" || certificate == "" || token == "" {
		return false, ErrInvalidBinding
	}
	return f.run(ctx, user, removeTokenMutation(device, certificate, token, notAfter))
}
