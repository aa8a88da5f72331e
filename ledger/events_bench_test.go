package ledger_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

// BenchmarkSagaWithEvents measures one transfer's ledger work (create, reserve, debit, credit) as
// the saga does it, with the events trigger of migration 0011 recording its two events: with no
// webhook endpoint (and, as the baseline, with the trigger off), with the payer's endpoint subscribed to every event (2 deliveries enqueued),
// and with 16 endpoints of the payer (32). The difference between the cases is what enqueuing
// deliveries costs a transfer; the events themselves are in every case. Run with
// `go test -run XXX -bench SagaWithEvents ./ledger`; the README's Performance section has the figures.
func BenchmarkSagaWithEvents(b *testing.B) {
	for _, tc := range []struct {
		name      string
		endpoints int
		noEvents  bool
	}{{"events off", 0, true}, {"no endpoint", 0, false}, {"1 endpoint", 1, false}, {"16 endpoints", 16, false}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			s, db := newStoreDB(b)
			if tc.noEvents {
				// The baseline: the ledger as it was before migration 0011.
				mustExec(b, db, `ALTER TABLE transfers DISABLE TRIGGER transfers_events`)
			}
			u := newUser(b, s)
			from, to := newOwnedAccount(b, s, u.ID, "USD"), newAccount(b, s, "USD")
			fund(b, s, from, 1<<40)
			for range tc.endpoints {
				if _, _, err := s.CreateEndpoint(ctx, transfer.NewEndpoint{ID: uuid.New(), UserID: u.ID, URL: "https://example.com/h",
					EventTypes: []string{"*"}, Secret: bytes.Repeat([]byte{1}, 32)}); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				runSaga(b, s, createTransfer(b, s, transfer.KindTransfer, from.ID, to.ID, 1, "USD"))
			}
		})
	}
}
