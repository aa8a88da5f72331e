package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Invariant numbers follow the spec's ledger.md.
const (
	InvConservation    = 1
	InvJournal         = 2
	InvHolds           = 3
	InvNoOverdraft     = 4
	InvTransferEntries = 5
	InvWorkflows       = 6
)

// Violation is one broken invariant about one subject: an account, a transfer or a currency.
type Violation struct {
	Invariant int    `json:"invariant"`
	Name      string `json:"name"`
	// Subject is what the violation is about, such as "account 6f1c...", "transfer 93b2..." or "currency USD".
	Subject string `json:"subject"`
	Detail  string `json:"detail"`
}

// AuditReport is what Audit found.
type AuditReport struct {
	Accounts   int64       `json:"accounts"`
	Transfers  int64       `json:"transfers"`
	Entries    int64       `json:"entries"`
	InFlight   int64       `json:"in_flight"`
	Violations []Violation `json:"violations"`
	// WorkflowsChecked says whether invariant 6 was checked (it needs Temporal).
	WorkflowsChecked bool `json:"workflows_checked"`
	// WorkflowResultsChecked says whether invariant 8 was checked (it needs Temporal's visibility).
	WorkflowResultsChecked bool `json:"workflow_results_checked"`
}

// OK reports whether no invariant is violated.
func (r AuditReport) OK() bool { return len(r.Violations) == 0 }

// WorkflowChecker tells whether a transfer's workflow is running. Audit uses it for invariant 6.
type WorkflowChecker interface {
	// WorkflowRunning reports whether the workflow with this id is running; an error means it could
	// not tell (Temporal unreachable), not that the workflow is missing.
	WorkflowRunning(ctx context.Context, workflowID string) (bool, error)
}

// auditQuery is one SQL check: each row it returns is a violation about Subject, explained by Detail.
type auditQuery struct {
	invariant int
	name      string
	sql       string
}

