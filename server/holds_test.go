package server_test

import (
	"context"
	"database/sql"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// holdBody is a transfer with the terms of holds and schedules, as the API answers it.
type holdBody struct {
	transferBody
	CaptureMethod  string  `json:"capture_method"`
	HoldExpiresAt  *string `json:"hold_expires_at"`
	CapturedAmount *int64  `json:"captured_amount"`
	ScheduledFor   *string `json:"scheduled_for"`
}

// getHold reads a transfer as the token's user sees it.
func (a *api) getHold(token, id string) holdBody {
	a.t.Helper()
	r := a.do("GET", "/v1/transfers/"+id, token, nil)
	if r.status != http.StatusOK {
		a.t.Fatalf("get transfer %s: %s", id, r)
	}
	var h holdBody
	r.json(a.t, &h)
	return h
}

// awaitStatus polls the transfer until it has the status, for up to 30 s.
func (a *api) awaitStatus(token, id, status string) holdBody {
	a.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		h := a.getHold(token, id)
		if h.Status == status {
			return h
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("transfer %s is %s after 30 s, want %s", id, h.Status, status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hold places a manual transfer of amount from one account to another and waits for its hold.
func (a *api) hold(token, from, to string, amount int64, extra map[string]any) holdBody {
	a.t.Helper()
	return a.awaitStatus(token, a.postHold(token, from, to, amount, extra).ID, "reserved")
}

// postHold authorizes a hold and returns as soon as it is accepted: a hold that expires within
// seconds may be cancelled before a poll ever sees it reserved.
func (a *api) postHold(token, from, to string, amount int64, extra map[string]any) holdBody {
	a.t.Helper()
	body := map[string]any{"from_account_id": from, "to_account_id": to, "amount": amount, "currency": "USD", "capture_method": "manual"}
	for k, v := range extra {
		body[k] = v
	}
	r := a.do("POST", "/v1/transfers", token, body)
	if r.status != http.StatusAccepted {
		a.t.Fatalf("hold: %s", r)
	}
	var h holdBody
	r.json(a.t, &h)
	if h.CaptureMethod != "manual" {
		a.t.Fatalf("hold answered capture_method %q", h.CaptureMethod)
	}
	return h
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// TestHoldsOverHTTP runs each call of the contract's holds on the real API, ledger and Temporal:
// authorize, partial capture (the rest released), capture again, capture by the payee, cancel of a
// hold by the payee, expiry, and every error code.
func TestHoldsOverHTTP(t *testing.T) {
	a := newAPI(t)
	payer, _ := a.user()
	payee, _ := a.user()
	stranger, _ := a.user()
	src := a.account(payer, "USD")
	dst := a.account(payee, "USD")
	a.deposit(src, 10000, "USD")

	t.Run("authorize and partial capture", func(t *testing.T) {
		h := a.hold(payer, src, dst, 500, nil)
		if h.HoldExpiresAt == nil || h.CapturedAmount != nil {
			t.Fatalf("held transfer: %+v", h)
		}
		expires, err := time.Parse(time.RFC3339, *h.HoldExpiresAt)
		if err != nil || time.Until(expires) < 7*24*time.Hour-time.Hour || time.Until(expires) > 7*24*time.Hour {
			t.Errorf("default hold_expires_at %v, want 7 days from now", *h.HoldExpiresAt)
		}
		if acct := a.getAccount(payer, src); acct.Reserved != 500 || acct.Available != 9500 {
			t.Errorf("source while held: %+v", acct)
		}
		// The payee may capture; the stranger sees no such transfer.
		a.do("POST", "/v1/transfers/"+h.ID+"/capture", stranger, map[string]any{"amount": 300}).problem(t, http.StatusNotFound, "not_found")
		r := a.do("POST", "/v1/transfers/"+h.ID+"/capture?wait=10s", payee, map[string]any{"amount": 300})
		if r.status != http.StatusOK {
			t.Fatalf("capture: %s", r)
		}
		var got holdBody
		r.json(t, &got)
		if got.CapturedAmount == nil || *got.CapturedAmount != 300 || got.Status != "completed" {
			t.Fatalf("capture with ?wait: %+v", got)
		}
		if acct := a.getAccount(payer, src); acct.Balance != 9700 || acct.Reserved != 0 {
			t.Errorf("source after capturing 300 of 500: balance %d reserved %d, want 9700 and 0", acct.Balance, acct.Reserved)
		}
		if acct := a.getAccount(payee, dst); acct.Balance != 300 {
			t.Errorf("destination after the capture: balance %d, want 300", acct.Balance)
		}
		// The same capture again is answered with the transfer; another amount is refused.
		if r := a.do("POST", "/v1/transfers/"+h.ID+"/capture", payer, map[string]any{"amount": 300}); r.status != http.StatusOK {
			t.Errorf("capture again: %s", r)
		}
		a.do("POST", "/v1/transfers/"+h.ID+"/capture", payer, map[string]any{"amount": 200}).problem(t, http.StatusConflict, "not_capturable")
		a.do("POST", "/v1/transfers/"+h.ID+"/capture", payer, nil).problem(t, http.StatusConflict, "not_capturable")
		a.do("POST", "/v1/transfers/"+h.ID+"/cancel", payer, nil).problem(t, http.StatusConflict, "not_cancellable")
	})

	t.Run("capture all without a body", func(t *testing.T) {
		h := a.hold(payer, src, dst, 100, nil)
		r := a.do("POST", "/v1/transfers/"+h.ID+"/capture", payer, nil)
		var got holdBody
		r.json(t, &got)
		if r.status != http.StatusOK || got.CapturedAmount == nil || *got.CapturedAmount != 100 {
			t.Fatalf("capture: %s", r)
		}
		a.awaitStatus(payer, h.ID, "completed")
	})

	t.Run("the same capture twice at once", func(t *testing.T) {
		// Both answer 200: the second is the same capture, whether it reaches the workflow before
		// the first's credit or after (a bug the chaos load found answered one of them 409).
		for range 5 {
			h := a.hold(payer, src, dst, 10, nil)
			answers := make(chan resp, 2)
			for range 2 {
				go func() { answers <- a.do("POST", "/v1/transfers/"+h.ID+"/capture", payee, map[string]any{"amount": 7}) }()
			}
			for range 2 {
				if r := <-answers; r.status != http.StatusOK {
					t.Errorf("one of two identical captures: %s", r)
				}
			}
			a.awaitStatus(payer, h.ID, "completed")
		}
	})

	t.Run("capture errors", func(t *testing.T) {
		h := a.hold(payer, src, dst, 100, nil)
		a.do("POST", "/v1/transfers/"+h.ID+"/capture", payer, map[string]any{"amount": 101}).problem(t, http.StatusUnprocessableEntity, "capture_exceeds_hold")
		for _, bad := range []any{map[string]any{"amount": 0}, map[string]any{"amount": "5"}, map[string]any{"amount": 1.5}} {
			a.do("POST", "/v1/transfers/"+h.ID+"/capture", payer, bad).problem(t, http.StatusBadRequest, "invalid_request")
		}
		a.do("POST", "/v1/transfers/"+h.ID+"/capture", payer, map[string]any{"amont": 5}).problem(t, http.StatusBadRequest, "malformed_json")
		_, auto := a.transfer(payer, map[string]any{"from_account_id": src, "to_account_id": dst, "amount": 1, "currency": "USD"})
		a.do("POST", "/v1/transfers/"+auto.ID+"/capture", payer, nil).problem(t, http.StatusConflict, "not_capturable")
		a.do("POST", "/v1/transfers/"+uuid.NewString()+"/capture", payer, nil).problem(t, http.StatusNotFound, "not_found")
		a.do("POST", "/v1/transfers/"+h.ID+"/capture", "", nil).problem(t, http.StatusUnauthorized, "unauthorized")
		// Nothing was captured by the refusals.
		if got := a.getHold(payer, h.ID); got.Status != "reserved" || got.CapturedAmount != nil {
			t.Errorf("after refused captures: %+v", got)
		}
	})

	t.Run("a frozen source: the payer is told, the payee is not", func(t *testing.T) {
		src2 := a.account(payer, "USD")
		a.deposit(src2, 500, "USD")
		h := a.hold(payer, src2, dst, 100, nil)
		if r := a.do("PATCH", "/v1/accounts/"+src2, a.admin, map[string]any{"status": "frozen"}); r.status != http.StatusOK {
			t.Fatalf("freeze: %s", r)
		}
		p := a.do("POST", "/v1/transfers/"+h.ID+"/capture", payee, nil).problem(t, http.StatusConflict, "not_capturable")
		if strings.Contains(p.Detail, "frozen") || strings.Contains(p.Detail, "source account") || strings.Contains(p.Detail, src2) {
			t.Errorf("the payee learns of the payer's account: %q", p.Detail)
		}
		a.do("POST", "/v1/transfers/"+h.ID+"/capture", payer, nil).problem(t, http.StatusUnprocessableEntity, "account_inactive")
		if r := a.do("PATCH", "/v1/accounts/"+src2, a.admin, map[string]any{"status": "active"}); r.status != http.StatusOK {
			t.Fatalf("unfreeze: %s", r)
		}
		if r := a.do("POST", "/v1/transfers/"+h.ID+"/capture?wait=10s", payee, nil); r.status != http.StatusOK {
			t.Errorf("capture once unfrozen: %s", r)
		}
	})

	t.Run("the payee cancels a hold", func(t *testing.T) {
		h := a.hold(payer, src, dst, 200, nil)
		r := a.do("POST", "/v1/transfers/"+h.ID+"/cancel", payee, map[string]any{"reason": "goods out of stock"})
		var got holdBody
		r.json(t, &got)
		if r.status != http.StatusOK || got.Status != "cancelled" {
			t.Fatalf("cancel by the payee: %s", r)
		}
		if r := a.do("POST", "/v1/transfers/"+h.ID+"/cancel", payer, nil); r.status != http.StatusOK {
			t.Errorf("cancel again: %s", r)
		}
		a.do("POST", "/v1/transfers/"+h.ID+"/capture", payee, nil).problem(t, http.StatusConflict, "not_capturable")
		a.do("POST", "/v1/transfers/"+h.ID+"/cancel", stranger, nil).problem(t, http.StatusNotFound, "not_found")
	})

	t.Run("the payee may not cancel an automatic transfer", func(t *testing.T) {
		at := time.Now().Add(time.Hour)
		r := a.do("POST", "/v1/transfers", payer, map[string]any{"from_account_id": src, "to_account_id": dst, "amount": 1,
			"currency": "USD", "scheduled_for": rfc3339(at)})
		var tr holdBody
		r.json(t, &tr)
		a.do("POST", "/v1/transfers/"+tr.ID+"/cancel", payee, nil).problem(t, http.StatusForbidden, "forbidden")
		if r := a.do("POST", "/v1/transfers/"+tr.ID+"/cancel", payer, nil); r.status != http.StatusOK {
			t.Errorf("cancel of a scheduled transfer by its payer: %s", r)
		}
	})

	t.Run("expiry", func(t *testing.T) {
		before := a.getAccount(payer, src)
		h := a.postHold(payer, src, dst, 250, map[string]any{"hold_expires_at": rfc3339(time.Now().Add(3 * time.Second))})
		got := a.awaitStatus(payer, h.ID, "cancelled")
		if got.FailureCode == nil || *got.FailureCode != "hold_expired" {
			t.Fatalf("expired hold: %+v", got)
		}
		if acct := a.getAccount(payer, src); acct.Reserved != before.Reserved || acct.Balance != before.Balance {
			t.Errorf("source after the expiry: %+v, before the hold %+v", acct, before)
		}
		// The payee reads the neutral message.
		if p := a.getHold(payee, h.ID); p.FailureMessage == nil || *p.FailureMessage != "the transfer's hold expired before it was captured" {
			t.Errorf("payee's failure message: %v", p.FailureMessage)
		}
		a.do("POST", "/v1/transfers/"+h.ID+"/cancel", payer, nil).problem(t, http.StatusConflict, "not_cancellable")
		a.do("POST", "/v1/transfers/"+h.ID+"/capture", payer, nil).problem(t, http.StatusConflict, "not_capturable")
	})

	t.Run("invalid terms", func(t *testing.T) {
		now := time.Now()
		cases := map[string]map[string]any{
			"hold_expires_at without manual": {"hold_expires_at": rfc3339(now.Add(time.Hour))},
			"hold_expires_at in the past":    {"capture_method": "manual", "hold_expires_at": rfc3339(now.Add(-time.Second))},
			"hold_expires_at past 30 days":   {"capture_method": "manual", "hold_expires_at": rfc3339(now.Add(31 * 24 * time.Hour))},
			"hold_expires_at not a time":     {"capture_method": "manual", "hold_expires_at": "tomorrow"},
			"capture_method unknown":         {"capture_method": "later"},
			"scheduled_for in the past":      {"scheduled_for": rfc3339(now.Add(-time.Minute))},
			"scheduled_for past a year":      {"scheduled_for": rfc3339(now.AddDate(1, 0, 1))},
			"hold before its schedule": {"capture_method": "manual", "scheduled_for": rfc3339(now.Add(2 * time.Hour)),
				"hold_expires_at": rfc3339(now.Add(time.Hour))},
			"hold 30 days past its schedule": {"capture_method": "manual", "scheduled_for": rfc3339(now.Add(time.Hour)),
				"hold_expires_at": rfc3339(now.Add(time.Hour + 31*24*time.Hour))},
		}
		for name, extra := range cases {
			body := map[string]any{"from_account_id": src, "to_account_id": dst, "amount": 1, "currency": "USD"}
			for k, v := range extra {
				body[k] = v
			}
			p := a.do("POST", "/v1/transfers", payer, body).problem(t, http.StatusBadRequest, "invalid_request")
			if len(p.Errors) == 0 {
				t.Errorf("%s: no field errors: %+v", name, p)
			}
		}
		// A hold 30 days after its schedule is fine.
		body := map[string]any{"from_account_id": src, "to_account_id": dst, "amount": 1, "currency": "USD", "capture_method": "manual",
			"scheduled_for": rfc3339(now.Add(time.Hour)), "hold_expires_at": rfc3339(now.Add(time.Hour + 29*24*time.Hour))}
		if r := a.do("POST", "/v1/transfers", payer, body); r.status != http.StatusAccepted {
			t.Errorf("hold 29 days after its schedule: %s", r)
		}
	})
	a.audit()
}

// TestScheduledTransfersOverHTTP: a transfer and a deposit scheduled a few seconds ahead are
// accepted as scheduled and run on time; a retry of the request after its time is a replay.
func TestScheduledTransfersOverHTTP(t *testing.T) {
	a := newAPI(t)
	payer, _ := a.user()
	payee, _ := a.user()
	src := a.account(payer, "USD")
	dst := a.account(payee, "USD")
	// Far enough ahead for the calls below to finish before it on a loaded machine.
	at := time.Now().Add(10 * time.Second).UTC().Truncate(time.Millisecond)
	dep := a.do("POST", "/v1/deposits", a.admin, map[string]any{"account_id": src, "amount": 1000, "currency": "USD", "scheduled_for": rfc3339(at)})
	var d holdBody
	dep.json(t, &d)
	if dep.status != http.StatusAccepted || d.Status != "scheduled" || d.ScheduledFor == nil {
		t.Fatalf("scheduled deposit: %s", dep)
	}
	body := map[string]any{"id": uuid.NewString(), "from_account_id": src, "to_account_id": dst, "amount": 400, "currency": "USD",
		"scheduled_for": rfc3339(at.Add(time.Second))}
	r := a.do("POST", "/v1/transfers", payer, body)
	var tr holdBody
	r.json(t, &tr)
	if r.status != http.StatusAccepted || tr.Status != "scheduled" || tr.CaptureMethod != "automatic" {
		t.Fatalf("scheduled transfer: %s", r)
	}
	// The same, named by an Idempotency-Key instead of an id.
	keyed := map[string]any{"from_account_id": src, "to_account_id": dst, "amount": 5, "currency": "USD", "scheduled_for": rfc3339(at.Add(time.Second))}
	var kt holdBody
	if r := a.do("POST", "/v1/transfers", payer, keyed, "Idempotency-Key", "scheduled-1"); r.status != http.StatusAccepted {
		t.Fatalf("keyed scheduled transfer: %s", r)
	} else {
		r.json(t, &kt)
	}
	list := a.do("GET", "/v1/transfers?status=scheduled", payer, nil)
	var page struct{ Data []holdBody }
	list.json(t, &page)
	if len(page.Data) != 3 {
		t.Errorf("status=scheduled lists %d transfers, want 3: %s", len(page.Data), list)
	}
	if acct := a.getAccount(payer, src); acct.Reserved != 0 || acct.Balance != 0 {
		t.Errorf("a scheduled transfer held money: %+v", acct)
	}
	d2 := a.awaitStatus(a.admin, d.ID, "completed")
	done := a.awaitStatus(payer, tr.ID, "completed")
	for _, x := range []holdBody{d2, done} {
		completed, _ := time.Parse(time.RFC3339, *x.CompletedAt)
		scheduled, _ := time.Parse(time.RFC3339, *x.ScheduledFor)
		if completed.Before(scheduled) {
			t.Errorf("transfer %s completed at %v, before its time %v", x.ID, completed, scheduled)
		}
		if completed.After(scheduled.Add(10 * time.Second)) {
			t.Errorf("transfer %s completed at %v, long after its time %v", x.ID, completed, scheduled)
		}
	}
	a.awaitStatus(payer, kt.ID, "completed")
	if acct := a.getAccount(payee, dst); acct.Balance != 405 {
		t.Errorf("destination after the scheduled transfer: %+v", acct)
	}
	// The same request once its time has passed is the same transfer.
	again := a.do("POST", "/v1/transfers", payer, body)
	if again.status != http.StatusOK || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay after its time: %s", again)
	}
	var kagain holdBody
	if r := a.do("POST", "/v1/transfers", payer, keyed, "Idempotency-Key", "scheduled-1"); r.status != http.StatusOK || r.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("keyed replay after its time: %s", r)
	} else if r.json(t, &kagain); kagain.ID != kt.ID {
		t.Errorf("keyed replay after its time named %s, want %s", kagain.ID, kt.ID)
	}
	// A new key past the time is refused as a new request; so is the key of another caller.
	a.do("POST", "/v1/transfers", payer, keyed, "Idempotency-Key", "scheduled-2").problem(t, http.StatusBadRequest, "invalid_request")
	payeeSrc := a.account(payee, "USD")
	othersKeyed := map[string]any{"from_account_id": payeeSrc, "to_account_id": src, "amount": 5, "currency": "USD", "scheduled_for": keyed["scheduled_for"]}
	a.do("POST", "/v1/transfers", payee, othersKeyed, "Idempotency-Key", "scheduled-1").problem(t, http.StatusBadRequest, "invalid_request")
	// The same key with another body past the time is a conflict, as it is before.
	changed := maps.Clone(keyed)
	changed["amount"] = 6
	a.do("POST", "/v1/transfers", payer, changed, "Idempotency-Key", "scheduled-1").problem(t, http.StatusConflict, "idempotency_conflict")
	a.audit()
}

// TestRetryAcrossScheduledForWhileTheFirstAttemptRuns: a scheduled transfer's first attempt passes
// the check that its time is ahead, then stalls before the ledger records it (here: a lock on
// transfers); the client retries after scheduled_for has passed. Whatever the retry is answered
// must agree with the ledger: a 400 only if no transfer exists, and then the first attempt created
// none either; else the replay of the one transfer. Named by an id and by an Idempotency-Key.
func TestRetryAcrossScheduledForWhileTheFirstAttemptRuns(t *testing.T) {
	a := newAPI(t)
	payer, _ := a.user()
	payee, _ := a.user()
	src := a.account(payer, "USD")
	dst := a.account(payee, "USD")
	a.deposit(src, 1000, "USD")
	db, err := sql.Open("pgx", a.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	for _, named := range []string{"id", "key"} {
		t.Run(named, func(t *testing.T) {
			at := time.Now().Add(2 * time.Second)
			body := map[string]any{"from_account_id": src, "to_account_id": dst, "amount": 7, "currency": "USD", "scheduled_for": rfc3339(at)}
			var headers []string
			if named == "id" {
				body["id"] = uuid.NewString()
			} else {
				headers = []string{"Idempotency-Key", "across-" + uuid.NewString()}
			}
			lock, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer lock.Rollback()
			if _, err := lock.Exec("LOCK TABLE transfers IN SHARE MODE"); err != nil {
				t.Fatal(err)
			}
			waiting := func() int {
				var n int
				if err := db.QueryRow(`SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'transfers'::regclass`).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			answers := make(chan resp, 2)
			go func() { answers <- a.do("POST", "/v1/transfers", payer, body, headers...) }()
			for deadline := time.Now().Add(10 * time.Second); waiting() < 1; {
				if time.Now().After(deadline) {
					t.Fatal("the first attempt never reached the ledger's insert")
				}
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(time.Until(at) + 100*time.Millisecond)
			var retry resp
			retried := make(chan resp, 1)
			go func() { retried <- a.do("POST", "/v1/transfers", payer, body, headers...) }()
			// The retry either answers at once or waits for the first attempt's outcome.
			for deadline := time.Now().Add(10 * time.Second); waiting() < 2 && len(retried) == 0 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			if err := lock.Commit(); err != nil {
				t.Fatal(err)
			}
			retry = <-retried
			first := <-answers
			var list struct{ Data []holdBody }
			a.do("GET", "/v1/transfers?status=scheduled", payer, nil).json(t, &list)
			var all struct{ Data []holdBody }
			a.do("GET", "/v1/transfers?limit=100", payer, nil).json(t, &all)
			var ids []string
			for _, x := range all.Data {
				if x.ScheduledFor != nil {
					if s, _ := time.Parse(time.RFC3339Nano, *x.ScheduledFor); s.Equal(at.UTC().Truncate(time.Microsecond)) || s.Equal(at.UTC()) {
						ids = append(ids, x.ID)
					}
				}
			}
			t.Logf("first attempt %d, retry %d, transfers %v", first.status, retry.status, ids)
			switch {
			case retry.status == http.StatusBadRequest && len(ids) != 0:
				t.Errorf("the retry was answered %s, but the first attempt (%s) created transfer %v", retry, first, ids)
			case retry.status == http.StatusBadRequest:
				if first.status != http.StatusBadRequest {
					t.Errorf("no transfer, but the first attempt answered %s", first)
				}
			case retry.status == http.StatusOK:
				var got holdBody
				retry.json(t, &got)
				if len(ids) != 1 || got.ID != ids[0] || retry.header.Get("Idempotent-Replayed") != "true" {
					t.Errorf("the retry answered %s; transfers of the request: %v", retry, ids)
				}
			default:
				t.Errorf("the retry answered %s, want 400 or the replay (200); the first attempt %s", retry, first)
			}
		})
	}
	a.audit()
}
