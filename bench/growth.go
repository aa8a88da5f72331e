package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

// GrowthLedger is what the growth runs need of the ledger.
type GrowthLedger interface {
	CreateUser(ctx context.Context, u transfer.User) (transfer.User, error)
	CreateAccount(ctx context.Context, in transfer.NewAccount) (transfer.Account, bool, error)
	SeedDeposits(ctx context.Context, cur transfer.Currency, accounts []uuid.UUID, n int) error
	ListEntries(ctx context.Context, accountID uuid.UUID, p transfer.Page) (transfer.List[transfer.Entry], error)
	ListTransfers(ctx context.Context, f transfer.TransferFilter, p transfer.Page) (transfer.List[transfer.Transfer], error)
}

// GrowthConfig shapes the growth runs.
type GrowthConfig struct {
	// Sizes are the journal sizes, in entries, at which the lists and the audit are measured,
	// smallest first.
	Sizes []int
	// Accounts share the deposits round robin; one of them is the account whose history is read.
	Accounts int
	// Pages is how many pages a walk reads, and PageLimit their size.
	Pages, PageLimit int
	// Progress, if set, gets a line per size.
	Progress io.Writer
}

// GrowthPoint is what one journal size measured. Durations are medians of repeated reads, so
// that one slow read on a busy machine does not decide the figure.
type GrowthPoint struct {
	Entries int `json:"entries"`
	// HistoryFirst is the first page of one account's entries; HistoryWalk a page's mean over a
	// walk of Pages pages from the first.
	HistoryFirst time.Duration `json:"history_first_page"`
	HistoryWalk  time.Duration `json:"history_page_in_walk"`
	// AccountTransfers is the first page of one account's transfers, UserTransfers of all the
	// transfers its owner may see, and AllTransfers of every transfer (an admin's list).
	AccountTransfers time.Duration `json:"account_transfers_first_page"`
	UserTransfers    time.Duration `json:"user_transfers_first_page"`
	AllTransfers     time.Duration `json:"all_transfers_first_page"`
	// TransfersWalk is a page's mean over a walk of Pages pages of the account's transfers.
	TransfersWalk time.Duration `json:"account_transfers_page_in_walk"`
	// Audit is one full audit of the ledger, and AuditPerEntry that divided by the journal's size.
	Audit         time.Duration `json:"audit"`
	AuditPerEntry time.Duration `json:"audit_per_entry"`
}

// Growth grows a journal of deposits through the sizes and measures, at each, the reads a user
// makes (an account's history, its transfers, all transfers) and the audit. Keyset pages over
// indexes keep the reads flat as the journal grows; the audit reads everything, and AuditPerEntry
// shows how its cost per entry changes with size.
func Growth(ctx context.Context, l GrowthLedger, audit func(context.Context) error, cfg GrowthConfig) ([]GrowthPoint, error) {
	if cfg.Accounts < 1 {
		cfg.Accounts = 10
	}
	if cfg.Pages < 1 {
		cfg.Pages = 20
	}
	if cfg.PageLimit < 1 {
		cfg.PageLimit = transfer.DefaultPageLimit
	}
	const cur = transfer.Currency("USD")
	owner, err := l.CreateUser(ctx, transfer.User{ID: uuid.New(), Email: "growth-" + uuid.NewString() + "@bench.invalid",
		PasswordHash: "-", Role: transfer.RoleUser})
	if err != nil {
		return nil, err
	}
	accounts := make([]uuid.UUID, cfg.Accounts)
	for i := range accounts {
		a, _, err := l.CreateAccount(ctx, transfer.NewAccount{OwnerID: owner.ID, Currency: cur})
		if err != nil {
			return nil, err
		}
		accounts[i] = a.ID
	}
	first := transfer.Page{Limit: cfg.PageLimit}
	var points []GrowthPoint
	entries := 0
	for _, size := range cfg.Sizes {
		if deposits := (size - entries) / 2; deposits > 0 {
			if err := l.SeedDeposits(ctx, cur, accounts, deposits); err != nil {
				return nil, err
			}
			entries += 2 * deposits
		}
		p := GrowthPoint{Entries: entries}
		var err error
		measure := func(f func() error) time.Duration {
			d, e := median(f)
			err = cmpErr(err, e)
			return d
		}
		p.HistoryFirst = measure(func() error { _, e := l.ListEntries(ctx, accounts[0], first); return e })
		// walkMean is a page's mean time in a walk of up to cfg.Pages pages of list from the first,
		// from the median of nine walks.
		walkMean := func(list func(transfer.Page) (string, error)) time.Duration {
			var pages int
			total := measure(func() (e error) {
				pages, e = walk(cfg.Pages, list, first)
				return e
			})
			return total / time.Duration(max(pages, 1))
		}
		p.HistoryWalk = walkMean(func(pg transfer.Page) (string, error) {
			r, e := l.ListEntries(ctx, accounts[0], pg)
			return r.NextCursor, e
		})
		account := transfer.TransferFilter{AccountID: accounts[0]}
		p.AccountTransfers = measure(func() error { _, e := l.ListTransfers(ctx, account, first); return e })
		p.UserTransfers = measure(func() error {
			_, e := l.ListTransfers(ctx, transfer.TransferFilter{VisibleTo: owner.ID}, first)
			return e
		})
		p.AllTransfers = measure(func() error { _, e := l.ListTransfers(ctx, transfer.TransferFilter{}, first); return e })
		p.TransfersWalk = walkMean(func(pg transfer.Page) (string, error) {
			r, e := l.ListTransfers(ctx, account, pg)
			return r.NextCursor, e
		})
		start := time.Now()
		err = cmpErr(err, audit(ctx))
		p.Audit = time.Since(start)
		p.AuditPerEntry = p.Audit / time.Duration(max(entries, 1))
		if err != nil {
			return nil, fmt.Errorf("bench: growth at %d entries: %w", entries, err)
		}
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "growth: %d entries: history page %s, account's transfers %s, audit %s\n",
				entries, p.HistoryFirst, p.AccountTransfers, p.Audit)
		}
		points = append(points, p)
	}
	return points, nil
}

// walk reads up to n pages of a list from the first, and tells how many it read.
func walk(n int, list func(transfer.Page) (string, error), p transfer.Page) (int, error) {
	for i := range n {
		next, err := list(p)
		if err != nil || next == "" {
			return i + 1, err
		}
		p.Cursor = next
	}
	return n, nil
}

// median runs f nine times and returns the median duration and the first error.
func median(f func() error) (time.Duration, error) {
	ds := make([]time.Duration, 9)
	var err error
	for i := range ds {
		start := time.Now()
		err = cmpErr(err, f())
		ds[i] = time.Since(start)
	}
	slices.Sort(ds)
	return ds[len(ds)/2], err
}

// cmpErr keeps the first error.
func cmpErr(first, next error) error {
	if first != nil {
		return first
	}
	return next
}

// WriteGrowthMarkdown writes the growth points as a Markdown table, in milliseconds.
func WriteGrowthMarkdown(w io.Writer, points []GrowthPoint) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }
	fmt.Fprintln(w, "| journal entries | history, first page | history, page in a walk | account's transfers, first page | account's transfers, page in a walk | a user's transfers, first page | all transfers, first page | audit | audit per 1000 entries |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, p := range points {
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", p.Entries, ms(p.HistoryFirst), ms(p.HistoryWalk),
			ms(p.AccountTransfers), ms(p.TransfersWalk), ms(p.UserTransfers), ms(p.AllTransfers), ms(p.Audit), ms(p.AuditPerEntry*1000))
	}
}
