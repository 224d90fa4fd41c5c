package eventbus

import (
	"math"
	"testing"
	"time"
)

func TestBackoffCeilingsDoubleUpToMax(t *testing.T) {
	const ms = time.Millisecond
	b := DefaultReconnectBackoff
	want := []time.Duration{50 * ms, 100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 5000 * ms, 5000 * ms, 5000 * ms}
	for attempt, w := range want {
		if got := b.Ceiling(attempt); got != w {
			t.Errorf("Ceiling(%d) = %s, want %s", attempt, got, w)
		}
	}
	for _, attempt := range []int{-1, math.MinInt} {
		if got := b.Ceiling(attempt); got != 50*ms {
			t.Errorf("Ceiling(%d) = %s, want the first delay 50ms", attempt, got)
		}
	}
	for _, attempt := range []int{62, 63, 64, 1000, math.MaxInt} {
		if got := b.Ceiling(attempt); got != 5*time.Second {
			t.Errorf("Ceiling(%d) = %s, want max 5s", attempt, got)
		}
	}
}

func TestBackoffCeilingDoesNotOverflow(t *testing.T) {
	b := Backoff{Initial: time.Duration(math.MaxInt64 / 3), Max: time.Duration(math.MaxInt64)}
	for attempt := range 70 {
		if got := b.Ceiling(attempt); got <= 0 {
			t.Fatalf("Ceiling(%d) = %d, want positive", attempt, got)
		}
	}
}

func TestBackoffDelayStaysBetweenHalfAndFullCeiling(t *testing.T) {
	b := DefaultRetryBackoff
	for _, attempt := range []int{0, 1, 5, 8, 9, 31, 1000} {
		ceiling := b.Ceiling(attempt)
		cases := []struct {
			jitter float64
			want   time.Duration
		}{
			{0, ceiling / 2},
			{1, ceiling},
			{-3, ceiling / 2},
			{7, ceiling},
			{math.NaN(), ceiling / 2},
			{math.Inf(1), ceiling},
		}
		for _, tc := range cases {
			if got := b.Delay(attempt, tc.jitter); got != tc.want {
				t.Errorf("Delay(%d, %v) = %s, want %s", attempt, tc.jitter, got, tc.want)
			}
		}
		for range 100 {
			if d := b.next(attempt); d < ceiling/2 || d > ceiling {
				t.Fatalf("next(%d) = %s, want between %s and %s", attempt, d, ceiling/2, ceiling)
			}
		}
	}
}

func TestBackoffEdgeCases(t *testing.T) {
	cases := []struct {
		name    string
		b       Backoff
		attempt int
		want    time.Duration
	}{
		{"max below initial caps everything", Backoff{Initial: 10 * time.Second, Max: time.Second}, 0, time.Second},
		{"zero initial", Backoff{Max: time.Second}, 3, 0},
		{"zero max", Backoff{Initial: time.Second}, 3, 0},
		{"negative initial", Backoff{Initial: -time.Second, Max: time.Second}, 0, 0},
	}
	for _, tc := range cases {
		if got := tc.b.Ceiling(tc.attempt); got != tc.want {
			t.Errorf("%s: Ceiling(%d) = %s, want %s", tc.name, tc.attempt, got, tc.want)
		}
	}
}

func TestBackoffOrFillsZeroFields(t *testing.T) {
	def := Backoff{Initial: time.Second, Max: time.Minute}
	cases := []struct {
		in, want Backoff
	}{
		{Backoff{}, def},
		{Backoff{Initial: time.Millisecond}, Backoff{Initial: time.Millisecond, Max: time.Minute}},
		{Backoff{Max: time.Hour}, Backoff{Initial: time.Second, Max: time.Hour}},
		{Backoff{Initial: 2, Max: 3}, Backoff{Initial: 2, Max: 3}},
	}
	for _, tc := range cases {
		if got := tc.in.or(def); got != tc.want {
			t.Errorf("%+v.or(%+v) = %+v, want %+v", tc.in, def, got, tc.want)
		}
	}
}
