package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/transferd/transferd/internal/sagatest"
	"github.com/transferd/transferd/server"
)

// leakMarkers are strings that no error body may contain: they would reveal SQL, the ORM, a stack
// trace or an internal host.
var leakMarkers = []string{"SQLSTATE", "gorm", "pq:", "goroutine", "127.0.0.1"}

// expectProblem checks that r is an RFC 9457 problem with the status and code, served as
// application/problem+json, and that its body leaks nothing internal.
func expectProblem(t *testing.T, r resp, status int, code string) server.Problem {
	t.Helper()
	p := r.problem(t, status, code)
	checkNoLeak(t, r.body)
	return p
}

// checkNoLeak fails the test if an error body names SQL, the ORM, a stack trace or a host.
func checkNoLeak(t *testing.T, body []byte) {
	t.Helper()
	for _, m := range leakMarkers {
		if bytes.Contains(body, []byte(m)) {
			t.Errorf("error body leaks %q: %s", m, body)
		}
	}
}

// fieldNames lists the fields of a problem's errors.
func fieldNames(p server.Problem) []string {
	var out []string
	for _, fe := range p.Errors {
		out = append(out, fe.Field)
	}
	return out
}

// expectFields checks that the problem lists an error for each of the fields.
func expectFields(t *testing.T, p server.Problem, fields ...string) {
	t.Helper()
	got := fieldNames(p)
	for _, f := range fields {
		if !slices.Contains(got, f) {
			t.Errorf("problem errors: got fields %q, want one for %q", got, f)
		}
	}
}

// normalized renders a problem without its instance and with the given ids replaced, so that the
// answers for two different resources can be compared for anything that tells them apart.
func normalized(p server.Problem, ids ...string) string {
	p.Instance = ""
	s := fmt.Sprintf("%+v", p)
	for _, id := range ids {
		s = strings.ReplaceAll(s, id, "<id>")
	}
	return s
}

// page is one page of a list as the API answers it.
type page struct {
	Data       []json.RawMessage `json:"data"`
	NextCursor *string           `json:"next_cursor"`
}

// getPage reads one page of a list and fails the test unless it is a 200.
func (a *api) getPage(t *testing.T, token, path string) page {
	t.Helper()
	r := a.do("GET", path, token, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: got %d %s, want 200", path, r.status, r.body)
	}
	var p page
	r.json(t, &p)
	if p.Data == nil {
		t.Fatalf("GET %s: data is %s, want an array", path, r.body)
	}
	return p
}

// withQuery appends a query parameter to a path that may already have a query.
func withQuery(path, kv string) string {
	if strings.Contains(path, "?") {
		return path + "&" + kv
	}
	return path + "?" + kv
}

// listAll walks every page of a list, 100 at a time.
func (a *api) listAll(t *testing.T, token, path string) []json.RawMessage {
	t.Helper()
	var all []json.RawMessage
	next := withQuery(path, "limit=100")
	for range 1000 {
		p := a.getPage(t, token, next)
		all = append(all, p.Data...)
		if p.NextCursor == nil {
			return all
		}
		next = withQuery(path, "limit=100&cursor="+*p.NextCursor)
	}
	t.Fatalf("GET %s: more than 1000 pages", path)
	return nil
}

// item is what the tests read of any listed object.
type item struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Kind   string `json:"kind"`
}

// itemsOf decodes the id, status and kind of each listed object.
func itemsOf(t *testing.T, raw []json.RawMessage) []item {
	t.Helper()
	out := make([]item, 0, len(raw))
	for _, r := range raw {
		var it item
		if err := json.Unmarshal(r, &it); err != nil {
			t.Fatalf("decode %s: %v", r, err)
		}
		out = append(out, it)
	}
	return out
}

// idsOf lists the ids of listed objects, in order.
func idsOf(t *testing.T, raw []json.RawMessage) []string {
	t.Helper()
	var out []string
	for _, it := range itemsOf(t, raw) {
		out = append(out, it.ID)
	}
	return out
}

// ledgerState renders what a rejected request must not change: the accounts' balances, reserves
// and statuses, and every transfer that exists, with its status.
func (a *api) ledgerState(t *testing.T, accounts ...string) string {
	t.Helper()
	var b strings.Builder
	for _, id := range accounts {
		acct := a.getAccount(a.admin, id)
		fmt.Fprintf(&b, "account %s balance=%d reserved=%d available=%d status=%s\n", id, acct.Balance, acct.Reserved, acct.Available, acct.Status)
	}
	for _, it := range itemsOf(t, a.listAll(t, a.admin, "/v1/transfers")) {
		fmt.Fprintf(&b, "transfer %s %s\n", it.ID, it.Status)
	}
	return b.String()
}

