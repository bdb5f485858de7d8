package delivery

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/imcloud/im-push-operator/dispatcher/config"
	"github.com/imcloud/im-push-operator/dispatcher/providers"
)

// certState is what the engine keeps per certificate across config swaps:
// rate limiter, daily count, quota pause and the token-invalid breaker.
type certState struct {
	name string

	mu          sync.Mutex
	fingerprint string
	limiter     *rate.Limiter // nil = unlimited
	dayZone     *time.Location
	dailyCap    int64 // this replica's share; 0 = none
	dayEnd      time.Time
	sent        int64
	pausedUntil time.Time
	breaker     breaker
}

func newCertState(name string, b breakerConfig) *certState {
	return &certState{name: name, breaker: breaker{cfg: b}}
}

// configure applies a (possibly new) certificate. The limiter keeps its
// tokens and the daily count its value; a new credential (fingerprint)
// starts with a fresh breaker window, since the old one measured another key.
func (s *certState) configure(cert *config.Certificate, replicas int32, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fingerprint != cert.Fingerprint {
		s.breaker.reset()
		s.fingerprint = cert.Fingerprint
	}
	if cert.RateLimit <= 0 {
		s.limiter = nil
	} else {
		burst := max(1, int(math.Ceil(cert.RateLimit)))
		if s.limiter == nil {
			s.limiter = rate.NewLimiter(rate.Limit(cert.RateLimit), burst)
		} else if s.limiter.Limit() != rate.Limit(cert.RateLimit) || s.limiter.Burst() != burst {
			s.limiter.SetLimitAt(now, rate.Limit(cert.RateLimit))
			s.limiter.SetBurstAt(now, burst)
		}
	}
	s.dayZone = dayZone(cert.Provider)
	s.dailyCap = 0
	if cert.DailyCap > 0 {
		s.dailyCap = (cert.DailyCap + int64(max(1, replicas)) - 1) / int64(max(1, replicas))
	}
}

// dayZone is where a provider's daily quota resets: Chinese vendors count
// Beijing days; APNs and FCM have no daily quota of their own, so the cap
// (an operator's budget) counts UTC days.
func dayZone(p config.Provider) *time.Location {
	switch p {
	case config.APNs, config.FCM:
		return time.UTC
	}
	return providers.Beijing
}

// admission is what admit decided about one send.
type admission struct {
	// pausedUntil is set when the credential is paused; newlyPaused when
	// this call paused it (the daily cap was reached).
	pausedUntil time.Time
	newlyPaused bool
	// delay is set when the rate limiter reserved a slot in the future.
	delay time.Duration
}

// admit decides whether j may be sent now. A send the limiter defers keeps
// its reserved slot (j.reserved) so it is not charged twice.
func (s *certState) admit(now time.Time, j *job) admission {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Before(s.pausedUntil) {
		return admission{pausedUntil: s.pausedUntil}
	}
	if !now.Before(s.dayEnd) {
		s.dayEnd = providers.NextMidnight(now, s.dayZone)
		s.sent = 0
	}
	if s.dailyCap > 0 && s.sent >= s.dailyCap {
		s.pausedUntil = s.dayEnd
		return admission{pausedUntil: s.dayEnd, newlyPaused: true}
	}
	if s.limiter != nil && !j.reserved {
		if d := s.limiter.ReserveN(now, 1).DelayFrom(now); d > 0 {
			j.reserved = true
			return admission{delay: d}
		}
	}
	j.reserved = false
	s.sent++
	return admission{}
}

// pause holds the credential until until (a provider quota answer); a zero
// until means the next midnight of the credential's day zone. It returns the
// pause end and whether the pause was extended.
func (s *certState) pause(now, until time.Time) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if until.IsZero() || !until.After(now) {
		until = providers.NextMidnight(now, s.dayZone)
	}
	if !until.After(s.pausedUntil) {
		return s.pausedUntil, false
	}
	s.pausedUntil = until
	return until, true
}

// pausedAt reports whether the credential is still paused at now.
func (s *certState) pausedAt(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return now.Before(s.pausedUntil)
}

// answer records one provider answer in the breaker and returns whether the
// breaker is open and whether that changed.
func (s *certState) answer(now time.Time, invalid bool) (open, changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.breaker.record(now, invalid)
}

// breakerConfig: the breaker opens when, within Window, at least MinAnswers
// answers arrived and at least InvalidRatio of them were DropToken.
type breakerConfig struct {
	Window       time.Duration
	MinAnswers   int
	InvalidRatio float64
}

const breakerBuckets = 12

// breaker counts answers in time buckets covering one window, so its cost
// does not grow with the send rate.
type breaker struct {
	cfg     breakerConfig
	buckets [breakerBuckets]struct {
		slot           int64
		total, invalid int
	}
	open bool
}

func (b *breaker) reset() {
	b.buckets = [breakerBuckets]struct {
		slot           int64
		total, invalid int
	}{}
	b.open = false
}

func (b *breaker) record(now time.Time, invalid bool) (open, changed bool) {
	width := max(int64(b.cfg.Window/breakerBuckets), 1)
	slot := now.UnixNano() / width
	// Slot 0 is the zero value; shift so a real slot never collides with it.
	slot++
	bk := &b.buckets[slot%breakerBuckets]
	if bk.slot != slot {
		bk.slot, bk.total, bk.invalid = slot, 0, 0
	}
	bk.total++
	if invalid {
		bk.invalid++
	}
	total, bad := 0, 0
	for i := range b.buckets {
		if s := b.buckets[i].slot; s > slot-breakerBuckets && s <= slot {
			total += b.buckets[i].total
			bad += b.buckets[i].invalid
		}
	}
	was := b.open
	b.open = total >= b.cfg.MinAnswers && float64(bad) >= b.cfg.InvalidRatio*float64(total)
	return b.open, b.open != was
}
