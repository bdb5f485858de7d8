package delivery

import "time"

// Clock is the engine's time source. Every deadline the engine keeps itself
// (backoff, TTL, quota pauses, rate-limit slots, daily caps) reads it, so
// tests drive time with a fake and need no sleeps. Provider-call deadlines
// (Options.CallTimeout) use real time: they bound real network calls.
type Clock interface {
	Now() time.Time
	// TimerAt returns a timer that fires once the clock reads due. It
	// takes a time, not a duration: a duration counted from an earlier
	// reading of Now would be late by the time between the two calls,
	// which a fake clock can make as long as it likes.
	TimerAt(due time.Time) Timer
}

// Timer is the part of *time.Timer the engine uses.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// RealClock is the wall clock.
type RealClock struct{}

func (RealClock) Now() time.Time { return time.Now() }

func (RealClock) TimerAt(due time.Time) Timer { return realTimer{time.NewTimer(time.Until(due))} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }
