package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/delivery"
	"github.com/imcloud/im-push-operator/dispatcher/policy"
	"github.com/imcloud/im-push-operator/dispatcher/server"
	"github.com/imcloud/im-push-operator/dispatcher/store"
)

// engineAPI presents the delivery engine as the server's Engine.
type engineAPI struct{ e *delivery.Engine }

var _ server.Engine = engineAPI{}

func (a engineAPI) Submit(n *policy.Notification) (server.Receipt, error) {
	r, err := a.e.Submit(n)
	if err != nil {
		return server.Receipt{}, submitError(err)
	}
	return server.Receipt{ID: r.ID, Accepted: r.Deliveries, Skipped: r.Skipped, Duplicate: r.Duplicate, AcceptedAt: r.AcceptedAt}, nil
}

var _ server.Admitter = engineAPI{}

func (a engineAPI) Room() int { return a.e.Room() }

// Admit tags the engine's error as Submit does (submitError keeps nil nil).
func (a engineAPI) Admit(id string, recipients int) error {
	return submitError(a.e.Admit(id, recipients))
}

// submitError tags the engine's and the store's errors with the server's
// sentinels, which decide the HTTP status.
func submitError(err error) error {
	switch {
	case errors.Is(err, delivery.ErrQueueFull):
		return fmt.Errorf("%w: %w", server.ErrQueueFull, err)
	case errors.Is(err, delivery.ErrDraining):
		return fmt.Errorf("%w: %w", server.ErrDraining, err)
	case errors.Is(err, delivery.ErrNotReady), errors.Is(err, store.ErrNotReady):
		return fmt.Errorf("%w: %w", server.ErrNotReady, err)
	}
	return err
}

func (a engineAPI) Status(id string) (server.Status, bool) {
	st, ok := a.e.Status(id)
	return convertStatus(st), ok
}

func (a engineAPI) Wait(ctx context.Context, id string) (server.Status, error) {
	st, err := a.e.Wait(ctx, id)
	return convertStatus(st), err
}

func convertStatus(st delivery.Status) server.Status {
	out := server.Status{ID: st.ID, Complete: st.Done, Devices: make([]server.DeviceOutcome, 0, len(st.Outcomes))}
	for _, o := range st.Outcomes {
		out.Devices = append(out.Devices, server.DeviceOutcome{
			User: o.User, Device: o.Device, CertificateName: o.Certificate, Provider: string(o.Provider),
			State: string(o.State), Reason: o.Reason, ProviderReason: o.ProviderReason, Attempts: o.Attempts,
		})
	}
	return out
}

// lateStore is the token store before and after it exists: the engine and
// the server are built before the first config names the shards, and answer
// ErrNotReady until the Secrets store has loaded them.
type lateStore struct {
	s atomic.Pointer[store.Secrets]
}

var _ store.Store = (*lateStore)(nil)

func (l *lateStore) set(s *store.Secrets) { l.s.Store(s) }

// Ready reports whether the shards are loaded and present.
func (l *lateStore) Ready() bool {
	s := l.s.Load()
	return s != nil && s.Ready()
}

func (l *lateStore) get() (store.Store, error) {
	if s := l.s.Load(); s != nil {
		return s, nil
	}
	return nil, store.ErrNotReady
}

func (l *lateStore) Get(ctx context.Context, user string) (store.User, error) {
	s, err := l.get()
	if err != nil {
		return store.User{}, err
	}
	return s.Get(ctx, user)
}

func (l *lateStore) Bind(ctx context.Context, user, device string, b store.Binding) error {
	s, err := l.get()
	if err != nil {
		return err
	}
	return s.Bind(ctx, user, device, b)
}

func (l *lateStore) Unbind(ctx context.Context, user, device string) (bool, error) {
	s, err := l.get()
	if err != nil {
		return false, err
	}
	return s.Unbind(ctx, user, device)
}

func (l *lateStore) DeleteUser(ctx context.Context, user string) (bool, error) {
	s, err := l.get()
	if err != nil {
		return false, err
	}
	return s.DeleteUser(ctx, user)
}

func (l *lateStore) PutSettings(ctx context.Context, user string, st store.Settings) error {
	s, err := l.get()
	if err != nil {
		return err
	}
	return s.PutSettings(ctx, user, st)
}

func (l *lateStore) RemoveToken(ctx context.Context, user, device, certificate, token string, notAfter time.Time) (bool, error) {
	s, err := l.get()
	if err != nil {
		return false, err
	}
	return s.RemoveToken(ctx, user, device, certificate, token, notAfter)
}