var auditQueries = []auditQuery{
	// Between its debit and its credit a transfer's amount (its captured amount, once captured) is in
	// transit: it has left the source and
	// not yet reached the destination. Conservation counts it.
	{InvConservation, "conservation", `
		SELECT 'currency ' || b.currency AS subject,
		       format('sum of balances is %s and %s is in transit, which sum to %s, not 0',
		              b.total, coalesce(t.total, 0), b.total + coalesce(t.total, 0)) AS detail
		FROM (SELECT currency, sum(balance) AS total FROM accounts GROUP BY currency) b
		LEFT JOIN (SELECT t.currency, sum(coalesce(x.captured_amount, t.amount)) AS total
		           FROM transfers t LEFT JOIN transfer_terms x ON x.transfer_id = t.id
		           WHERE t.status = 'debited' GROUP BY t.currency) t
		       ON t.currency = b.currency
		WHERE b.total + coalesce(t.total, 0) <> 0`},
	{InvJournal, "journal equals balance", `
		SELECT 'account ' || a.id AS subject,
		       format('balance %s, entries sum %s, entry count %s, seq range %s..%s, entry_seq %s, last balance_after %s',
		              a.balance, coalesce(e.total, 0), coalesce(e.n, 0), e.lo, e.hi, a.entry_seq, last.balance_after) AS detail
		FROM accounts a
		LEFT JOIN (SELECT account_id, sum(amount) AS total, count(*) AS n, min(seq) AS lo, max(seq) AS hi
		           FROM entries GROUP BY account_id) e ON e.account_id = a.id
		LEFT JOIN LATERAL (SELECT balance_after FROM entries WHERE account_id = a.id ORDER BY seq DESC LIMIT 1) last ON true
		WHERE a.balance <> coalesce(e.total, 0)
		   OR a.entry_seq <> coalesce(e.n, 0)
		   OR (e.n > 0 AND (e.lo <> 1 OR e.hi <> e.n OR last.balance_after <> a.balance))`},
	{InvJournal, "journal running balance", `
		SELECT 'account ' || account_id AS subject,
		       format('entry seq %s has balance_after %s, but the entries up to it sum to %s', seq, balance_after, running) AS detail
		FROM (SELECT account_id, seq, balance_after,
		             sum(amount) OVER (PARTITION BY account_id ORDER BY seq) AS running
		      FROM entries) r
		WHERE balance_after <> running`},
	{InvHolds, "holds equal reserved", `
		SELECT 'account ' || a.id AS subject,
		       format('reserved %s, but held holds sum to %s', a.reserved, coalesce(h.total, 0)) AS detail
		FROM accounts a
		LEFT JOIN (SELECT account_id, sum(amount) AS total FROM holds WHERE status = 'held' GROUP BY account_id) h
		       ON h.account_id = a.id
		WHERE a.reserved <> coalesce(h.total, 0)`},
	{InvNoOverdraft, "no overdraft", `
		SELECT 'account ' || id AS subject,
		       format('balance %s, reserved %s, available %s', balance, reserved, balance - reserved) AS detail
		FROM accounts
		WHERE kind <> 'system' AND (reserved < 0 OR balance - reserved < 0)`},
	{InvTransferEntries, "transfer equals entries", `
		WITH e AS (
		    SELECT en.transfer_id,
		           count(*) FILTER (WHERE en.kind = 'debit') AS debits,
		           count(*) FILTER (WHERE en.kind = 'credit') AS credits,
		           count(*) FILTER (WHERE en.kind = 'refund') AS refunds,
		           bool_and(CASE en.kind WHEN 'debit' THEN en.account_id = t.from_account_id AND en.amount = -coalesce(x.captured_amount, t.amount)
		                                 WHEN 'credit' THEN en.account_id = t.to_account_id AND en.amount = coalesce(x.captured_amount, t.amount)
		                                 ELSE en.account_id = t.from_account_id AND en.amount = coalesce(x.captured_amount, t.amount) END) AS right_sides
		    FROM entries en JOIN transfers t ON t.id = en.transfer_id
		    LEFT JOIN transfer_terms x ON x.transfer_id = t.id
		    GROUP BY en.transfer_id)
		SELECT 'transfer ' || t.id AS subject,
		       format('status %s with %s debits, %s credits, %s refunds (right accounts and amounts: %s), hold %s',
		              t.status, coalesce(e.debits, 0), coalesce(e.credits, 0), coalesce(e.refunds, 0),
		              coalesce(e.right_sides, true), coalesce(h.status, 'none')) AS detail
		FROM transfers t
		LEFT JOIN e ON e.transfer_id = t.id
		LEFT JOIN holds h ON h.transfer_id = t.id
		WHERE NOT coalesce(e.right_sides, true)
		   OR NOT coalesce(CASE t.status
		       WHEN 'scheduled' THEN e.transfer_id IS NULL AND h.transfer_id IS NULL
		       WHEN 'pending'   THEN e.transfer_id IS NULL AND h.transfer_id IS NULL
		       WHEN 'reserved'  THEN e.transfer_id IS NULL AND h.status = 'held'
		       WHEN 'debited'   THEN e.debits = 1 AND e.credits = 0 AND e.refunds = 0 AND h.status = 'posted'
		       WHEN 'completed' THEN e.debits = 1 AND e.credits = 1 AND e.refunds = 0 AND h.status = 'posted'
		       ELSE (e.transfer_id IS NULL AND coalesce(h.status, 'released') = 'released')
		         OR (e.debits = 1 AND e.credits = 0 AND e.refunds = 1 AND h.status = 'posted')
		   END, false)`},
	// The terms of holds and schedules (migration 0007): a captured amount is at most the amount
	// and belongs to a manual transfer that left reserved by its capture; a manual transfer past
	// reserved, other than one that ended without moving money, was captured; a held transfer has
	// its expiry; a scheduled transfer has its time.
	{InvTransferEntries, "hold and schedule terms", `
		SELECT 'transfer ' || t.id AS subject,
		       format('status %s, capture method %s, captured %s of %s, hold expires %s, scheduled for %s',
		              t.status, coalesce(x.capture_method, 'automatic'), coalesce(x.captured_amount::text, 'nothing'),
		              t.amount, coalesce(x.hold_expires_at::text, 'never'), coalesce(x.scheduled_for::text, 'no time')) AS detail
		FROM transfers t LEFT JOIN transfer_terms x ON x.transfer_id = t.id
		WHERE x.captured_amount > t.amount
		   OR (x.captured_amount IS NOT NULL AND t.status IN ('scheduled', 'pending', 'reserved'))
		   OR (x.capture_method = 'manual' AND x.captured_amount IS NULL AND t.status IN ('debited', 'completed'))
		   OR (x.capture_method = 'manual' AND t.status = 'reserved' AND x.hold_expires_at IS NULL)
		   OR (t.status = 'scheduled' AND x.scheduled_for IS NULL)`},
	// Every transfer recorded since migration 0011 (or with a creation event) has one creation
	// event, at most one event of each type, a held event when it is a manual transfer held or
	// captured (and none when it is not manual), and, once final, the one end event of its status.
	{InvTransferEntries, "events", `
		SELECT 'transfer ' || t.id AS subject,
		       format('status %s, but its events are %s', t.status, coalesce(string_agg(e.type, ', ' ORDER BY e.created_at), 'none')) AS detail
		FROM transfers t LEFT JOIN events e ON e.transfer_id = t.id LEFT JOIN transfer_terms x ON x.transfer_id = t.id
		WHERE t.created_at > (SELECT applied_at FROM schema_migrations WHERE version = '0011_events')
		   OR EXISTS (SELECT FROM events c WHERE c.transfer_id = t.id AND c.type = 'transfer.created')
		GROUP BY t.id, t.status, x.capture_method, x.captured_amount
		HAVING NOT coalesce(bool_or(e.type = 'transfer.created'), false)
		    OR count(e.id) <> count(DISTINCT e.type)
		    OR (x.capture_method = 'manual' AND (x.captured_amount IS NOT NULL OR t.status = 'reserved')
		        AND NOT coalesce(bool_or(e.type = 'transfer.held'), false))
		    OR (x.capture_method IS DISTINCT FROM 'manual' AND coalesce(bool_or(e.type = 'transfer.held'), false))
		    OR (t.status IN ('completed', 'failed', 'cancelled')
		        AND count(*) FILTER (WHERE e.type IN ('transfer.completed', 'transfer.failed', 'transfer.cancelled')) <> 1)
		    OR (t.status IN ('completed', 'failed', 'cancelled') AND NOT bool_or(e.type = 'transfer.' || t.status))
		    OR (t.status NOT IN ('completed', 'failed', 'cancelled')
		        AND bool_or(e.type IN ('transfer.completed', 'transfer.failed', 'transfer.cancelled')))`},
	// An Idempotency-Key names a transfer that its caller created (migration 0009): a key naming
	// another's transfer would replay it to the wrong user.
	{InvTransferEntries, "idempotency key", `
		SELECT 'idempotency key of user ' || k.caller_id AS subject,
		       'names transfer ' || k.resource_id || CASE WHEN t.id IS NULL THEN ', which does not exist'
		            ELSE ', which user ' || coalesce(t.initiated_by::text, 'nobody') || ' created' END AS detail
		FROM idempotency_keys k LEFT JOIN transfers t ON t.id = k.resource_id
		WHERE k.scope = 'transfer' AND t.initiated_by IS DISTINCT FROM k.caller_id`},
	{InvTransferEntries, "entry without transfer", `
		SELECT 'entry ' || e.id AS subject, 'names transfer ' || e.transfer_id || ', which does not exist' AS detail
		FROM entries e LEFT JOIN transfers t ON t.id = e.transfer_id WHERE t.id IS NULL`},
	// The checks below are the rules of migration 0004's foreign keys, for rows written before it or
	// with a constraint dropped. They read the tables' own columns, not the columns 0004 derives.
	{InvTransferEntries, "transfer currency", `
		SELECT 'transfer ' || t.id AS subject,
		       format('currency %s, but source %s holds %s and destination %s holds %s', t.currency,
		              t.from_account_id, coalesce(f.currency, 'nothing (missing)'),
		              t.to_account_id, coalesce(d.currency, 'nothing (missing)')) AS detail
		FROM transfers t
		LEFT JOIN accounts f ON f.id = t.from_account_id
		LEFT JOIN accounts d ON d.id = t.to_account_id
		WHERE f.currency IS DISTINCT FROM t.currency OR d.currency IS DISTINCT FROM t.currency`},
	// A deposit comes from the system account, a withdrawal goes to it, and a transfer is between
	// user accounts.
	{InvTransferEntries, "transfer kind", `
		SELECT 'transfer ' || t.id AS subject,
		       format('a %s needs a %s source and a %s destination, but source %s is %s and destination %s is %s',
		              t.kind, w.from_kind, w.to_kind, t.from_account_id, coalesce(f.kind, 'missing'),
		              t.to_account_id, coalesce(d.kind, 'missing')) AS detail
		FROM transfers t
		CROSS JOIN LATERAL (SELECT CASE t.kind WHEN 'deposit' THEN 'system' ELSE 'user' END AS from_kind,
		                           CASE t.kind WHEN 'withdrawal' THEN 'system' ELSE 'user' END AS to_kind) w
		LEFT JOIN accounts f ON f.id = t.from_account_id
		LEFT JOIN accounts d ON d.id = t.to_account_id
		WHERE f.kind IS DISTINCT FROM w.from_kind OR d.kind IS DISTINCT FROM w.to_kind`},
	{InvTransferEntries, "hold matches transfer", `
		SELECT 'transfer ' || h.transfer_id AS subject,
		       CASE WHEN t.id IS NULL THEN 'has a hold, but no such transfer exists'
		            ELSE format('hold of %s on account %s, but the transfer is of %s from account %s',
		                        h.amount, h.account_id, t.amount, t.from_account_id) END AS detail
		FROM holds h LEFT JOIN transfers t ON t.id = h.transfer_id
		WHERE t.id IS NULL OR h.account_id <> t.from_account_id OR h.amount <> t.amount`},
	// A debit is the amount (the captured amount, once captured) out of the source, a refund the
	// same back to it, and a credit the same into the destination.
	{InvTransferEntries, "entry matches transfer", `
		SELECT 'entry ' || e.id AS subject,
		       format('%s of %s on account %s, but transfer %s is of %s from account %s to account %s',
		              e.kind, e.amount, e.account_id, t.id, t.amount, t.from_account_id, t.to_account_id) AS detail
		FROM entries e JOIN transfers t ON t.id = e.transfer_id
		LEFT JOIN transfer_terms x ON x.transfer_id = t.id
		WHERE e.account_id <> CASE e.kind WHEN 'credit' THEN t.to_account_id ELSE t.from_account_id END
		   OR e.amount <> CASE e.kind WHEN 'debit' THEN -1 ELSE 1 END * coalesce(x.captured_amount, t.amount)`},
}

