package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

// FuzzTransferRequest feeds arbitrary bodies and Idempotency-Keys to the transfer request decoder and
// validator: nothing panics, every rejection is a field error or an unsupported currency, and
// anything accepted is a valid transfer whose amount is exactly the JSON integer that was sent.
func FuzzTransferRequest(f *testing.F) {
	from, to := "0b6f2c2e-8f3a-4c1d-9e2b-5a7d1c3e9f10", "7c1e4b2a-3d5f-4a6b-8c9d-0e1f2a3b4c5d"
	valid := `{"from_account_id":"` + from + `","to_account_id":"` + to + `","amount":1250,"currency":"usd"}`
	for _, seed := range []struct{ body, key string }{
		{valid, ""},
		{valid, "order-42"},
		{`{"id":"` + uuid.NewString() + `","from_account_id":"` + from + `","to_account_id":"` + to + `","amount":9007199254740991,"currency":"JPY","description":"d","labels":{"k":"v"}}`, ""},
		{strings.Replace(valid, "1250", "1.5", 1), ""},
		{strings.Replace(valid, "1250", `"100"`, 1), ""},
		{strings.Replace(valid, "1250", "1e3", 1), ""},
		{strings.Replace(valid, "1250", "0", 1), ""},
		{strings.Replace(valid, "1250", "-5", 1), ""},
		{strings.Replace(valid, "1250", "9007199254740992", 1), ""},
		{strings.Replace(valid, "1250", "01", 1), ""},
		{strings.Replace(valid, "1250", "null", 1), ""},
		{strings.Replace(valid, "1250", "true", 1), ""},
		{strings.Replace(valid, "usd", "XXX", 1), ""},
		{strings.Replace(valid, "usd", "U$D", 1), ""},
		{valid + "{}", ""},
		{valid[:len(valid)-1] + `,"extra":1}`, ""},
		{`{"amount":1,"amount":2}`, ""},
		{"\xff\xfe", ""},
		{`[]`, ""}, {`null`, ""}, {``, ""}, {`{`, ""},
		{strings.Repeat("[", 10000), ""},
		{`{"labels":{"":"x"}}`, ""},
		{valid, strings.Repeat("k", 256)},
		// Holds and schedules.
		{valid[:len(valid)-1] + `,"capture_method":"manual","hold_expires_at":"2026-12-07T12:00:00Z"}`, ""},
		{valid[:len(valid)-1] + `,"capture_method":"manual","scheduled_for":"2026-12-01T09:00:00.123456789+01:00","hold_expires_at":"2026-12-01T09:00:00Z"}`, ""},
		{valid[:len(valid)-1] + `,"hold_expires_at":"2026-12-07T12:00:00Z"}`, ""},
		{valid[:len(valid)-1] + `,"capture_method":"MANUAL"}`, ""},
		{valid[:len(valid)-1] + `,"scheduled_for":"tomorrow"}`, ""},
		{valid[:len(valid)-1] + `,"scheduled_for":"0000-01-01T00:00:00Z"}`, ""},
		{valid[:len(valid)-1] + `,"scheduled_for":123}`, ""},
	} {
		f.Add(seed.body, seed.key)
	}
	who := caller{ID: uuid.MustParse("11111111-2222-4333-8444-555555555555"), Role: transfer.RoleUser}
	f.Fuzz(func(t *testing.T, body, key string) {
		var req createTransferRequest
		if err := strictUnmarshal([]byte(body), &req); err != nil {
			return
		}
		var keys []string
		if key != "" {
			keys = []string{key}
		}
		r, err := parseTransferRequest(req, who, keys)
		if err != nil {
			var fe fieldErrors
			if !errors.As(err, &fe) && !transfer.IsCode(err, transfer.CodeUnsupportedCurrency) {
				t.Fatalf("rejection is neither field errors nor unsupported_currency: %v", err)
			}
			return
		}
		if _, err := transfer.NewAmount(int64(r.Amount)); err != nil {
			t.Fatalf("accepted amount %d: %v", r.Amount, err)
		}
		if cur, err := transfer.ParseCurrency(string(r.Currency)); err != nil || cur != r.Currency {
			t.Fatalf("accepted currency %q: %v", r.Currency, err)
		}
		if r.FromAccountID == uuid.Nil || r.ToAccountID == uuid.Nil || r.Kind != transfer.KindTransfer || r.InitiatedBy != who.ID {
			t.Fatalf("accepted request has missing parts: %+v", r)
		}
		if key != "" && (r.IdempotencyKey != key || r.ID != uuid.Nil) {
			t.Fatalf("accepted Idempotency-Key %q as id %s and key %q", key, r.ID, r.IdempotencyKey)
		}
		if !utf8.ValidString(r.Description) || utf8.RuneCountInString(r.Description) > maxDescription || strings.ContainsRune(r.Description, 0) {
			t.Fatalf("accepted description of %d bytes", len(r.Description))
		}
		if len(r.Labels) > maxLabels {
			t.Fatalf("accepted %d labels", len(r.Labels))
		}
		// A hold's expiry only on a manual transfer and after its schedule; times in UTC, to the
		// microsecond, as PostgreSQL keeps them.
		if r.HoldExpiresAt != nil && (!r.Manual() || (r.ScheduledFor != nil && !r.HoldExpiresAt.After(*r.ScheduledFor))) {
			t.Fatalf("accepted hold_expires_at %v with capture method %q and schedule %v", r.HoldExpiresAt, r.CaptureMethod, r.ScheduledFor)
		}
		for _, at := range []*time.Time{r.HoldExpiresAt, r.ScheduledFor} {
			if at != nil && (at.Location() != time.UTC || at.Nanosecond()%1000 != 0) {
				t.Fatalf("accepted time %v is not UTC to the microsecond", at)
			}
		}
		if r.CaptureMethod != "" && r.CaptureMethod != transfer.CaptureManual {
			t.Fatalf("accepted capture method %q", r.CaptureMethod)
		}
		// The amount is exactly the integer literal the client sent.
		dec := json.NewDecoder(bytes.NewReader([]byte(body)))
		dec.UseNumber()
		var raw map[string]any
		if err := dec.Decode(&raw); err != nil {
			t.Fatalf("accepted body does not decode generically: %v", err)
		}
		n, ok := raw["amount"].(json.Number)
		if !ok {
			t.Fatalf("accepted amount is not a JSON number: %v", raw["amount"])
		}
		if v, err := strconv.ParseInt(n.String(), 10, 64); err != nil || v != int64(r.Amount) {
			t.Fatalf("accepted amount %d differs from the literal %s", r.Amount, n)
		}
	})
}
