//go:build linux

package chaos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/transferd/transferd/internal/testbin"
)

// transferRow is a transfer as the ledger holds it.
type transferRow struct {
	kind, from, to, currency, status string
	failureCode, failureMessage      string
	amount                           int64
	// captured is a hold's captured amount, 0 until captured; moved is what its debit and credit
	// are of: the captured amount of a captured hold, else the amount.
	captured int64
}

func (r transferRow) moved() int64 {
	if r.captured != 0 {
		return r.captured
	}
	return r.amount
}

// rows returns every transfer in the ledger, by id.
func (s *stack) rows() map[string]transferRow {
	t := s.t
	t.Helper()
	rows := map[string]transferRow{}
	q, err := s.db.Query(`SELECT t.id::text, t.kind, t.from_account_id::text, t.to_account_id::text, t.amount, t.currency, t.status,
		coalesce(t.failure_code, ''), coalesce(t.failure_message, ''), coalesce(x.captured_amount, 0)
		FROM transfers t LEFT JOIN transfer_terms x ON x.transfer_id = t.id`)
	if err != nil {
		t.Fatalf("transfers: %v", err)
	}
	defer q.Close()
	for q.Next() {
		var id string
		var r transferRow
		if err := q.Scan(&id, &r.kind, &r.from, &r.to, &r.amount, &r.currency, &r.status, &r.failureCode, &r.failureMessage, &r.captured); err != nil {
			t.Fatalf("transfers: %v", err)
		}
		rows[id] = r
	}
	if err := q.Err(); err != nil {
		t.Fatalf("transfers: %v", err)
	}
	return rows
}

