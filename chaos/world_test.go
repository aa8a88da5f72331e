//go:build linux

package chaos_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// account is a user account of the world, with its owner's token.
type account struct {
	ID       string
	Currency string
	token    string
}

// world is what the load runs on: users with USD and EUR accounts, all funded, two hot accounts,
// a few pairs that trade in both directions, and a frozen account that every transfer to fails
// after its debit is refunded.
type world struct {
	admin    string
	usd, eur []account
	hot      []account
	pairs    [][2]account
	frozen   account
	// deposits are the ids of the funding deposits.
	deposits map[string]bool
	// newTerms says whether the load may ask for holds and schedules: not while an API of the
	// release before them serves it (TestUpgrade), which refuses their fields.
	newTerms atomic.Bool
}

// The world's size and funding.
const (
	users          = 4
	usdPerUser     = 5
	initialBalance = 100_000
)

// setup builds the world through the API, before any fault.
func setup(ctx context.Context, a *api) (*world, error) {
	w := &world{deposits: map[string]bool{}}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := a.must(ctx, http.StatusOK, "POST", "/v1/auth/token", "", map[string]string{"email": adminEmail, "password": adminPassword}, &tok); err != nil {
		return nil, err
	}
	w.admin = tok.AccessToken
	newAccount := func(token, currency string) (account, error) {
		var acct account
		if err := a.must(ctx, http.StatusCreated, "POST", "/v1/accounts", token, map[string]string{"currency": currency}, &acct); err != nil {
			return account{}, err
		}
		acct.token = token
		return acct, nil
	}
	for i := range users {
		email, password := fmt.Sprintf("user%d@chaos.test", i), "chaos-user-password"
		if err := a.must(ctx, http.StatusCreated, "POST", "/v1/users", "", map[string]string{"email": email, "password": password, "name": email}, nil); err != nil {
			return nil, err
		}
		if err := a.must(ctx, http.StatusOK, "POST", "/v1/auth/token", "", map[string]string{"email": email, "password": password}, &tok); err != nil {
			return nil, err
		}
		for range usdPerUser {
			acct, err := newAccount(tok.AccessToken, "USD")
			if err != nil {
				return nil, err
			}
			w.usd = append(w.usd, acct)
		}
		acct, err := newAccount(tok.AccessToken, "EUR")
		if err != nil {
			return nil, err
		}
		w.eur = append(w.eur, acct)
		if i == 0 {
			if w.frozen, err = newAccount(tok.AccessToken, "USD"); err != nil {
				return nil, err
			}
		}
	}
	if err := a.must(ctx, http.StatusOK, "PATCH", "/v1/accounts/"+w.frozen.ID, w.admin, map[string]string{"status": "frozen"}, nil); err != nil {
		return nil, err
	}
	for _, acct := range append(append([]account(nil), w.usd...), w.eur...) {
		id := uuid.NewString()
		var tr transferJSON
		if err := a.must(ctx, http.StatusCreated, "POST", "/v1/deposits?wait=30s", w.admin, map[string]any{
			"id": id, "account_id": acct.ID, "amount": initialBalance, "currency": acct.Currency}, &tr); err != nil {
			return nil, err
		}
		if tr.Status != "completed" {
			return nil, fmt.Errorf("deposit %s: %s, want completed", id, tr.Status)
		}
		w.deposits[id] = true
	}
	w.hot = w.usd[:2]
	w.pairs = [][2]account{{w.usd[2], w.usd[7]}, {w.usd[3], w.usd[12]}, {w.usd[8], w.usd[17]}}
	return w, nil
}

