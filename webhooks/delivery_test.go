package webhooks_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"

	"github.com/transferd/transferd/webhooks"
)

// TestDeliveryWorkflow runs the delivery workflow on the SDK's test environment with its attempt
// mocked: a 2xx ends it at once; failures are tried again after doubling waits, each attempt told
// when the next comes, until the give-up time, when the last attempt is told there is none; a stop
// (endpoint disabled, event no longer visible) ends it without another attempt.
func TestDeliveryWorkflow(t *testing.T) {
	policy := webhooks.Policy{AttemptTimeout: time.Second, FirstBackoff: 10 * time.Second, MaxBackoff: time.Minute,
		GiveUpAfter: 5 * time.Minute, DisableAfter: time.Hour}
	tests := []struct {
		name         string
		results      []webhooks.AttemptResult // by attempt; past the end, a failure
		wantAttempts int
		wantOK       bool
		wantReason   string
	}{
		{"delivered at once", []webhooks.AttemptResult{{Delivered: true}}, 1, true, ""},
		{"delivered at the third attempt", []webhooks.AttemptResult{{}, {}, {Delivered: true}}, 3, true, ""},
		// Attempts at 0, 10, 30, 70, 130, 190 and 250 s, and a last one at the 5 minutes.
		{"never delivered", nil, 8, false, "no 2xx answer within 5m0s"},
		{"stopped", []webhooks.AttemptResult{{}, {Stop: true, Reason: "the endpoint is disabled"}}, 2, false, "the endpoint is disabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s testsuite.WorkflowTestSuite
			env := s.NewTestWorkflowEnvironment()
			var a *webhooks.Activities
			env.RegisterActivity(a)
			var inputs []webhooks.AttemptInput
			var times []time.Time
			env.OnActivity(a.Attempt, mock.Anything, mock.Anything).Return(
				func(_ context.Context, in webhooks.AttemptInput) (webhooks.AttemptResult, error) {
					inputs = append(inputs, in)
					times = append(times, env.Now())
					if in.Attempt <= len(tt.results) {
						return tt.results[in.Attempt-1], nil
					}
					return webhooks.AttemptResult{}, nil
				})
			env.ExecuteWorkflow(webhooks.DeliveryWorkflow, webhooks.DeliveryInput{DeliveryID: uuid.New(), Policy: policy})
			if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
				t.Fatalf("workflow: completed %v, %v", env.IsWorkflowCompleted(), env.GetWorkflowError())
			}
			var got webhooks.DeliveryResult
			if err := env.GetWorkflowResult(&got); err != nil {
				t.Fatal(err)
			}
			if got.Attempts != tt.wantAttempts || got.Delivered != tt.wantOK || got.Reason != tt.wantReason {
				t.Errorf("result: got %+v, want %d attempts, delivered %v, reason %q", got, tt.wantAttempts, tt.wantOK, tt.wantReason)
			}
			if tt.name == "never delivered" {
				if got := times[len(times)-1].Sub(times[0]); got != policy.GiveUpAfter {
					t.Errorf("the last attempt came %v after the first, want %v", got, policy.GiveUpAfter)
				}
			}
			for i, in := range inputs {
				if in.Attempt != i+1 || in.DisableAfter != time.Hour {
					t.Errorf("attempt %d: input %+v", i+1, in)
				}
				last := i == len(inputs)-1
				if tt.name == "never delivered" && last != (in.NextRetryAt == nil) {
					t.Errorf("attempt %d: next retry %v; only the last one has none", i+1, in.NextRetryAt)
				}
				if i > 0 && (tt.name != "never delivered" || !last) {
					want := min(10*time.Second<<(i-1), time.Minute)
					if gap := times[i].Sub(times[i-1]); gap < want || gap > want+time.Second {
						t.Errorf("wait before attempt %d: %v, want %v", i+1, gap, want)
					}
				}
			}
		})
	}
}

// TestDeliveryWorkflowGoesOn: a run started over a delivery whose workflow closed without ending it
// numbers its attempts on from FirstAttempt and gives up at GiveUpAt, the first run's deadline; a
// GiveUpAt already past leaves one last attempt.
func TestDeliveryWorkflowGoesOn(t *testing.T) {
	policy := webhooks.Policy{AttemptTimeout: time.Second, FirstBackoff: 10 * time.Second, MaxBackoff: time.Minute,
		GiveUpAfter: time.Hour, DisableAfter: time.Hour}
	for _, tt := range []struct {
		name      string
		giveUpIn  time.Duration
		wantFirst int
		wantLast  int
	}{
		// Attempts 4 to 8 at 0, 10, 30, 70 s and a last one at the 100 s deadline.
		{"before its deadline", 100 * time.Second, 4, 8},
		{"past its deadline", -time.Minute, 4, 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var s testsuite.WorkflowTestSuite
			env := s.NewTestWorkflowEnvironment()
			var a *webhooks.Activities
			env.RegisterActivity(a)
			var inputs []webhooks.AttemptInput
			env.OnActivity(a.Attempt, mock.Anything, mock.Anything).Return(
				func(_ context.Context, in webhooks.AttemptInput) (webhooks.AttemptResult, error) {
					inputs = append(inputs, in)
					return webhooks.AttemptResult{}, nil
				})
			env.ExecuteWorkflow(webhooks.DeliveryWorkflow, webhooks.DeliveryInput{DeliveryID: uuid.New(), Policy: policy,
				FirstAttempt: 4, GiveUpAt: env.Now().Add(tt.giveUpIn)})
			var got webhooks.DeliveryResult
			if err := env.GetWorkflowResult(&got); err != nil {
				t.Fatal(err)
			}
			if got.Delivered || got.Attempts != tt.wantLast {
				t.Errorf("result %+v, want undelivered after attempt %d", got, tt.wantLast)
			}
			if len(inputs) != tt.wantLast-tt.wantFirst+1 {
				t.Fatalf("%d attempts, want %d", len(inputs), tt.wantLast-tt.wantFirst+1)
			}
			for i, in := range inputs {
				if in.Attempt != tt.wantFirst+i || (in.NextRetryAt == nil) != (i == len(inputs)-1) {
					t.Errorf("attempt %d: input %+v", i, in)
				}
			}
		})
	}
}