// systemAccount returns the id of the currency's system account, as the admin lists it.
func (a *api) systemAccount(t *testing.T, currency string) string {
	t.Helper()
	for _, it := range itemsOf(t, a.listAll(t, a.admin, "/v1/accounts?currency="+currency)) {
		if it.Kind == "system" {
			return it.ID
		}
	}
	t.Fatalf("no system account for %s in the admin's list", currency)
	return ""
}

// entryBody is a journal entry as the API answers it.
type entryBody struct {
	ID           string `json:"id"`
	AccountID    string `json:"account_id"`
	TransferID   string `json:"transfer_id"`
	Kind         string `json:"kind"`
	Amount       int64  `json:"amount"`
	BalanceAfter int64  `json:"balance_after"`
	Seq          int64  `json:"seq"`
}

// entries returns an account's whole journal, newest first.
func (a *api) entries(t *testing.T, token, account string) []entryBody {
	t.Helper()
	var out []entryBody
	for _, raw := range a.listAll(t, token, "/v1/accounts/"+account+"/entries") {
		var e entryBody
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatalf("decode entry %s: %v", raw, err)
		}
		out = append(out, e)
	}
	return out
}

func TestTransferRequestErrors(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	alice, _ := a.user()
	bob, _ := a.user()
	carol, _ := a.user()
	from := a.account(alice, "USD")
	to := a.account(bob, "USD")
	bobOther := a.account(bob, "USD")
	carolEUR := a.account(carol, "EUR")
	a.deposit(from, 10_000, "USD")
	a.deposit(bobOther, 500, "USD")
	system := a.systemAccount(t, "USD")
	unknown := uuid.NewString()

	// valid returns a valid transfer body from alice to bob with the given fields changed; a nil
	// value removes the field.
	valid := func(changes map[string]any) map[string]any {
		b := map[string]any{"from_account_id": from, "to_account_id": to, "amount": 100, "currency": "USD"}
		for k, v := range changes {
			if v == nil {
				delete(b, k)
				continue
			}
			b[k] = v
		}
		return b
	}
	raw := func(amount string) string {
		return fmt.Sprintf(`{"from_account_id":%q,"to_account_id":%q,"amount":%s,"currency":"USD"}`, from, to, amount)
	}
	validJSON := raw("100")

	tests := []struct {
		name    string
		token   string // alice's unless set
		body    any    // sent as is when a string, else as JSON
		headers []string
		query   string // "?wait=30s" unless set, so that a wrongly accepted transfer ends before the next case
		status  int
		code    string
		fields  []string
	}{
		{name: "malformed JSON", body: `{"from_account_id": "` + from + `", "amount": `, status: 400, code: "malformed_json"},
		{name: "syntax error", body: `{"amount": 100,}`, status: 400, code: "malformed_json"},
		{name: "an array instead of an object", body: `[` + validJSON + `]`, status: 400, code: "malformed_json"},
		{name: "unknown field", body: valid(map[string]any{"colour": "red"}), status: 400, code: "malformed_json"},
		{name: "unknown field in another case than a known one", body: fmt.Sprintf(`{"from_account_id":%q,"to_account_id":%q,"AMOUNT":100,"currency":"USD"}`, from, to), status: 400, code: "malformed_json"},
		{name: "wrong JSON type for a string field", body: valid(map[string]any{"currency": 840}), status: 400, code: "malformed_json"},
		{name: "trailing object after the body", body: validJSON + ` {}`, status: 400, code: "malformed_json"},
		{name: "trailing garbage after the body", body: validJSON + `x`, status: 400, code: "malformed_json"},
		{name: "two objects", body: validJSON + validJSON, status: 400, code: "malformed_json"},
		{name: "empty body", body: "", status: 400, code: "malformed_json"},
		{name: "blank body", body: " \n\t ", status: 400, code: "malformed_json"},
		{name: "text/plain content type", body: validJSON, headers: []string{"Content-Type", "text/plain"}, status: 415, code: "unsupported_media_type"},
		{name: "form content type", body: validJSON, headers: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: 415, code: "unsupported_media_type"},
		{name: "unparsable content type", body: validJSON, headers: []string{"Content-Type", "json;;;"}, status: 415, code: "unsupported_media_type"},
		{name: "body over 64 KiB", body: valid(map[string]any{"description": strings.Repeat("a", 65<<10)}), status: 413, code: "payload_too_large"},
		{name: "invalid UTF-8", body: fmt.Sprintf(`{"from_account_id":%q,"to_account_id":%q,"amount":100,"currency":"USD","description":"caf`+"\xe9\xff"+`"}`, from, to), status: 400, code: "malformed_json"},

		{name: "amount 1.5", body: raw("1.5"), status: 400, code: "invalid_request", fields: []string{"amount"}},
		{name: "amount 1.0", body: raw("1.0"), status: 400, code: "invalid_request", fields: []string{"amount"}},
		{name: `amount "100"`, body: raw(`"100"`), status: 400, code: "invalid_request", fields: []string{"amount"}},
		{name: "amount 1e3", body: raw("1e3"), status: 400, code: "invalid_request", fields: []string{"amount"}},
		{name: "amount 1E3", body: raw("1E3"), status: 400, code: "invalid_request", fields: []string{"amount"}},
		{name: "amount 0", body: raw("0"), status: 400, code: "invalid_request", fields: []string{"amount"}},
		{name: "amount -0", body: raw("-0"), status: 400, code: "invalid_request", fields: []string{"amount"}},
		{name: "amount -5", body: raw("-5"), status: 400, code: "invalid_request", fields: []string{"amount"}},
		{name: "amount 2^53", body: raw("9007199254740992"), status: 400, code: "invalid_request", fields: []string{"amount"}},
		{name: "amount beyond int64", body: raw("99999999999999999999999"), status: 400, code: "invalid_request", fields: []string{"amount"}},
		{name: "amount true", body: raw("true"), status: 400, code: "invalid_request", fields: []string{"amount"}},
		{name: "amount null", body: raw("null"), status: 400, code: "invalid_request", fields: []string{"amount"}},
		{name: "amount object", body: raw(`{"value":100}`), status: 400, code: "invalid_request", fields: []string{"amount"}},

		{name: "empty object", body: `{}`, status: 400, code: "invalid_request", fields: []string{"from_account_id", "to_account_id", "amount", "currency"}},
		{name: "missing from_account_id", body: valid(map[string]any{"from_account_id": nil}), status: 400, code: "invalid_request", fields: []string{"from_account_id"}},
		{name: "missing to_account_id", body: valid(map[string]any{"to_account_id": nil}), status: 400, code: "invalid_request", fields: []string{"to_account_id"}},
		{name: "missing amount", body: valid(map[string]any{"amount": nil}), status: 400, code: "invalid_request", fields: []string{"amount"}},
		{name: "missing currency", body: valid(map[string]any{"currency": nil}), status: 400, code: "invalid_request", fields: []string{"currency"}},
		{name: "from_account_id not a UUID", body: valid(map[string]any{"from_account_id": "acct-1"}), status: 400, code: "invalid_request", fields: []string{"from_account_id"}},
		{name: "to_account_id in braces", body: valid(map[string]any{"to_account_id": "{" + to + "}"}), status: 400, code: "invalid_request", fields: []string{"to_account_id"}},
		{name: "to_account_id without dashes", body: valid(map[string]any{"to_account_id": strings.ReplaceAll(to, "-", "")}), status: 400, code: "invalid_request", fields: []string{"to_account_id"}},
		{name: "to_account_id as a urn", body: valid(map[string]any{"to_account_id": "urn:uuid:" + to}), status: 400, code: "invalid_request", fields: []string{"to_account_id"}},
		{name: "nil UUID", body: valid(map[string]any{"from_account_id": uuid.Nil.String()}), status: 400, code: "invalid_request", fields: []string{"from_account_id"}},
		{name: "id not a UUID", body: valid(map[string]any{"id": "123"}), status: 400, code: "invalid_request", fields: []string{"id"}},
		{name: "currency of two letters", body: valid(map[string]any{"currency": "US"}), status: 400, code: "invalid_request", fields: []string{"currency"}},
		{name: "currency with a digit", body: valid(map[string]any{"currency": "U5D"}), status: 400, code: "invalid_request", fields: []string{"currency"}},
		{name: "labels over 32 pairs", body: valid(map[string]any{"labels": manyLabels(33)}), status: 400, code: "invalid_request"},
		{name: "description with NUL", body: valid(map[string]any{"description": "a\x00b"}), status: 400, code: "invalid_request", fields: []string{"description"}},
		{name: "id and Idempotency-Key together", body: valid(map[string]any{"id": uuid.NewString()}), headers: []string{"Idempotency-Key", "order-1"}, status: 400, code: "invalid_request", fields: []string{"id"}},
		{name: "empty Idempotency-Key", body: valid(nil), headers: []string{"Idempotency-Key", ""}, status: 400, code: "invalid_request", fields: []string{"Idempotency-Key"}},
		{name: "Idempotency-Key of 256 characters", body: valid(nil), headers: []string{"Idempotency-Key", strings.Repeat("k", 256)}, status: 400, code: "invalid_request", fields: []string{"Idempotency-Key"}},
		{name: "wait over 30s", body: valid(nil), query: "?wait=31s", status: 400, code: "invalid_request", fields: []string{"wait"}},
		{name: "wait not a duration", body: valid(nil), query: "?wait=abc", status: 400, code: "invalid_request", fields: []string{"wait"}},
		{name: "wait without a unit", body: valid(nil), query: "?wait=5", status: 400, code: "invalid_request", fields: []string{"wait"}},
		{name: "negative wait", body: valid(nil), query: "?wait=-1s", status: 400, code: "invalid_request", fields: []string{"wait"}},

		{name: "unknown source account", body: valid(map[string]any{"from_account_id": unknown}), status: 422, code: "account_not_found"},
		{name: "unknown destination account", body: valid(map[string]any{"to_account_id": unknown}), status: 422, code: "account_not_found"},
		{name: "another user's source account", body: valid(map[string]any{"from_account_id": bobOther}), status: 422, code: "account_not_found"},
		{name: "same account on both sides", body: valid(map[string]any{"to_account_id": from}), status: 422, code: "same_account"},
		{name: "currency differing from both accounts'", body: valid(map[string]any{"currency": "EUR"}), status: 422, code: "currency_mismatch"},
		{name: "currency differing from the destination's", body: valid(map[string]any{"to_account_id": carolEUR}), status: 422, code: "currency_mismatch"},
		{name: "unsupported currency", body: valid(map[string]any{"currency": "XXX"}), status: 422, code: "unsupported_currency"},
		{name: "unsupported currency in lower case", body: valid(map[string]any{"currency": "xts"}), status: 422, code: "unsupported_currency"},
		{name: "system account as destination", body: valid(map[string]any{"to_account_id": system}), status: 422, code: "account_not_found"},
		{name: "system account as a user's source", body: valid(map[string]any{"from_account_id": system}), status: 422, code: "account_not_found"},
		{name: "system account as an admin's source", token: a.admin, body: valid(map[string]any{"from_account_id": system}), status: 422, code: "account_not_found"},
	}
	problems := map[string]server.Problem{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := a.ledgerState(t, from, to, bobOther, carolEUR, system)
			// Deferred, so that it runs even when the answer is not a problem at all.
			defer func() {
				if after := a.ledgerState(t, from, to, bobOther, carolEUR, system); after != before {
					t.Errorf("a rejected request changed the ledger:\ngot\n%swant\n%s", after, before)
				}
			}()
			token, query := tt.token, tt.query
			if token == "" {
				token = alice
			}
			if query == "" {
				query = "?wait=30s"
			}
			r := a.do("POST", "/v1/transfers"+query, token, tt.body, tt.headers...)
			p := expectProblem(t, r, tt.status, tt.code)
			expectFields(t, p, tt.fields...)
			problems[tt.name] = p
		})
	}

	t.Run("another user's source is indistinguishable from an unknown one", func(t *testing.T) {
		got := normalized(problems["another user's source account"], bobOther, unknown)
		want := normalized(problems["unknown source account"], bobOther, unknown)
		if got != want {
			t.Errorf("another user's account: got %s, want the unknown account's %s", got, want)
		}
	})

	t.Run("deposit and withdrawal bodies", func(t *testing.T) {
		tests := []struct {
			name, path, token string
			body              any
			status            int
			code              string
			field             string
		}{
			{"deposit of 1.5", "/v1/deposits", a.admin, map[string]any{"account_id": to, "amount": 1.5, "currency": "USD"}, 400, "invalid_request", "amount"},
			{"deposit of 0", "/v1/deposits", a.admin, map[string]any{"account_id": to, "amount": 0, "currency": "USD"}, 400, "invalid_request", "amount"},
			{"deposit without account", "/v1/deposits", a.admin, map[string]any{"amount": 1, "currency": "USD"}, 400, "invalid_request", "account_id"},
			{"deposit with an unknown field", "/v1/deposits", a.admin, map[string]any{"account_id": to, "amount": 1, "currency": "USD", "from_account_id": system}, 400, "malformed_json", ""},
			{"deposit to an unknown account", "/v1/deposits", a.admin, map[string]any{"account_id": unknown, "amount": 1, "currency": "USD"}, 422, "account_not_found", ""},
			{"deposit in another currency", "/v1/deposits", a.admin, map[string]any{"account_id": to, "amount": 1, "currency": "EUR"}, 422, "currency_mismatch", ""},
			{"deposit in an unsupported currency", "/v1/deposits", a.admin, map[string]any{"account_id": to, "amount": 1, "currency": "XXX"}, 422, "unsupported_currency", ""},
			{"withdrawal of -5", "/v1/withdrawals", alice, map[string]any{"account_id": from, "amount": -5, "currency": "USD"}, 400, "invalid_request", "amount"},
			{"withdrawal in another currency", "/v1/withdrawals", alice, map[string]any{"account_id": from, "amount": 1, "currency": "EUR"}, 422, "currency_mismatch", ""},
			{"withdrawal as text/plain", "/v1/withdrawals", alice, "{}", 415, "unsupported_media_type", ""},
		}
		t.Run("deposit to the system account", func(t *testing.T) {
			// Both sides are then the system account: same_account and account_not_found are both fair.
			before := a.ledgerState(t, from, to, system)
			r := a.do("POST", "/v1/deposits?wait=30s", a.admin, map[string]any{"account_id": system, "amount": 1, "currency": "USD"})
			var p server.Problem
			r.json(t, &p)
			code := "account_not_found"
			if p.Code == "same_account" {
				code = p.Code
			}
			expectProblem(t, r, http.StatusUnprocessableEntity, code)
			if after := a.ledgerState(t, from, to, system); after != before {
				t.Errorf("a rejected request changed the ledger:\ngot\n%swant\n%s", after, before)
			}
		})
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := a.ledgerState(t, from, to, system)
				var headers []string
				if tt.status == http.StatusUnsupportedMediaType {
					headers = []string{"Content-Type", "text/plain"}
				}
				p := expectProblem(t, a.do("POST", tt.path+"?wait=30s", tt.token, tt.body, headers...), tt.status, tt.code)
				if tt.field != "" {
					expectFields(t, p, tt.field)
				}
				if after := a.ledgerState(t, from, to, system); after != before {
					t.Errorf("a rejected request changed the ledger:\ngot\n%swant\n%s", after, before)
				}
			})
		}
	})

	t.Run("a rejected client id is not recorded", func(t *testing.T) {
		id := uuid.NewString()
		r := a.do("POST", "/v1/transfers", alice, valid(map[string]any{"id": id, "to_account_id": from}))
		expectProblem(t, r, http.StatusUnprocessableEntity, "same_account")
		expectProblem(t, a.do("GET", "/v1/transfers/"+id, alice, nil), http.StatusNotFound, "not_found")
		// The id is still free: a valid request with it is a new transfer, not an idempotency conflict.
		r, tr := a.transfer(alice, valid(map[string]any{"id": id, "amount": 1}))
		if r.status != http.StatusCreated || tr.ID != id || tr.Status != "completed" {
			t.Errorf("reusing the id: got %d %s, want 201 completed with id %s", r.status, r.body, id)
		}
	})

	t.Run("lower-case currency is accepted and answered in upper case", func(t *testing.T) {
		r, tr := a.transfer(alice, valid(map[string]any{"currency": "usd", "amount": 10}))
		if r.status != http.StatusCreated || tr.Currency != "USD" || tr.Status != "completed" {
			t.Errorf("got %d %s, want 201 completed in USD", r.status, r.body)
		}
	})

	t.Run("Idempotency-Key of 255 characters is accepted", func(t *testing.T) {
		r, tr := a.transfer(alice, valid(map[string]any{"amount": 5}), "Idempotency-Key", strings.Repeat("k", 255))
		if r.status != http.StatusCreated || tr.Status != "completed" {
			t.Errorf("got %d %s, want 201 completed", r.status, r.body)
		}
	})

	t.Run("the largest amount is valid input and ends insufficient_funds", func(t *testing.T) {
		before := a.getAccount(alice, from)
		beforeEntries := len(a.entries(t, alice, from))
		r, tr := a.transfer(alice, raw9007199254740991(from, to))
		if r.status != http.StatusCreated || tr.Status != "failed" || tr.FailureCode == nil || *tr.FailureCode != "insufficient_funds" || tr.Amount != 9007199254740991 {
			t.Fatalf("got %d %s, want 201 failed/insufficient_funds for 9007199254740991", r.status, r.body)
		}
		after := a.getAccount(alice, from)
		if after.Balance != before.Balance || after.Reserved != 0 || after.Available != before.Balance {
			t.Errorf("source after a failed transfer: got %+v, want balance %d, nothing reserved", after, before.Balance)
		}
		if got := len(a.entries(t, alice, from)); got != beforeEntries {
			t.Errorf("source entries: got %d, want %d (nothing posted)", got, beforeEntries)
		}
	})

	t.Run("insufficient funds is accepted and ends failed", func(t *testing.T) {
		// A transfer without ?wait= is accepted with 202 even though it cannot be funded; a waiting
		// repeat of it answers its final state.
		body := map[string]any{"id": uuid.NewString(), "from_account_id": bobOther, "to_account_id": from, "amount": 501, "currency": "USD"}
		if r := a.do("POST", "/v1/transfers", bob, body); r.status != http.StatusAccepted {
			t.Fatalf("got %d %s, want 202", r.status, r.body)
		}
		r := a.do("POST", "/v1/transfers?wait=30s", bob, body)
		var tr transferBody
		r.json(t, &tr)
		if r.status != http.StatusOK || tr.Status != "failed" || tr.FailureCode == nil || *tr.FailureCode != "insufficient_funds" {
			t.Errorf("got %d %s, want 200 failed/insufficient_funds", r.status, r.body)
		}
		if got := a.getAccount(bob, bobOther); got.Balance != 500 || got.Reserved != 0 {
			t.Errorf("source: got balance %d reserved %d, want 500 and 0", got.Balance, got.Reserved)
		}
	})

	t.Run("frozen destination ends account_inactive with a debit and a refund", func(t *testing.T) {
		dave, _ := a.user()
		frozen := a.account(dave, "USD")
		if r := a.do("PATCH", "/v1/accounts/"+frozen, a.admin, map[string]any{"status": "frozen"}); r.status != http.StatusOK {
			t.Fatalf("freeze: %d %s", r.status, r.body)
		}
		before := a.getAccount(alice, from)
		r, tr := a.transfer(alice, valid(map[string]any{"to_account_id": frozen, "amount": 250}))
		if r.status != http.StatusCreated || tr.Status != "failed" || tr.FailureCode == nil || *tr.FailureCode != "account_inactive" {
			t.Fatalf("got %d %s, want 201 failed/account_inactive", r.status, r.body)
		}
		es := a.entries(t, alice, from)
		if len(es) < 2 {
			t.Fatalf("source entries: got %d, want at least 2", len(es))
		}
		got := fmt.Sprintf("%s %d %d %s; %s %d %d %s", es[0].Kind, es[0].Amount, es[0].BalanceAfter, es[0].TransferID, es[1].Kind, es[1].Amount, es[1].BalanceAfter, es[1].TransferID)
		want := fmt.Sprintf("refund 250 %d %s; debit -250 %d %s", before.Balance, tr.ID, before.Balance-250, tr.ID)
		if got != want {
			t.Errorf("source's newest entries: got %s, want %s", got, want)
		}
		if after := a.getAccount(alice, from); after.Balance != before.Balance || after.Reserved != 0 {
			t.Errorf("source: got balance %d reserved %d, want %d and 0", after.Balance, after.Reserved, before.Balance)
		}
		if got := a.getAccount(a.admin, frozen); got.Balance != 0 {
			t.Errorf("frozen destination balance: got %d, want 0", got.Balance)
		}
	})

	a.audit()
}

