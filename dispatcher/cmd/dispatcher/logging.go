package main

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"

	"github.com/go-logr/logr"
)

// newLogger returns a JSON logger that puts the tenant's appKey on every
// line. The appKey arrives with the first config, after the first lines are
// written, so it is read when each line is, not when the logger is built.
func newLogger(w io.Writer, appKey *atomic.Value) logr.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})
	return logr.FromSlogHandler(appKeyHandler{Handler: h, appKey: appKey})
}

type appKeyHandler struct {
	slog.Handler
	appKey *atomic.Value
}

func (h appKeyHandler) Handle(ctx context.Context, r slog.Record) error {
	key, _ := h.appKey.Load().(string)
	r = r.Clone()
	r.AddAttrs(slog.String("appKey", key))
	return h.Handler.Handle(ctx, r)
}

func (h appKeyHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return appKeyHandler{Handler: h.Handler.WithAttrs(attrs), appKey: h.appKey}
}

func (h appKeyHandler) WithGroup(name string) slog.Handler {
	return appKeyHandler{Handler: h.Handler.WithGroup(name), appKey: h.appKey}
}
