package eventbus

import (
	"math"
	"math/rand/v2"
	"time"
)

// Backoff is capped exponential backoff with jitter.
//
// Attempt n (from 0) waits a random time between half and all of min(Max, Initial * 2^n), so
// consecutive delays grow but never exceed Max, and clients that failed together do not retry
// in lockstep. A zero field takes the value of the default the Backoff is used with.
type Backoff struct {
	// Initial is the ceiling of the first delay.
	Initial time.Duration
	// Max is the ceiling of every delay.
	Max time.Duration
}

// DefaultReconnectBackoff is the [Runner]'s delay between reconnect attempts after a stream is
// lost: 50 ms doubling up to 5 s. It starts over once a stream delivers a message.
var DefaultReconnectBackoff = Backoff{Initial: 50 * time.Millisecond, Max: 5 * time.Second}

// DefaultRetryBackoff is the [Runner]'s retry_after for a notification whose handler failed,
// by delivery attempt: 1 s after the first, doubling up to 5 minutes. With the server's default
// of 10 attempts a notification becomes a dead letter after about 15 minutes of failures.
var DefaultRetryBackoff = Backoff{Initial: time.Second, Max: 5 * time.Minute}

// Ceiling returns the largest delay of attempt (from 0; negative counts as 0):
// min(Max, Initial * 2^attempt). Returns 0 when Initial or Max is not positive.
func (b Backoff) Ceiling(attempt int) time.Duration {
	if b.Initial <= 0 || b.Max <= 0 {
		return 0
	}
	d := b.Initial
	for range max(attempt, 0) {
		if d >= b.Max || d > math.MaxInt64/2 {
			break
		}
		d *= 2
	}
	return min(d, b.Max)
}

// Delay returns the delay of attempt for a jitter between 0 and 1 (clamped; NaN counts as 0):
// from half the [Backoff.Ceiling] at 0 to all of it at 1.
func (b Backoff) Delay(attempt int, jitter float64) time.Duration {
	ceiling := b.Ceiling(attempt)
	half := ceiling / 2
	switch {
	case math.IsNaN(jitter) || jitter < 0:
		jitter = 0
	case jitter > 1:
		jitter = 1
	}
	return min(half+time.Duration(float64(ceiling-half)*jitter), ceiling)
}

// next returns the delay of attempt with a random jitter.
func (b Backoff) next(attempt int) time.Duration {
	return b.Delay(attempt, rand.Float64())
}

// or returns b with its zero fields taken from def.
func (b Backoff) or(def Backoff) Backoff {
	if b.Initial == 0 {
		b.Initial = def.Initial
	}
	if b.Max == 0 {
		b.Max = def.Max
	}
	return b
}
