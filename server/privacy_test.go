package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/transferd/transferd/internal/sagatest"
)

// TestPayeeSeesNothingOfThePayer checks that the destination's owner of a failed or cancelled
// transfer learns its outcome and nothing of the source account: not its available balance, not
// that it is frozen, not the payer's cancel reason. The payer and admins keep the ledger's message.
// Each view is checked: the transfer itself, the list, the list filtered by the payee's account, and
// the payer's creating POST with ?wait=.
func TestPayeeSeesNothingOfThePayer(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	payer, _ := a.user()
	payee, _ := a.user()
	source := a.account(payer, "USD")
	frozenSource := a.account(payer, "USD")
	dest := a.account(payee, "USD")
	// An odd balance, so that any number in a message that equals it is the balance.
	a.deposit(source, 1234, "USD")
	a.deposit(frozenSource, 777, "USD")
	if r := a.do("PATCH", "/v1/accounts/"+frozenSource, a.admin, map[string]any{"status": "frozen"}); r.status != http.StatusOK {
		t.Fatalf("freeze: %d %s", r.status, r.body)
	}

	// cancelled submits a transfer held before its reserve and cancels it as the payer with a reason.
	cancelled := func(t *testing.T, reason string) string {
		t.Helper()
		id := uuid.New()
		release := a.gate.Hold(id)
		defer release()
		r := a.do("POST", "/v1/transfers", payer, map[string]any{"id": id.String(), "from_account_id": source, "to_account_id": dest, "amount": 100, "currency": "USD"})
		if r.status != http.StatusAccepted {
			t.Fatalf("submit: got %d %s, want 202", r.status, r.body)
		}
		done := a.postInBackground("/v1/transfers/"+id.String()+"/cancel", payer, map[string]any{"reason": reason})
		sagatest.WaitCancelRequested(context.Background(), t, a.temporal, id)
		release()
		select {
		case r = <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("cancel did not answer within 30s")
		}
		if r.status != http.StatusOK {
			t.Fatalf("cancel: got %d %s, want 200", r.status, r.body)
		}
		var tr transferBody
		r.json(t, &tr)
		if tr.FailureMessage == nil || !strings.Contains(*tr.FailureMessage, reason) {
			t.Errorf("payer's cancel answer: got %s, want the reason %q", r.body, reason)
		}
		return id.String()
	}

	tests := []struct {
		name   string
		submit func(t *testing.T) string
		// code is the failure code everyone sees; secrets are what the payer's message says and the
		// payee's must not.
		code    string
		secrets []string
	}{
		{
			name: "insufficient funds",
			submit: func(t *testing.T) string {
				return a.failedTransfer(t, payer, source, dest, 5000, "insufficient_funds", "1234")
			},
			code: "insufficient_funds", secrets: []string{"1234"},
		},
		{
			name: "frozen source",
			submit: func(t *testing.T) string {
				return a.failedTransfer(t, payer, frozenSource, dest, 100, "account_inactive", "frozen")
			},
			code: "account_inactive", secrets: []string{"frozen"},
		},
		{
			name:    "cancelled with a reason",
			submit:  func(t *testing.T) string { return cancelled(t, "moving my savings elsewhere") },
			secrets: []string{"moving my savings elsewhere"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := tt.submit(t)
			views := map[string]string{
				"GET one":                     "/v1/transfers/" + id,
				"list":                        "/v1/transfers?limit=100",
				"list of the payee's account": "/v1/transfers?limit=100&account_id=" + dest,
			}
			for view, path := range views {
				for _, who := range []struct {
					name, token string
					full        bool
				}{{"payer", payer, true}, {"admin", a.admin, true}, {"payee", payee, false}} {
					if view == "list of the payee's account" && who.name == "payer" {
						continue
					}
					raw, tr := a.seenTransfer(t, who.token, path, id)
					if tr.FailureCode == nil && tt.code != "" || tr.FailureCode != nil && *tr.FailureCode != tt.code {
						t.Errorf("%s, %s: failure_code: got %s, want %q", view, who.name, raw, tt.code)
					}
					if tr.FailureMessage == nil || *tr.FailureMessage == "" {
						t.Errorf("%s, %s: failure_message: got %s, want a message", view, who.name, raw)
						continue
					}
					for _, secret := range tt.secrets {
						if got := strings.Contains(*tr.FailureMessage, secret); got != who.full {
							t.Errorf("%s, %s: failure_message shows %q: got %v, want %v; %s", view, who.name, secret, got, who.full, raw)
						}
					}
					if who.full {
						continue
					}
					// No other field may tell the payee of the source's state either.
					for _, word := range []string{"frozen", "closed", "available", "balance"} {
						if strings.Contains(string(raw), word) {
							t.Errorf("%s, %s: the transfer mentions %q: %s", view, who.name, word, raw)
						}
					}
				}
			}
		})
	}
}

// failedTransfer submits a transfer as token with ?wait= and checks that the creating POST answers it
// failed with the code and with the ledger's message, which mentions want.
func (a *api) failedTransfer(t *testing.T, token, from, to string, amount int64, code, want string) string {
	t.Helper()
	r, tr := a.transfer(token, map[string]any{"from_account_id": from, "to_account_id": to, "amount": amount, "currency": "USD"})
	if r.status != http.StatusCreated || tr.Status != "failed" || tr.FailureCode == nil || *tr.FailureCode != code {
		t.Fatalf("POST ?wait: got %s, want 201 failed/%s", r, code)
	}
	if tr.FailureMessage == nil || !strings.Contains(*tr.FailureMessage, want) {
		t.Errorf("payer's POST ?wait: failure_message: got %s, want the ledger's message, which mentions %q", r.body, want)
	}
	return tr.ID
}

// seenTransfer reads the transfer with the id as token sees it at path, a transfer or a list of
// them, and returns its JSON as served and decoded.
func (a *api) seenTransfer(t *testing.T, token, path, id string) (json.RawMessage, transferBody) {
	t.Helper()
	r := a.do("GET", path, token, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: got %s, want 200", path, r)
	}
	raws := []json.RawMessage{r.body}
	if strings.HasPrefix(path, "/v1/transfers?") {
		var p page
		r.json(t, &p)
		raws = p.Data
	}
	for _, raw := range raws {
		var tr transferBody
		if err := json.Unmarshal(raw, &tr); err != nil {
			t.Fatalf("decode %s: %v", raw, err)
		}
		if tr.ID == id {
			return raw, tr
		}
	}
	t.Fatalf("GET %s: transfer %s is not there: %s", path, id, r.body)
	return nil, transferBody{}
}
