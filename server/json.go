package server

import (
	"time"

	"github.com/transferd/transferd/transfer"
)

// The response bodies. They are separate from the domain types so that the wire format changes only
// on purpose.

type userJSON struct {
	ID        string `json:"id"`
	Email     string `json:"email"`
	Name      string `json:"name"`
	Role      string `json:"role"`
	Status    string `json:"status"`
	CreatedAt string `json:"created_at"`
}

func toUserJSON(u transfer.User) userJSON {
	status := u.Status
	if status == "" {
		status = transfer.UserActive
	}
	return userJSON{ID: u.ID.String(), Email: u.Email, Name: u.Name, Role: string(u.Role), Status: string(status), CreatedAt: timestamp(u.CreatedAt)}
}

type accountJSON struct {
	ID         string            `json:"id"`
	OwnerID    *string           `json:"owner_id"`
	Kind       string            `json:"kind"`
	Currency   string            `json:"currency"`
	Balance    int64             `json:"balance"`
	Available  int64             `json:"available"`
	Reserved   int64             `json:"reserved"`
	Status     string            `json:"status"`
	ExternalID *string           `json:"external_id"`
	Labels     map[string]string `json:"labels"`
	CreatedAt  string            `json:"created_at"`
	UpdatedAt  string            `json:"updated_at"`
}

func toAccountJSON(a transfer.Account) accountJSON {
	out := accountJSON{ID: a.ID.String(), Kind: string(a.Kind), Currency: string(a.Currency), Balance: a.Balance,
		Available: a.Available(), Reserved: a.Reserved, Status: string(a.Status), Labels: a.Labels,
		CreatedAt: timestamp(a.CreatedAt), UpdatedAt: timestamp(a.UpdatedAt)}
	if a.Kind == transfer.AccountUser {
		owner := a.OwnerID.String()
		out.OwnerID = &owner
	}
	if a.ExternalID != "" {
		out.ExternalID = &a.ExternalID
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	return out
}

type entryJSON struct {
	ID           string `json:"id"`
	AccountID    string `json:"account_id"`
	TransferID   string `json:"transfer_id"`
	Kind         string `json:"kind"`
	Amount       int64  `json:"amount"`
	BalanceAfter int64  `json:"balance_after"`
	Seq          int64  `json:"seq"`
	CreatedAt    string `json:"created_at"`
}

func toEntryJSON(e transfer.Entry) entryJSON {
	return entryJSON{ID: e.ID.String(), AccountID: e.AccountID.String(), TransferID: e.TransferID.String(),
		Kind: string(e.Kind), Amount: e.Amount, BalanceAfter: e.BalanceAfter, Seq: e.Seq, CreatedAt: timestamp(e.CreatedAt)}
}

type transferJSON struct {
	ID             string            `json:"id"`
	Kind           string            `json:"kind"`
	FromAccountID  string            `json:"from_account_id"`
	ToAccountID    string            `json:"to_account_id"`
	Amount         int64             `json:"amount"`
	Currency       string            `json:"currency"`
	Status         string            `json:"status"`
	FailureCode    *string           `json:"failure_code"`
	FailureMessage *string           `json:"failure_message"`
	Description    string            `json:"description"`
	Labels         map[string]string `json:"labels"`
	CreatedAt      string            `json:"created_at"`
	UpdatedAt      string            `json:"updated_at"`
	CompletedAt    *string           `json:"completed_at"`
	CaptureMethod  string            `json:"capture_method"`
	HoldExpiresAt  *string           `json:"hold_expires_at"`
	CapturedAmount *int64            `json:"captured_amount"`
	ScheduledFor   *string           `json:"scheduled_for"`
}

// toTransferJSON renders a transfer for a viewer. seesSource says whether the viewer may see its
// source account (its owner, or an admin): only such a viewer gets the ledger's failure message, which
// can describe the source (its available balance, a freeze) or quote the reason its owner gave for a
// cancel. Any other viewer, a payee, gets the outcome's neutral message instead.
func toTransferJSON(t transfer.Transfer, seesSource bool) transferJSON {
	out := transferJSON{ID: t.ID.String(), Kind: string(t.Kind), FromAccountID: t.FromAccountID.String(),
		ToAccountID: t.ToAccountID.String(), Amount: int64(t.Amount), Currency: string(t.Currency),
		Status: string(t.Status), Description: t.Description, Labels: t.Labels,
		CreatedAt: timestamp(t.CreatedAt), UpdatedAt: timestamp(t.UpdatedAt),
		CaptureMethod: string(t.CaptureMethod), HoldExpiresAt: optionalTimestamp(t.HoldExpiresAt),
		CapturedAmount: t.CapturedAmount, ScheduledFor: optionalTimestamp(t.ScheduledFor)}
	if out.CaptureMethod == "" {
		out.CaptureMethod = string(transfer.CaptureAutomatic)
	}
	if t.FailureCode != "" {
		code := string(t.FailureCode)
		out.FailureCode = &code
	}
	if t.FailureMessage != "" {
		msg := t.FailureMessage
		if !seesSource {
			msg = outcomeMessage(t)
		}
		out.FailureMessage = &msg
	}
	if t.CompletedAt != nil {
		ts := timestamp(*t.CompletedAt)
		out.CompletedAt = &ts
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	return out
}

// listJSON is a page of a list.
type listJSON[T any] struct {
	Data       []T     `json:"data"`
	NextCursor *string `json:"next_cursor"`
}

func toListJSON[D, J any](l transfer.List[D], conv func(D) J) listJSON[J] {
	out := listJSON[J]{Data: make([]J, 0, len(l.Items))}
	for _, item := range l.Items {
		out.Data = append(out.Data, conv(item))
	}
	if l.NextCursor != "" {
		out.NextCursor = &l.NextCursor
	}
	return out
}

// optionalTimestamp formats a time that may be absent (null).
func optionalTimestamp(t *time.Time) *string {
	if t == nil {
		return nil
	}
	ts := timestamp(*t)
	return &ts
}

// timestamp formats a time as RFC 3339 in UTC, with microseconds, Postgres's precision.
func timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z07:00") }