// TestDeliveryWorkflowWaitsFromTheAttemptsEnd: each attempt is told its wait and the give-up time,
// and the workflow sleeps until the retry time the attempt answers (its end plus the wait), not
// the earliest one it was told; an attempt that answers none (an earlier release's) is retried at
// that earliest time; an answer further than the wait by the workflow's clock (a host clock ahead)
// is cut to it.
func TestDeliveryWorkflowWaitsFromTheAttemptsEnd(t *testing.T) {
	policy := webhooks.Policy{AttemptTimeout: time.Second, FirstBackoff: 10 * time.Second, MaxBackoff: time.Minute,
		GiveUpAfter: 5 * time.Minute, DisableAfter: time.Hour}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	var a *webhooks.Activities
	env.RegisterActivity(a)
	var inputs []webhooks.AttemptInput
	var times []time.Time
	record := func(in webhooks.AttemptInput) {
		inputs = append(inputs, in)
		times = append(times, env.Now())
	}
	attempt := func(n int) any {
		return mock.MatchedBy(func(in webhooks.AttemptInput) bool { return in.Attempt == n })
	}
	// The first attempt takes 7 s (on the workflow's clock), and answers its retry 10 s after its end.
	env.OnActivity(a.Attempt, mock.Anything, attempt(1)).Return(
		func(_ context.Context, in webhooks.AttemptInput) (webhooks.AttemptResult, error) {
			record(in)
			later := in.NextRetryAt.Add(7 * time.Second)
			return webhooks.AttemptResult{NextRetryAt: &later}, nil
		}).After(7 * time.Second)
	// An earlier release's attempt answers none.
	env.OnActivity(a.Attempt, mock.Anything, attempt(2)).Return(
		func(_ context.Context, in webhooks.AttemptInput) (webhooks.AttemptResult, error) {
			record(in)
			return webhooks.AttemptResult{}, nil
		})
	// A host whose clock runs an hour ahead.
	env.OnActivity(a.Attempt, mock.Anything, attempt(3)).Return(
		func(_ context.Context, in webhooks.AttemptInput) (webhooks.AttemptResult, error) {
			record(in)
			ahead := in.NextRetryAt.Add(time.Hour)
			return webhooks.AttemptResult{NextRetryAt: &ahead}, nil
		})
	env.OnActivity(a.Attempt, mock.Anything, attempt(4)).Return(
		func(_ context.Context, in webhooks.AttemptInput) (webhooks.AttemptResult, error) {
			record(in)
			return webhooks.AttemptResult{Delivered: true}, nil
		})
	start := env.Now()
	env.ExecuteWorkflow(webhooks.DeliveryWorkflow, webhooks.DeliveryInput{DeliveryID: uuid.New(), Policy: policy})
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("workflow: completed %v, %v", env.IsWorkflowCompleted(), env.GetWorkflowError())
	}
	if len(times) != 4 {
		t.Fatalf("%d attempts, want 4", len(times))
	}
	// The mock runs the first attempt's function when its 7 s have passed.
	if gap := times[1].Sub(start); gap < 17*time.Second || gap > 18*time.Second {
		t.Errorf("from the first attempt's start to the second's: %v, want its 7 s and the 10 s wait after them", gap)
	}
	if gap := times[2].Sub(times[1]); gap < 20*time.Second || gap > 21*time.Second {
		t.Errorf("wait after the second attempt: %v, want its earliest retry, 20 s", gap)
	}
	if gap := times[3].Sub(times[2]); gap < 40*time.Second || gap > 41*time.Second {
		t.Errorf("wait after the third attempt: %v, want its 40 s by the workflow's clock, not the hour its host's clock added", gap)
	}
	for i, in := range inputs {
		want := min(10*time.Second<<i, time.Minute)
		if in.Wait != want || !in.GiveUpAt.Equal(start.Add(policy.GiveUpAfter)) {
			t.Errorf("attempt %d: wait %v, give up at %v; want %v and %v", i+1, in.Wait, in.GiveUpAt, want, start.Add(policy.GiveUpAfter))
		}
	}
}