// Audit checks every invariant of ledger.md against the database. With a non-nil checker it also
// checks invariant 6: every transfer that is not final has a running workflow. The error is for
// failures to check, never for violations, which are in the report.
func (s *Store) Audit(ctx context.Context, wf WorkflowChecker) (AuditReport, error) {
	return s.AuditWith(ctx, wf, AuditOptions{})
}

// AuditOptions tunes Audit.
type AuditOptions struct {
	// StuckAfter is how long a saga step may keep failing, with no progress of its transfer, before
	// the audit reports it; zero means DefaultStuckAfter.
	StuckAfter time.Duration
}

// AuditWith is Audit with options.
func (s *Store) AuditWith(ctx context.Context, wf WorkflowChecker, opts AuditOptions) (AuditReport, error) {
	if opts.StuckAfter <= 0 {
		opts.StuckAfter = DefaultStuckAfter
	}
	db := s.db.WithContext(ctx)
	var counts struct{ Accounts, Transfers, Entries, InFlight int64 }
	if err := db.Raw(`SELECT (SELECT count(*) FROM accounts) AS accounts, (SELECT count(*) FROM transfers) AS transfers,
		(SELECT count(*) FROM entries) AS entries,
		(SELECT count(*) FROM transfers WHERE status IN ('scheduled', 'pending', 'reserved', 'debited')) AS in_flight`).
		Scan(&counts).Error; err != nil {
		return AuditReport{}, fmt.Errorf("ledger: audit: %w", err)
	}
	r := AuditReport{Accounts: counts.Accounts, Transfers: counts.Transfers, Entries: counts.Entries,
		InFlight: counts.InFlight, Violations: []Violation{}}
	for _, q := range auditQueries {
		var rows []struct{ Subject, Detail string }
		if err := db.Raw(q.sql).Scan(&rows).Error; err != nil {
			return AuditReport{}, fmt.Errorf("ledger: audit %s: %w", q.name, err)
		}
		for _, row := range rows {
			r.Violations = append(r.Violations, Violation{Invariant: q.invariant, Name: q.name, Subject: row.Subject, Detail: row.Detail})
		}
	}
	stuck, err := s.auditStuckSteps(ctx, opts.StuckAfter)
	if err != nil {
		return AuditReport{}, err
	}
	r.Violations = append(r.Violations, stuck...)
	if wf == nil {
		return r, nil
	}
	var ids []uuid.UUID
	if err := db.Raw(`SELECT id FROM transfers WHERE status IN ('scheduled', 'pending', 'reserved', 'debited') ORDER BY created_at`).
		Scan(&ids).Error; err != nil {
		return AuditReport{}, fmt.Errorf("ledger: audit workflows: %w", err)
	}
	for _, id := range ids {
		running, err := wf.WorkflowRunning(ctx, id.String())
		if err != nil {
			return AuditReport{}, fmt.Errorf("ledger: audit workflow %s: %w", id, err)
		}
		if !running {
			// The workflow may have finished, or the transfer been accepted, after the list was read:
			// only a transfer still not final and older than a start's round trip is a violation.
			var stillOpen int64
			if err := db.Raw(`SELECT count(*) FROM transfers WHERE id = ? AND status IN ('scheduled', 'pending', 'reserved', 'debited')
				AND created_at < now() - interval '10 seconds'`, id).Scan(&stillOpen).Error; err != nil {
				return AuditReport{}, fmt.Errorf("ledger: audit workflow %s: %w", id, err)
			}
			if stillOpen == 0 {
				continue
			}
			r.Violations = append(r.Violations, Violation{Invariant: InvWorkflows, Name: "workflow running",
				Subject: "transfer " + id.String(), Detail: "the transfer is not final, but its workflow is not running"})
		}
	}
	r.WorkflowsChecked = true
	if wr, ok := wf.(WorkflowResults); ok {
		vs, err := s.auditWorkflowResults(ctx, wr)
		if err != nil {
			return AuditReport{}, err
		}
		r.Violations = append(r.Violations, vs...)
		r.WorkflowResultsChecked = true
	}
	return r, nil
}
