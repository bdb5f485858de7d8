package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// The dispatcher serves its API with fasthttp, not net/http's server.
// Profiles of the dispatcher under `make bench` load put net/http's own
// part, beyond the handlers, at a fifth to a quarter of the process's CPU:
// per request a goroutine hand-off to a background reader (armed to notice
// a closed connection, then cancelled), a context, header maps and a
// response writer. fasthttp serves a kept-alive connection's requests on
// one goroutine with reused buffers (docs/performance-history.md,
// changes of 2026-12-07 15:35–17:00).
//
// Only the hot route, POST /v1/notifications without query parameters, is
// served natively (FastHandler); every other request, and a notification
// that is unauthorized, asks to wait, or arrives while draining, goes
// through fasthttpadaptor to ServeHTTP, so each route has one
// implementation. The tests send their requests through HTTPServer and
// compare the notification route's answers with ServeHTTP's.
//
// One difference remains: a request's context does not end when its
// client disconnects, so a ?wait=true request whose client left waits out
// its timeout (at most MaxWait), and a store write its own.

const (
	notificationsPath  = "/v1/notifications"
	notificationsRoute = http.MethodPost + " " + notificationsPath
	// maxHeaderBytes bounds a request's line and headers (fasthttp's read
	// buffer). Every API request needs well under 1 KiB; proxies in front
	// commonly allow 8 KiB.
	maxHeaderBytes = 8 << 10
)

// FastHandler is the API as a fasthttp handler: the same answers as
// ServeHTTP.
func (s *Server) FastHandler() fasthttp.RequestHandler {
	// The adaptor gives the handler fasthttp's RequestCtx as the request's
	// context; a context derived from it starts a goroutine that reads the
	// server's state unguarded while Shutdown writes it (a data race the
	// race detector reports). The handler gets its values without its
	// cancellation, which only shutdown would bring: fasthttp does not
	// notice a client leaving.
	slow := fasthttpadaptor.NewFastHTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.ServeHTTP(w, r.WithContext(context.WithoutCancel(r.Context())))
	}))
	// Looked up once, not per request, and on first use so that the series
	// appears as ServeHTTP's do.
	accepted := sync.OnceValue(func() prometheus.Counter {
		return s.metrics.requests.WithLabelValues(notificationsRoute, strconv.Itoa(http.StatusAccepted))
	})
	return func(ctx *fasthttp.RequestCtx) {
		defer s.recoverPanic(ctx)
		// The raw request URI, not the cleaned path: a path the mux would
		// redirect, or any query (?wait=true), takes the general route.
		if !ctx.IsPost() || string(ctx.RequestURI()) != notificationsPath || s.draining.Load() ||
			!s.authorizedBy(string(ctx.Request.Header.Peek("Authorization"))) {
			slow(ctx)
			return
		}
		body := ctx.PostBody()
		e := checkBody(body)
		var receipt Receipt
		if e == nil {
			receipt, e = s.submitNotification(body)
		}
		if e != nil {
			answerError(fastAnswer{ctx}, e)
			s.metrics.requests.WithLabelValues(notificationsRoute, strconv.Itoa(e.status)).Inc()
			return
		}
		answerJSON(fastAnswer{ctx}, http.StatusAccepted, receipt)
		accepted().Inc()
	}
}

// recoverPanic answers a handler's panic with a 500 and keeps the process
// up, as net/http's server would (fasthttp's does not recover); through
// fasthttpadaptor a net/http handler's panic arrives here as a new panic.
func (s *Server) recoverPanic(ctx *fasthttp.RequestCtx) {
	v := recover()
	if v == nil {
		return
	}
	s.log.Error(fmt.Errorf("%v", v), "serving a request panicked", "method", string(ctx.Method()), "path", string(ctx.Path()))
	ctx.Response.Reset()
	ctx.SetConnectionClose()
	answerError(fastAnswer{ctx}, newError(http.StatusInternalServerError, CodeInternal, "", "the dispatcher failed serving this request"))
}

type fastAnswer struct{ *fasthttp.RequestCtx }

func (a fastAnswer) setHeader(k, v string)  { a.Response.Header.Set(k, v) }
func (a fastAnswer) writeHeader(status int) { a.SetStatusCode(status) }

// HTTPServer is the fasthttp server for FastHandler, with the limits and
// timeouts the API promises.
func (s *Server) HTTPServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:      s.FastHandler(),
		ErrorHandler: s.requestError,
		Logger:       fastLogger{s.log},
		// 256 KiB of slack, the most net/http's server reads of a body its
		// handler left unread before it gives up on the connection: a
		// body a little over MaxBodyBytes is read and gets the route's 413
		// on a connection kept alive; a larger one fasthttp's 413
		// (requestError), after which it closes the connection.
		MaxRequestBodySize: MaxBodyBytes + 256<<10,
		ReadBufferSize:     maxHeaderBytes,
		// The whole request, headers and body; fasthttp has no separate
		// header timeout.
		ReadTimeout: 30 * time.Second,
		// A ?wait=true request may wait MaxWait for outcomes.
		WriteTimeout:          MaxWait + 15*time.Second,
		IdleTimeout:           2 * time.Minute,
		NoDefaultServerHeader: true,
		CloseOnShutdown:       true,
		// Every body is JSON: a multipart one is refused by the decoder
		// as any other non-JSON body, without fasthttp parsing it into a
		// form first, work no route uses.
		DisablePreParseMultipartForm: true,
	}
}

// requestError answers a request fasthttp could not read: too large a body
// with the API's JSON error, as ServeHTTP does; a malformed request, as
// net/http's server does, with a plain-text status. Neither has a route, so
// the request metric counts them as route="unread".
func (s *Server) requestError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		answerError(fastAnswer{ctx}, errBodyTooLarge())
	case errors.As(err, &small):
		ctx.Error("request headers are larger than "+strconv.Itoa(maxHeaderBytes)+" bytes", http.StatusRequestHeaderFieldsTooLarge)
	case errors.As(err, &netErr) && netErr.Timeout():
		ctx.Error("request timeout", http.StatusRequestTimeout)
	default:
		ctx.Error("malformed HTTP request", http.StatusBadRequest)
	}
	s.metrics.requests.WithLabelValues("unread", strconv.Itoa(ctx.Response.StatusCode())).Inc()
}

// fastLogger sends fasthttp's own messages (connections it gave up on) to
// the dispatcher's log. They carry addresses and errors, never a request's
// headers or body.
type fastLogger struct{ log logr.Logger }

func (l fastLogger) Printf(format string, args ...any) {
	l.log.V(1).Info(fmt.Sprintf(format, args...))
}
