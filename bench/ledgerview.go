package bench

import (
	"context"
	"time"

	"github.com/transferd/transferd/ledger"
)

// LedgerFigures are a run's transfers as the ledger recorded them, whatever the bench saw of them:
// under a backlog the bench sees outcomes late or not at all within its wait, while the ledger
// records when each one ended.
type LedgerFigures struct {
	// Ended is how many of the accepted transfers had ended when the ledger was read; Completed
	// those that completed.
	Ended     int64 `json:"ended"`
	Completed int64 `json:"completed"`
	// InRun is how many ended while the run submitted (a fixed-rate run's length), and InRunPerSec
	// that over the length: what the stack sustained.
	InRun       int64   `json:"ended_in_run"`
	InRunPerSec float64 `json:"ended_in_run_per_sec"`
	// Latency is from each transfer's created_at (its acceptance) to its completed_at, in the
	// ledger's clock.
	Latency Latency `json:"created_to_completed"`
}

// LedgerView reads the ledger's figures of r's accepted transfers. Call it once they have ended
// (after a drain): one still in flight counts as not ended.
func LedgerView(ctx context.Context, store *ledger.Store, r Result) (*LedgerFigures, error) {
	ts, err := store.TransfersByID(ctx, r.accepted)
	if err != nil {
		return nil, err
	}
	f := &LedgerFigures{}
	end := r.began.Add(time.Duration(r.Duration * float64(time.Second)))
	var latencies []time.Duration
	for _, t := range ts {
		if !t.Status.Final() {
			continue
		}
		f.Ended++
		at := t.UpdatedAt
		if t.CompletedAt != nil {
			at = *t.CompletedAt
		}
		if r.Duration > 0 && !at.After(end) {
			f.InRun++
		}
		if string(t.Status) == "completed" {
			f.Completed++
			latencies = append(latencies, at.Sub(t.CreatedAt))
		}
	}
	if r.Duration > 0 {
		f.InRunPerSec = float64(f.InRun) / r.Duration
	}
	f.Latency = percentiles(latencies)
	return f, nil
}
