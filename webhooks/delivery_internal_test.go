package webhooks

import (
	"testing"
	"time"
)

// TestNextRetry: the retry after an attempt comes its wait after the attempt's end, but never past
// the give-up time nor before the earliest time the workflow named; without a wait (an earlier
// release's workflow), at that earliest time.
func TestNextRetry(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	earliest := t0.Add(10 * time.Second)
	tests := []struct {
		name string
		in   AttemptInput
		end  time.Time
		want time.Time
	}{
		{"quick failure", AttemptInput{NextRetryAt: &earliest, Wait: 10 * time.Second, GiveUpAt: t0.Add(time.Hour)}, t0.Add(time.Second), t0.Add(11 * time.Second)},
		{"timed out", AttemptInput{NextRetryAt: &earliest, Wait: 10 * time.Second, GiveUpAt: t0.Add(time.Hour)}, t0.Add(10 * time.Second), t0.Add(20 * time.Second)},
		{"capped at the give-up time", AttemptInput{NextRetryAt: &earliest, Wait: 10 * time.Second, GiveUpAt: t0.Add(15 * time.Second)}, t0.Add(10 * time.Second), t0.Add(15 * time.Second)},
		{"never before the earliest", AttemptInput{NextRetryAt: &earliest, Wait: 10 * time.Second, GiveUpAt: t0.Add(5 * time.Second)}, t0.Add(10 * time.Second), earliest},
		{"an earlier release's workflow", AttemptInput{NextRetryAt: &earliest}, t0.Add(10 * time.Second), earliest},
	}
	for _, tt := range tests {
		if got := tt.in.nextRetry(tt.end); !got.Equal(tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got.Sub(t0), tt.want.Sub(t0))
		}
	}
}