// raw9007199254740991 is a transfer body of 2^53-1, written as a literal so that nothing rounds it.
func raw9007199254740991(from, to string) map[string]any {
	return map[string]any{"from_account_id": from, "to_account_id": to, "amount": json.Number("9007199254740991"), "currency": "USD"}
}

// manyLabels returns n distinct labels.
func manyLabels(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("k%02d", i)] = "v"
	}
	return m
}

// postInBackground sends a POST from another goroutine and delivers its answer, or its error, on the
// channel. It does not touch the test, which may only fail from its own goroutine.
func (a *api) postInBackground(path, token string, body any) <-chan resp {
	out := make(chan resp, 1)
	j, _ := json.Marshal(body)
	go func() {
		req, err := http.NewRequest("POST", a.url+path, bytes.NewReader(j))
		if err != nil {
			out <- resp{status: -1, body: []byte(err.Error())}
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- resp{status: -1, body: []byte(err.Error())}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		out <- resp{status: res.StatusCode, header: res.Header, body: b}
	}()
	return out
}

func TestCancel(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	alice, _ := a.user()
	bob, _ := a.user()
	eve, _ := a.user()
	from := a.account(alice, "USD")
	to := a.account(bob, "USD")
	a.deposit(from, 1000, "USD")

	// cancelHeld submits a transfer held before its reserve, cancels it as canceller while it is held
	// and returns the cancel's answer.
	cancelHeld := func(t *testing.T, canceller string, amount int64) (resp, string) {
		t.Helper()
		id := uuid.New()
		release := a.gate.Hold(id)
		defer release()
		r := a.do("POST", "/v1/transfers", alice, map[string]any{"id": id.String(), "from_account_id": from, "to_account_id": to, "amount": amount, "currency": "USD"})
		if r.status != http.StatusAccepted {
			t.Fatalf("submit: got %d %s, want 202", r.status, r.body)
		}
		// Neither the destination's owner nor a stranger may cancel it; their attempts change nothing.
		expectProblem(t, a.do("POST", "/v1/transfers/"+id.String()+"/cancel", bob, nil), http.StatusForbidden, "forbidden")
		expectProblem(t, a.do("POST", "/v1/transfers/"+id.String()+"/cancel", eve, nil), http.StatusNotFound, "not_found")
		done := a.postInBackground("/v1/transfers/"+id.String()+"/cancel", canceller, map[string]any{"reason": "changed my mind"})
		// The cancel waits for the saga's outcome, so it answers only after the reserve is let through;
		// the reserve is let through once the workflow has accepted the cancel.
		sagatest.WaitCancelRequested(context.Background(), t, a.temporal, id)
		release()
		select {
		case r = <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("cancel did not answer within 30s")
		}
		return r, id.String()
	}

	for _, tt := range []struct {
		name      string
		canceller string
	}{
		{"by the source's owner", alice},
		{"by an admin", a.admin},
	} {
		t.Run("before the debit "+tt.name, func(t *testing.T) {
			r, id := cancelHeld(t, tt.canceller, 300)
			var tr transferBody
			if r.status == http.StatusOK {
				r.json(t, &tr)
			}
			if r.status != http.StatusOK || tr.ID != id || tr.Status != "cancelled" {
				t.Fatalf("cancel: got %d %s, want 200 cancelled", r.status, r.body)
			}
			g := a.do("GET", "/v1/transfers/"+id, alice, nil)
			g.json(t, &tr)
			if tr.Status != "cancelled" {
				t.Errorf("transfer after cancel: got %s, want cancelled", g.body)
			}
			src := a.getAccount(alice, from)
			if src.Balance != 1000 || src.Reserved != 0 || src.Available != 1000 {
				t.Errorf("source after cancel: got balance %d reserved %d available %d, want 1000, 0, 1000", src.Balance, src.Reserved, src.Available)
			}
			if got := a.getAccount(bob, to).Balance; got != 0 {
				t.Errorf("destination balance: got %d, want 0", got)
			}
			for _, e := range a.entries(t, alice, from) {
				if e.TransferID == id {
					t.Errorf("cancelled transfer posted an entry: %+v", e)
				}
			}
		})
	}

	t.Run("after completion", func(t *testing.T) {
		r, tr := a.transfer(alice, map[string]any{"from_account_id": from, "to_account_id": to, "amount": 100, "currency": "USD"})
		if tr.Status != "completed" {
			t.Fatalf("transfer: got %d %s, want completed", r.status, r.body)
		}
		tests := []struct {
			name   string
			token  string
			status int
			code   string
		}{
			{"by the source's owner", alice, http.StatusConflict, "not_cancellable"},
			{"by an admin", a.admin, http.StatusConflict, "not_cancellable"},
			{"by the destination's owner", bob, http.StatusForbidden, "forbidden"},
			{"by a stranger", eve, http.StatusNotFound, "not_found"},
		}
		for _, c := range tests {
			t.Run(c.name, func(t *testing.T) {
				expectProblem(t, a.do("POST", "/v1/transfers/"+tr.ID+"/cancel", c.token, nil), c.status, c.code)
			})
		}
		g := a.do("GET", "/v1/transfers/"+tr.ID, alice, nil)
		var again transferBody
		g.json(t, &again)
		if again.Status != "completed" {
			t.Errorf("after refused cancels: got %s, want still completed", g.body)
		}
		if got := a.getAccount(bob, to).Balance; got != 100 {
			t.Errorf("destination balance: got %d, want 100", got)
		}
	})

	t.Run("unknown transfers", func(t *testing.T) {
		unknown := uuid.NewString()
		p := expectProblem(t, a.do("POST", "/v1/transfers/"+unknown+"/cancel", alice, nil), http.StatusNotFound, "not_found")
		expectProblem(t, a.do("POST", "/v1/transfers/not-a-uuid/cancel", alice, nil), http.StatusNotFound, "not_found")
		// A stranger's transfer answers exactly like an unknown one.
		_, tr := a.transfer(alice, map[string]any{"from_account_id": from, "to_account_id": to, "amount": 1, "currency": "USD"})
		q := expectProblem(t, a.do("POST", "/v1/transfers/"+tr.ID+"/cancel", eve, nil), http.StatusNotFound, "not_found")
		if got, want := normalized(q, tr.ID, unknown), normalized(p, tr.ID, unknown); got != want {
			t.Errorf("a stranger's transfer: got %s, want the unknown transfer's %s", got, want)
		}
	})

	a.audit()
}

func TestRouting(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	alice, _ := a.user()

	t.Run("problems", func(t *testing.T) {
		tests := []struct {
			name, method, path, token string
			status                    int
			code                      string
			allow                     []string
		}{
			{name: "unknown path", method: "GET", path: "/nope", status: 404, code: "route_not_found"},
			{name: "unknown /v1 path without a token", method: "GET", path: "/v1/nope", status: 404, code: "route_not_found"},
			{name: "unknown /v1 path with a token", method: "GET", path: "/v1/accounts/x/y/z", token: alice, status: 404, code: "route_not_found"},
			{name: "trailing slash", method: "GET", path: "/v1/accounts/", token: alice, status: 404, code: "route_not_found"},
			{name: "DELETE /v1/accounts", method: "DELETE", path: "/v1/accounts", token: alice, status: 405, code: "method_not_allowed", allow: []string{"GET", "POST"}},
			{name: "PUT /v1/transfers/{id}", method: "PUT", path: "/v1/transfers/" + uuid.NewString(), token: alice, status: 405, code: "method_not_allowed", allow: []string{"GET"}},
			{name: "GET /v1/deposits", method: "GET", path: "/v1/deposits", token: alice, status: 405, code: "method_not_allowed", allow: []string{"POST"}},
			{name: "POST /healthz", method: "POST", path: "/healthz", status: 405, code: "method_not_allowed", allow: []string{"GET"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := a.do(tt.method, tt.path, tt.token, nil)
				expectProblem(t, r, tt.status, tt.code)
				if tt.allow == nil {
					return
				}
				allow := r.header.Get("Allow")
				if allow == "" {
					t.Fatalf("Allow header: missing, want %v", tt.allow)
				}
				for _, m := range tt.allow {
					if !slices.Contains(strings.Split(strings.ReplaceAll(allow, " ", ""), ","), m) {
						t.Errorf("Allow: got %q, want it to include %s", allow, m)
					}
				}
				if slices.Contains(strings.Split(strings.ReplaceAll(allow, " ", ""), ","), tt.method) {
					t.Errorf("Allow: got %q, which includes the refused %s", allow, tt.method)
				}
			})
		}
	})

	t.Run("operational endpoints", func(t *testing.T) {
		tests := []struct {
			path, contentType string
		}{
			{"/healthz", "application/json"},
			{"/readyz", "application/json"},
			{"/metrics", "text/plain"},
			{"/openapi.json", "application/json"},
		}
		for _, tt := range tests {
			t.Run(tt.path, func(t *testing.T) {
				r := a.do("GET", tt.path, "", nil)
				if r.status != http.StatusOK {
					t.Errorf("status: got %d %s, want 200", r.status, r.body)
				}
				if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, tt.contentType) {
					t.Errorf("content type: got %q, want %s", ct, tt.contentType)
				}
			})
		}
		var doc struct {
			OpenAPI string `json:"openapi"`
		}
		a.do("GET", "/openapi.json", "", nil).json(t, &doc)
		if !strings.HasPrefix(doc.OpenAPI, "3.1") {
			t.Errorf("openapi version: got %q, want 3.1.x", doc.OpenAPI)
		}
	})

	t.Run("currencies", func(t *testing.T) {
		expectProblem(t, a.do("GET", "/v1/currencies", "", nil), http.StatusUnauthorized, "unauthorized")
		r := a.do("GET", "/v1/currencies", alice, nil)
		if r.status != http.StatusOK {
			t.Fatalf("status: got %d %s, want 200", r.status, r.body)
		}
		var got []map[string]any
		r.json(t, &got)
		has := func(code string, exponent float64) bool {
			return slices.ContainsFunc(got, func(c map[string]any) bool {
				return c["code"] == code && c["exponent"] == exponent && len(c) == 2
			})
		}
		for _, want := range []struct {
			code     string
			exponent float64
		}{{"USD", 2}, {"JPY", 0}, {"KWD", 3}, {"EUR", 2}} {
			if !has(want.code, want.exponent) {
				t.Errorf("currencies: missing {code:%s exponent:%v}", want.code, want.exponent)
			}
		}
		for _, c := range got {
			if code, _ := c["code"].(string); code == "XXX" || code != strings.ToUpper(code) || len(code) != 3 {
				t.Errorf("currencies: unexpected entry %v", c)
			}
		}
	})
}
