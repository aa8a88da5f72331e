package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/client"

	"github.com/transferd/transferd/transfer"
	"github.com/transferd/transferd/workflows"
)

// fundEach is what every bench account starts with: enough that transfers of 1..100 never run dry.
const fundEach = 1_000_000_000

// API drives the real saga through the HTTP API as an admin, who may move money between any accounts.
type API struct {
	URL, Email, Password string
	Currency             transfer.Currency
	// Label names the target in reports; default "saga".
	Label string
	// Waiters bounds the requests held open at once to learn outcomes; default 64.
	Waiters int
	http    *http.Client
	token   string
	waiters chan struct{}
	ended   sync.Map // transfer id: when the ledger ended it
}

// Name implements Target.
func (a *API) Name() string {
	if a.Label != "" {
		return a.Label
	}
	return "saga"
}

func (a *API) call(ctx context.Context, method, path string, body, out any) (int, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, method, a.URL+path, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	res, err := a.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			// The caller's deadline ran out (a wait for an outcome), not the connection: "timeout".
			return 0, ctx.Err()
		}
		return 0, &CodedError{Code: "http_error", Err: err}
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return res.StatusCode, &CodedError{Code: "http_error", Err: err}
	}
	if res.StatusCode >= 300 {
		var p struct{ Code, Detail string }
		_ = json.Unmarshal(raw, &p)
		if p.Code == "" {
			p.Code = fmt.Sprintf("http_%d", res.StatusCode)
		}
		return res.StatusCode, &CodedError{Code: p.Code, Err: fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, p.Detail)}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return res.StatusCode, err
		}
	}
	return res.StatusCode, nil
}

// Setup signs in, creates a few users and n accounts owned by them, and deposits into each.
func (a *API) Setup(ctx context.Context, n int) ([]string, error) {
	a.waiters = make(chan struct{}, cmp.Or(a.Waiters, waiters))
	a.http = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: 90 * time.Second}}
	if a.Currency == "" {
		a.Currency = "USD"
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if _, err := a.call(ctx, "POST", "/v1/auth/token", map[string]string{"email": a.Email, "password": a.Password}, &tok); err != nil {
		return nil, fmt.Errorf("sign in as %s: %w", a.Email, err)
	}
	a.token = tok.AccessToken
	var owners []string
	for i := range min(n, 10) {
		var u struct{ ID string }
		email := fmt.Sprintf("bench-%s-%d@example.com", uuid.NewString()[:8], i)
		if _, err := a.call(ctx, "POST", "/v1/users", map[string]string{"email": email, "password": "bench-password", "name": "bench"}, &u); err != nil {
			return nil, err
		}
		owners = append(owners, u.ID)
	}
	ids := make([]string, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			var acct struct{ ID string }
			if _, err := a.call(ctx, "POST", "/v1/accounts", map[string]any{"currency": a.Currency, "owner_id": owners[i%len(owners)]}, &acct); err != nil {
				errs <- err
				return
			}
			var dep struct{ Status string }
			if _, err := a.call(ctx, "POST", "/v1/deposits?wait=30s", map[string]any{"account_id": acct.ID, "amount": fundEach, "currency": a.Currency}, &dep); err != nil || dep.Status != "completed" {
				errs <- fmt.Errorf("deposit into %s: %s %v", acct.ID, dep.Status, err)
				return
			}
			ids[i] = acct.ID
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return ids, nil
}

// waiters is how many requests an API target holds open at once to learn outcomes (API.Waiters),
// and waitFor how long each holds.
const (
	waiters = 64
	waitFor = "10s"
)

// Submit posts the transfer and, for its outcome, posts it again with ?wait=: the repeat is answered
// from the same transfer once it has ended, or when the wait (ten seconds) runs out, and then asked
// again. At most Waiters such requests are open at once, whatever the backlog: the API's memory
// stays the API's, not that of thousands of held requests. A transfer's outcome can then be seen
// late, so its end is the ledger's completed_at (EndedAt), not when the bench saw it.
func (a *API) Submit(ctx context.Context, id uuid.UUID, from, to string, amount int64) (func(context.Context) (string, error), error) {
	body := map[string]any{"id": id.String(), "from_account_id": from, "to_account_id": to, "amount": amount, "currency": a.Currency}
	if _, err := a.call(ctx, "POST", "/v1/transfers", body, nil); err != nil {
		return nil, err
	}
	return func(ctx context.Context) (string, error) {
		for {
			var t struct {
				Status      string
				CompletedAt *time.Time `json:"completed_at"`
				UpdatedAt   time.Time  `json:"updated_at"`
			}
			select {
			case a.waiters <- struct{}{}:
			case <-ctx.Done():
				return "unobserved", nil
			}
			_, err := a.call(ctx, "POST", "/v1/transfers?wait="+waitFor, body, &t)
			<-a.waiters
			final := t.Status == "completed" || t.Status == "failed" || t.Status == "cancelled"
			if final {
				ended := t.UpdatedAt
				if t.CompletedAt != nil {
					ended = *t.CompletedAt
				}
				a.ended.Store(id, ended)
			}
			if err != nil || final || ctx.Err() != nil {
				return t.Status, err
			}
		}
	}, nil
}

// EndedAt returns, once, when the ledger ended transfer id, as its answer said.
func (a *API) EndedAt(id uuid.UUID) (time.Time, bool) {
	v, ok := a.ended.LoadAndDelete(id)
	if !ok {
		return time.Time{}, false
	}
	return v.(time.Time), true
}

// Floor starts and awaits an empty workflow per item on the same Temporal server: what one workflow
// per transfer costs at least.
type Floor struct {
	Client    client.Client
	TaskQueue string
	// Eager starts each workflow eagerly: its first task comes back in the start's answer to a
	// worker of Client's, not through matching. The floor's worker runs on Client, so it can.
	Eager bool
}

// Name implements Target.
func (f *Floor) Name() string {
	if f.Eager {
		return "floor-eager"
	}
	return "floor"
}

// Setup implements Target; the floor needs no accounts.
func (f *Floor) Setup(ctx context.Context, n int) ([]string, error) {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprint(i)
	}
	return ids, nil
}

