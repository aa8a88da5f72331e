package activities_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/transferd/transferd/activities"
	"github.com/transferd/transferd/transfer"
)

// permanentErr is an error that retrying cannot fix, as ledger.StepError says of a constraint violation.
type permanentErr struct{}

func (permanentErr) Error() string   { return "check violation" }
func (permanentErr) Permanent() bool { return true }

// failingStore fails every step with err and records what it is asked to record.
type failingStore struct {
	err      error
	mu       sync.Mutex
	recorded []transfer.Step
}

func (s *failingStore) Step(context.Context, uuid.UUID, transfer.Step, transfer.Outcome) (transfer.Outcome, error) {
	return transfer.Outcome{}, s.err
}

func (s *failingStore) RecordStepFailure(_ context.Context, _ uuid.UUID, step transfer.Step, _ error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recorded = append(s.recorded, step)
	return nil
}

// counters is a client.MetricsHandler that counts counter increments by name and tags.
type counters struct {
	mu   *sync.Mutex
	tags map[string]string
	got  map[string]int64
}

func newCounters() *counters { return &counters{mu: &sync.Mutex{}, got: map[string]int64{}} }

func (c *counters) WithTags(tags map[string]string) client.MetricsHandler {
	merged := map[string]string{}
	for k, v := range c.tags {
		merged[k] = v
	}
	for k, v := range tags {
		merged[k] = v
	}
	return &counters{mu: c.mu, tags: merged, got: c.got}
}

func (c *counters) Counter(name string) client.MetricsCounter {
	key := name + "{step=" + c.tags["step"] + ",kind=" + c.tags["kind"] + "}"
	return counterFunc(func(n int64) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.got[key] += n
	})
}

func (c *counters) Gauge(string) client.MetricsGauge { return client.MetricsNopHandler.Gauge("") }
func (c *counters) Timer(string) client.MetricsTimer { return client.MetricsNopHandler.Timer("") }

type counterFunc func(int64)

func (f counterFunc) Inc(n int64) { f(n) }

// TestStepErrorsAreCountedAndRecorded runs a step whose store fails: a permanent error and a
// transient one are each counted by kind and recorded, and stay retryable (the step is retried,
// for an operator may fix the data); a business refusal is neither counted nor recorded.
func TestStepErrorsAreCountedAndRecorded(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		wantCount string
		retryable bool
	}{
		{"permanent", permanentErr{}, "transferd_step_errors_total{step=debit,kind=permanent}", true},
		{"transient", errors.New("connection reset"), "transferd_step_errors_total{step=debit,kind=transient}", true},
		{"business", transfer.Errorf(transfer.CodeAccountInactive, "frozen"), "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var suite testsuite.WorkflowTestSuite
			m := newCounters()
			suite.SetMetricsHandler(m)
			env := suite.NewTestActivityEnvironment()
			store := &failingStore{err: tc.err}
			env.RegisterActivity(&activities.Activities{Store: store})
			env.SetTestTimeout(5 * time.Second)
			var a *activities.Activities
			_, err := env.ExecuteActivity(a.Debit, activities.DebitInput{TransferID: uuid.New()})
			if err == nil {
				t.Fatal("the step succeeded; want its error")
			}
			var app *temporal.ApplicationError
			if got := !(errors.As(err, &app) && app.NonRetryable()); got != tc.retryable {
				t.Errorf("retryable: got %v, want %v (%v)", got, tc.retryable, err)
			}
			want := map[string]int64{}
			var wantRecorded []transfer.Step
			if tc.wantCount != "" {
				want[tc.wantCount] = 1
				wantRecorded = []transfer.Step{transfer.StepDebit}
			}
			if len(m.got) != len(want) || m.got[tc.wantCount] != want[tc.wantCount] {
				t.Errorf("counters: got %v, want %v", m.got, want)
			}
			if len(store.recorded) != len(wantRecorded) {
				t.Errorf("recorded failures: got %v, want %v", store.recorded, wantRecorded)
			}
		})
	}
}
