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
// webhook endpoint, with the payer's endpoint subscribed to every event (2 deliveries enqueued),
// and with 16 endpoints of the payer (32). The difference between the cases is what enqueuing
// deliveries costs a transfer; the events themselves are in every case. Run with
// `go test -run XXX -bench SagaWithEvents ./ledger`; the README's Performance section has the figures.
func BenchmarkSagaWithEvents(b *testing.B) {
	for _, tc := range []struct {
		name      string
		endpoints int
	}{{"no endpoint", 0}, {"1 endpoint", 1}, {"16 endpoints", 16}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			s := newStore(b)
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