// Submit starts the empty workflow; its outcome is the workflow's end.
func (f *Floor) Submit(ctx context.Context, id uuid.UUID, _, _ string, _ int64) (func(context.Context) (string, error), error) {
	run, err := f.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "floor-" + id.String(), TaskQueue: f.TaskQueue, EnableEagerStart: f.Eager},
		workflows.FloorWorkflowName)
	if err != nil {
		return nil, &CodedError{Code: "start_failed", Err: err}
	}
	return func(ctx context.Context) (string, error) {
		if err := run.Get(ctx, nil); err != nil {
			return "", &CodedError{Code: "workflow_failed", Err: err}
		}
		return "completed", nil
	}, nil
}

// Ledger is what the sql baseline needs of the ledger.
type Ledger interface {
	CreateUser(ctx context.Context, u transfer.User) (transfer.User, error)
	CreateAccount(ctx context.Context, in transfer.NewAccount) (transfer.Account, bool, error)
	SystemAccount(ctx context.Context, cur transfer.Currency) (transfer.Account, error)
	CreateTransfer(ctx context.Context, r transfer.Request) (transfer.Transfer, bool, error)
	TransferInOneTransaction(ctx context.Context, id uuid.UUID) error
	Release(ctx context.Context, id uuid.UUID, o transfer.Outcome) error
}

// SQL runs the saga's statements in one PostgreSQL transaction per transfer, with no Temporal and no
// HTTP: the cost of the money work alone.
type SQL struct {
	Ledger   Ledger
	Currency transfer.Currency
}

// Name implements Target.
func (s *SQL) Name() string { return "sql" }

// Setup creates a user and n funded accounts directly in the ledger.
func (s *SQL) Setup(ctx context.Context, n int) ([]string, error) {
	if s.Currency == "" {
		s.Currency = "USD"
	}
	u, err := s.Ledger.CreateUser(ctx, transfer.User{Email: "bench-sql-" + uuid.NewString()[:8] + "@example.com", PasswordHash: "-", Name: "bench"})
	if err != nil {
		return nil, err
	}
	sys, err := s.Ledger.SystemAccount(ctx, s.Currency)
	if err != nil {
		return nil, err
	}
	var ids []string
	for range n {
		a, _, err := s.Ledger.CreateAccount(ctx, transfer.NewAccount{OwnerID: u.ID, Currency: s.Currency})
		if err != nil {
			return nil, err
		}
		t, _, err := s.Ledger.CreateTransfer(ctx, transfer.Request{ID: uuid.New(), Kind: transfer.KindDeposit,
			FromAccountID: sys.ID, ToAccountID: a.ID, Amount: fundEach, Currency: s.Currency})
		if err != nil {
			return nil, err
		}
		if err := s.Ledger.TransferInOneTransaction(ctx, t.ID); err != nil {
			return nil, err
		}
		ids = append(ids, a.ID.String())
	}
	return ids, nil
}

// Submit records the transfer; its outcome is the one transaction that moves the money.
func (s *SQL) Submit(ctx context.Context, id uuid.UUID, from, to string, amount int64) (func(context.Context) (string, error), error) {
	t, _, err := s.Ledger.CreateTransfer(ctx, transfer.Request{ID: id, Kind: transfer.KindTransfer,
		FromAccountID: uuid.MustParse(from), ToAccountID: uuid.MustParse(to), Amount: transfer.Amount(amount), Currency: s.Currency})
	if err != nil {
		return nil, &CodedError{Code: string(transfer.ErrorCode(err)), Err: err}
	}
	return func(ctx context.Context) (string, error) {
		err := s.Ledger.TransferInOneTransaction(ctx, t.ID)
		if code := transfer.ErrorCode(err); err != nil && code != transfer.CodeInternal {
			return "failed", s.Ledger.Release(ctx, t.ID, transfer.Outcome{Status: transfer.StatusFailed, Code: code, Message: err.Error()})
		}
		if err != nil {
			// Close the transfer so no row is left in flight without a workflow.
			_ = s.Ledger.Release(context.WithoutCancel(ctx), t.ID, transfer.Outcome{Status: transfer.StatusFailed,
				Code: transfer.CodeInternal, Message: "bench: " + err.Error()})
			return "", &CodedError{Code: "sql_error", Err: err}
		}
		return "completed", nil
	}, nil
}
