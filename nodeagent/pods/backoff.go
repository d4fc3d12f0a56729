package pods

import "time"

// The kubelet's back-off constants: container restarts (CrashLoopBackOff) and image pulls
// (ImagePullBackOff) both start at 10 s and double up to 5 min; an entry not updated for twice
// the maximum (a container that ran for 10 min) starts over.
const (
	initialBackoff = 10 * time.Second
	maxBackoff     = 300 * time.Second
)

// backoff is the kubelet's flowcontrol.Backoff with the clock passed in.
type backoff struct {
	entries map[string]*backoffEntry
}

type backoffEntry struct {
	delay      time.Duration
	lastUpdate time.Time
}

func newBackoff() *backoff { return &backoff{entries: map[string]*backoffEntry{}} }

func expired(eventTime, lastUpdate time.Time) bool {
	return eventTime.Sub(lastUpdate) > 2*maxBackoff
}

// next records a failure at eventTime and grows the delay.
func (b *backoff) next(key string, eventTime, now time.Time) time.Duration {
	e, ok := b.entries[key]
	if !ok || expired(eventTime, e.lastUpdate) {
		e = &backoffEntry{delay: initialBackoff}
		b.entries[key] = e
	} else {
		e.delay = min(2*e.delay, maxBackoff)
	}
	e.lastUpdate = now
	return e.delay
}

// inBackoffSince reports whether a failure at eventTime is still within the current delay, and
// when that delay ends.
func (b *backoff) inBackoffSince(key string, eventTime, now time.Time) (bool, time.Time, time.Duration) {
	e, ok := b.entries[key]
	if !ok || expired(eventTime, e.lastUpdate) {
		return false, time.Time{}, 0
	}
	end := eventTime.Add(e.delay)
	return now.Before(end), end, e.delay
}

// inBackoffSinceUpdate reports whether now is within the delay counted from the last failure.
func (b *backoff) inBackoffSinceUpdate(key string, now time.Time) (bool, time.Time) {
	e, ok := b.entries[key]
	if !ok {
		return false, time.Time{}
	}
	end := e.lastUpdate.Add(e.delay)
	return now.Before(end), end
}

func (b *backoff) reset(key string) { delete(b.entries, key) }