// transferRequest is the body of POST /v1/transfers, with the token of the source's owner.
type transferRequest struct {
	ID            string `json:"id,omitempty"`
	FromAccountID string `json:"from_account_id"`
	ToAccountID   string `json:"to_account_id"`
	Amount        int64  `json:"amount"`
	Currency      string `json:"currency"`
	CaptureMethod string `json:"capture_method,omitempty"`
	HoldExpiresAt string `json:"hold_expires_at,omitempty"`
	ScheduledFor  string `json:"scheduled_for,omitempty"`
	token         string
	// key is the request's Idempotency-Key, for a request that names its transfer by key instead of
	// by id (ID is then empty, and the server picks the id).
	key string
	// deadline is the earliest of its times: a request first answered after it may be refused as
	// late (a scheduled hold is refused once its scheduled_for has passed, before its expiry).
	deadline time.Time
}

// headers are the request's own headers: its Idempotency-Key, if it has one.
func (r transferRequest) headers() []string {
	if r.key == "" {
		return nil
	}
	return []string{"Idempotency-Key", r.key}
}

// manual reports whether the request is for a hold.
func (r transferRequest) manual() bool { return r.CaptureMethod == "manual" }

// The share of holds (manual capture, with an expiry a few seconds ahead, racing their captures and
// cancels) and of transfers scheduled a few seconds ahead, in the load.
const (
	holdPercent      = 12
	scheduledPercent = 5
	holdExpiryMin    = 3 * time.Second
	holdExpiryMax    = 8 * time.Second
	scheduleMax      = 4 * time.Second
	// keyedPercent of the requests name their transfer by Idempotency-Key rather than by id, so that
	// retries across a rolling upgrade (an API of the previous release derives the key's id, this
	// release remembers it per caller) are checked to create one transfer.
	keyedPercent = 25
)

// pick draws a transfer: mostly random USD pairs, then hot accounts, pairs in opposite
// directions, EUR, and transfers to the frozen account. Amounts are large enough that hot
// accounts run dry at times and transfers fail for insufficient funds.
func (w *world) pick(r *rand.Rand) transferRequest {
	distinct := func(accts []account) (account, account) {
		i := r.IntN(len(accts))
		j := (i + 1 + r.IntN(len(accts)-1)) % len(accts)
		return accts[i], accts[j]
	}
	var from, to account
	switch x := r.IntN(100); {
	case x < 45:
		from, to = distinct(w.usd)
	case x < 70:
		hot, other := w.hot[r.IntN(len(w.hot))], w.usd[2+r.IntN(len(w.usd)-2)]
		from, to = hot, other
		if r.IntN(2) == 0 {
			from, to = other, hot
		}
	case x < 88:
		p := w.pairs[r.IntN(len(w.pairs))]
		from, to = p[0], p[1]
		if r.IntN(2) == 0 {
			from, to = to, from
		}
	case x < 95:
		from, to = distinct(w.eur)
	default:
		from, to = w.usd[r.IntN(len(w.usd))], w.frozen
	}
	req := transferRequest{ID: uuid.NewString(), FromAccountID: from.ID, ToAccountID: to.ID,
		Amount: 1 + r.Int64N(4000), Currency: from.Currency, token: from.token}
	if r.IntN(100) < keyedPercent {
		req.ID, req.key = "", "chaos-"+uuid.NewString()
	}
	if !w.newTerms.Load() {
		return req
	}
	now := time.Now()
	if r.IntN(100) < scheduledPercent {
		at := now.Add(time.Second + time.Duration(r.Int64N(int64(scheduleMax))))
		req.ScheduledFor, req.deadline = at.UTC().Format(time.RFC3339Nano), at
		now = at
	}
	if r.IntN(100) < holdPercent {
		at := now.Add(holdExpiryMin + time.Duration(r.Int64N(int64(holdExpiryMax-holdExpiryMin))))
		req.CaptureMethod, req.HoldExpiresAt = "manual", at.UTC().Format(time.RFC3339Nano)
		if req.deadline.IsZero() {
			req.deadline = at
		}
	}
	return req
}

// account returns the user account with the id, if the world has one.
func (w *world) account(id string) (account, bool) {
	for _, a := range append(append([]account(nil), w.usd...), w.eur...) {
		if a.ID == id {
			return a, true
		}
	}
	return account{}, false
}