// totals is the sum of every account's balance, system accounts included, by currency: a transfer
// moves money between accounts and never makes or destroys it.
func (s *stack) totals() map[string]int64 {
	s.t.Helper()
	rows, err := s.db.Query(`SELECT currency, sum(balance)::bigint FROM accounts GROUP BY currency`)
	if err != nil {
		s.t.Fatalf("totals: %v", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var cur string
		var sum int64
		if err := rows.Scan(&cur, &sum); err != nil {
			s.t.Fatalf("totals: %v", err)
		}
		out[cur] = sum
	}
	return out
}

// drain waits until every transfer is final, and returns how many were still not after timeout.
func (s *stack) drain(timeout time.Duration) int {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var open int
		err := s.db.QueryRow(`SELECT count(*) FROM transfers WHERE status NOT IN ('completed', 'failed', 'cancelled')`).Scan(&open)
		if err == nil && open == 0 {
			return 0
		}
		if err != nil && time.Now().After(deadline) {
			s.t.Fatalf("drain: %v", err)
		}
		if time.Now().After(deadline) {
			var ids []string
			rows, err := s.db.Query(`SELECT id::text || ' ' || status FROM transfers WHERE status NOT IN ('completed', 'failed', 'cancelled') LIMIT 10`)
			if err == nil {
				for rows.Next() {
					var id string
					_ = rows.Scan(&id)
					ids = append(ids, id)
				}
				rows.Close()
			}
			s.t.Errorf("%d transfers still not final %s after the load: %s", open, timeout, strings.Join(ids, ", "))
			return open
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// auditResult is what `transferd audit --json` said.
type auditResult struct {
	exit int
	// violations is how many the report listed; checked says whether invariants 6 and 8, which
	// need Temporal, were checked.
	violations int
	checked    bool
}

func (a auditResult) String() string {
	switch {
	case a.exit == 0 && a.checked:
		return "clean (invariants 6 and 8 checked)"
	case !a.checked:
		return fmt.Sprintf("exit %d, %d violations, invariants 6 and 8 NOT checked", a.exit, a.violations)
	}
	return fmt.Sprintf("exit %d, %d violations", a.exit, a.violations)
}

// violationsCell is the audit's column of the report's row.
func (a auditResult) violationsCell() string {
	if !a.checked {
		return fmt.Sprintf("%d (6 and 8 not checked)", a.violations)
	}
	return strconv.Itoa(a.violations)
}

// audit runs `transferd audit` against the database and Temporal, and fails the test unless it
// exits 0 having checked every invariant, those that ask Temporal included: invariant 6 (every
// transfer not final has a running workflow) and invariant 8 (every completed workflow's result is
// its row's).
func (s *stack) audit(ctx context.Context) auditResult {
	cmd := exec.CommandContext(ctx, testbin.Transferd(s.t), "audit", "--json", "--database-url", s.directURL, "--temporal-address", s.temporalAddr, "--temporal-namespace", s.namespace)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var res auditResult
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.exit = exit.ExitCode()
	case err != nil:
		res.exit = -1
	}
	var report struct {
		Violations             []json.RawMessage `json:"violations"`
		WorkflowsChecked       bool              `json:"workflows_checked"`
		WorkflowResultsChecked bool              `json:"workflow_results_checked"`
	}
	if jerr := json.Unmarshal(stdout.Bytes(), &report); jerr != nil {
		s.t.Errorf("transferd audit: exit %d (%v), no report (%v):\n%s%s", res.exit, err, jerr, stdout.Bytes(), stderr.Bytes())
		return res
	}
	res.violations = len(report.Violations)
	res.checked = report.WorkflowsChecked && report.WorkflowResultsChecked
	if res.exit != 0 || !res.checked {
		s.t.Errorf("transferd audit: %s:\n%s%s", res, stdout.Bytes(), stderr.Bytes())
	}
	return res
}

// check compares what the clients saw with what the ledger holds, and the ledger with itself.
func (s *stack) check(b *book, w *world, before map[string]int64) summary {
	t := s.t
	t.Helper()
	rows := s.rows()
	entries := map[string][]string{}
	q, err := s.db.Query(`SELECT transfer_id::text, kind FROM entries ORDER BY transfer_id, kind`)
	if err != nil {
		t.Fatalf("entries: %v", err)
	}
	for q.Next() {
		var id, kind string
		if err := q.Scan(&id, &kind); err != nil {
			t.Fatalf("entries: %v", err)
		}
		entries[id] = append(entries[id], kind)
	}
	q.Close()

	sum := summary{captureAnswers: map[int]int{}}
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, o := range b.byID {
		sum.submitted++
		sum.maxAttempts = max(sum.maxAttempts, o.first.attempts)
		sum.retries += max(o.first.attempts-1, 0)
		row, recorded := rows[id]
		switch {
		case o.err != nil:
			sum.unanswered++
			t.Errorf("transfer %s: %v", id, o.err)
			continue
		case o.first.status == http.StatusBadRequest && !o.req.deadline.IsZero() && o.answeredAt.After(o.req.deadline):
			// A hold or a schedule whose time passed before its request got through (the API was
			// down): refused as late, which is the contract. Its twin, sent at the same moment, may
			// have got through just before; the ledger's checks below still cover that transfer.
			sum.late++
			continue
		case o.first.status/100 != 2:
			sum.refused++
			t.Errorf("transfer %s: a valid request was answered %d %s", id, o.first.status, o.first.body)
			continue
		}
		sum.accepted++
		var seen transferJSON
		if err := json.Unmarshal(o.first.body, &seen); err != nil || seen.ID != id || seen.Kind != "transfer" ||
			seen.FromAccountID != o.req.FromAccountID || seen.ToAccountID != o.req.ToAccountID ||
			seen.Amount != o.req.Amount || seen.Currency != o.req.Currency {
			t.Errorf("transfer %s: the %d answer is %+v (%v), the client asked for %+v", id, o.first.status, seen, err, o.req)
		}
		if !recorded {
			sum.lost++
			t.Errorf("transfer %s: answered %d but the ledger has no such transfer", id, o.first.status)
			continue
		}
		if row.from != o.req.FromAccountID || row.to != o.req.ToAccountID || row.amount != o.req.Amount || row.currency != o.req.Currency {
			t.Errorf("transfer %s: the ledger holds %+v, the client asked for %+v", id, row, o.req)
		}
		// No fault may end a transfer: only the world's business outcomes and the clients' cancels.
		switch row.status {
		case "completed":
			sum.completed++
		case "failed":
			sum.failed++
			if row.failureCode != "insufficient_funds" && row.failureCode != "account_inactive" {
				sum.faultEnded++
				t.Errorf("transfer %s failed with %q: a fault ended it", id, row.failureCode)
			}
		case "cancelled":
			sum.cancelled++
			if row.failureCode == "hold_expired" {
				sum.holdsExpired++
				if !o.req.manual() {
					t.Errorf("transfer %s is not a hold, but ended hold_expired", id)
				}
				break
			}
			// A cancel sent through the API or by an operator through Temporal may win.
			if !o.cancelSent && (o.op == nil || o.op.kind != opCancel) {
				sum.faultEnded++
				t.Errorf("transfer %s was cancelled, but no client or operator cancelled it", id)
			}
		}
		// However many times the request went out, at most one answer created the transfer.
		created := 0
		for _, ans := range append([]answer{o.first}, o.repeats...) {
			if !ans.replayed {
				created++
			}
		}
		if created > 1 {
			t.Errorf("transfer %s: %d answers to the same request say they created it", id, created)
		}
		for _, again := range o.repeats {
			sum.repeats++
			var tr transferJSON
			_ = json.Unmarshal(again.body, &tr)
			if again.status/100 != 2 || tr.ID != id {
				t.Errorf("transfer %s: a repeat was answered %d %s", id, again.status, again.body)
			}
		}
		if o.req.manual() {
			sum.holds++
			if row.captured != 0 {
				sum.holdsCaptured++
			}
		}
		if o.req.ScheduledFor != "" {
			sum.scheduled++
		}
		if o.req.key != "" {
			sum.keyed++
		}
		for _, c := range o.captures {
			sum.captures++
			sum.captureAnswers[c.ans.status]++
			want := c.amount
			if want == 0 {
				want = o.req.Amount
			}
			switch {
			case c.err != nil:
				t.Errorf("transfer %s: capture of %d: %v", id, c.amount, c.err)
			case c.ans.status == http.StatusOK && row.captured != want:
				t.Errorf("transfer %s: a capture of %d answered 200, the ledger captured %d (%s)", id, want, row.captured, row.status)
			case c.ans.status == http.StatusConflict && row.captured == want:
				// Another capture of the same amount won; this one answered 409 only if it came
				// before the ledger decided and was refused for another reason, which cannot be.
				t.Errorf("transfer %s: a capture of %d answered 409 after %d attempts (%s), the ledger captured %d (%s)", id, want, c.ans.attempts, c.ans.body, row.captured, row.status)
			case c.ans.status == http.StatusUnprocessableEntity && row.captured == 0 && strings.Contains(string(c.ans.body), "account_inactive"):
				// The source was frozen (sourceFreeze) when the capture reached the ledger: refused,
				// the hold kept.
			case c.ans.status != http.StatusOK && c.ans.status != http.StatusConflict:
				t.Errorf("transfer %s: a capture answered %d %s", id, c.ans.status, c.ans.body)
			}
		}
		if o.cancel != nil {
			sum.cancels++
			var tr transferJSON
			_ = json.Unmarshal(o.cancel.body, &tr)
			switch {
			case o.cancel.status == http.StatusOK && tr.Status == "cancelled" && row.status != "cancelled":
				t.Errorf("transfer %s: the cancel answered cancelled, the transfer ended %s", id, row.status)
			case o.cancel.status == http.StatusConflict && row.status == "cancelled" && row.failureCode != "hold_expired":
				t.Errorf("transfer %s: the cancel answered 409, the transfer ended cancelled", id)
			case o.cancel.status != http.StatusOK && o.cancel.status != http.StatusConflict:
				t.Errorf("transfer %s: the cancel answered %d %s", id, o.cancel.status, o.cancel.body)
			}
		}
	}

	// Every transfer in the ledger was asked for, and moved money exactly as its status says.
	want := map[string][][]string{
		"completed": {{"credit", "debit"}},
		"failed":    {nil, {"debit", "refund"}},
		"cancelled": {nil},
	}
	for id, row := range rows {
		if _, asked := b.byID[id]; !asked && !w.deposits[id] {
			sum.invented++
			t.Errorf("transfer %s (%s, %s): in the ledger, but no client asked for it", id, row.kind, row.status)
		}
		// A transfer still in flight is counted by drain; its entries are not yet what they will be.
		if _, final := want[row.status]; final && !slices.ContainsFunc(want[row.status], func(k []string) bool { return slices.Equal(k, entries[id]) }) {
			sum.duplicated++
			t.Errorf("transfer %s is %s with journal entries %v", id, row.status, entries[id])
		}
	}

	// Each user account holds what its completed transfers say, and nothing stays reserved.
	wantBalance := map[string]int64{}
	for _, row := range rows {
		if row.status == "completed" {
			wantBalance[row.to] += row.moved()
			wantBalance[row.from] -= row.moved()
		}
	}
	q, err = s.db.Query(`SELECT id::text, balance, reserved FROM accounts WHERE kind = 'user'`)
	if err != nil {
		t.Fatalf("accounts: %v", err)
	}
	for q.Next() {
		var id string
		var balance, reserved int64
		if err := q.Scan(&id, &balance, &reserved); err != nil {
			t.Fatalf("accounts: %v", err)
		}
		if balance != wantBalance[id] || reserved != 0 {
			sum.balanceErrors++
			t.Errorf("account %s: balance %d reserved %d, its completed transfers make %d reserved 0", id, balance, reserved, wantBalance[id])
		}
	}
	q.Close()
	after := s.totals()
	sum.conserved = maps.Equal(before, after)
	if !sum.conserved {
		t.Errorf("totals by currency were %v before the load and are %v after", before, after)
	}
	return sum
}
