package server

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

type createTransferRequest struct {
	ID            string            `json:"id"`
	FromAccountID string            `json:"from_account_id"`
	ToAccountID   string            `json:"to_account_id"`
	Amount        jsonAmount        `json:"amount"`
	Currency      string            `json:"currency"`
	Description   string            `json:"description"`
	Labels        map[string]string `json:"labels"`
	CaptureMethod string            `json:"capture_method"`
	HoldExpiresAt string            `json:"hold_expires_at"`
	ScheduledFor  string            `json:"scheduled_for"`
}

// moneyRequest is the body of deposits and withdrawals.
type moneyRequest struct {
	ID           string     `json:"id"`
	AccountID    string     `json:"account_id"`
	Amount       jsonAmount `json:"amount"`
	Currency     string     `json:"currency"`
	Description  string     `json:"description"`
	ScheduledFor string     `json:"scheduled_for"`
}

// parseTransferRequest validates a transfer body into a Request for the caller, with the values of
// the Idempotency-Key header, if any. It returns field errors together, and a 422 error (an
// unsupported currency) apart from them, so that malformed input is always a 400 first. It has no
// I/O, so it can be fuzzed.
func parseTransferRequest(req createTransferRequest, who caller, idempotencyKey []string) (transfer.Request, error) {
	var fe fieldErrors
	r := transfer.Request{Kind: transfer.KindTransfer, InitiatedBy: who.ID, APIKeyID: who.KeyID}
	r.ID, r.IdempotencyKey = requestedID(&fe, req.ID, idempotencyKey)
	r.FromAccountID = parseID(&fe, "from_account_id", req.FromAccountID)
	r.ToAccountID = parseID(&fe, "to_account_id", req.ToAccountID)
	r.Amount = req.Amount.check(&fe, "amount")
	cur, curErr := parseCurrency(&fe, "currency", req.Currency)
	r.Currency = cur
	checkText(&fe, "description", req.Description, maxDescription)
	r.Description = req.Description
	checkLabels(&fe, "labels", req.Labels)
	r.Labels = req.Labels
	parseTerms(&fe, &r, req.CaptureMethod, req.HoldExpiresAt, req.ScheduledFor)
	if err := fe.err(); err != nil {
		return r, err
	}
	return r, curErr
}

// parseTerms reads a transfer's capture method, hold expiry and schedule into r: their form, and
// the rules between them that do not depend on the clock (checkWindows has those). hold_expires_at
// needs capture_method manual.
func parseTerms(fe *fieldErrors, r *transfer.Request, method, holdExpiresAt, scheduledFor string) {
	switch transfer.CaptureMethod(method) {
	case "", transfer.CaptureAutomatic:
	case transfer.CaptureManual:
		r.CaptureMethod = transfer.CaptureManual
	default:
		fe.add("capture_method", "must be automatic or manual")
	}
	r.ScheduledFor = parseOptionalTime(fe, "scheduled_for", scheduledFor)
	r.HoldExpiresAt = parseOptionalTime(fe, "hold_expires_at", holdExpiresAt)
	if r.HoldExpiresAt != nil && !r.Manual() {
		fe.add("hold_expires_at", "is only for capture_method manual")
	}
	if r.HoldExpiresAt != nil && r.ScheduledFor != nil && !r.HoldExpiresAt.After(*r.ScheduledFor) {
		fe.add("hold_expires_at", "must be after scheduled_for")
	}
}

// parseOptionalTime parses an RFC 3339 time, kept to microseconds (PostgreSQL's precision) in UTC;
// nil when empty.
func parseOptionalTime(fe *fieldErrors, field, raw string) *time.Time {
	if raw == "" {
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		fe.add(field, "must be an RFC 3339 time such as 2026-12-01T09:00:00Z")
		return nil
	}
	t = t.UTC().Truncate(time.Microsecond)
	return &t
}

// windowErrors are the problems of a transfer's (or key's) times as field errors: the API's check
// (transfer.Request's Windows), and the ledger's again when it records a new one.
func windowErrors(problems []transfer.WindowProblem) fieldErrors {
	var fe fieldErrors
	for _, p := range problems {
		fe.add(p.Field, p.Message)
	}
	return fe
}

// requestedID returns what makes the request idempotent: the transfer id the client chose in the
// body, or its Idempotency-Key header (nil when absent), which the ledger maps per caller to the
// transfer it created; or neither (uuid.Nil and ""), and the service then picks the id.
func requestedID(fe *fieldErrors, bodyID string, key []string) (uuid.UUID, string) {
	id := parseOptionalID(fe, "id", bodyID)
	if key == nil {
		return id, ""
	}
	k := idempotencyKeyHeader(fe, key)
	switch {
	case k == "":
	case bodyID != "":
		fe.add("id", "send either an id or an Idempotency-Key header, not both")
	default:
		return uuid.Nil, k
	}
	return uuid.Nil, ""
}

// idempotencyKeyHeader returns the request's Idempotency-Key from its header values (nil when the
// header is absent): "" when absent, and "" with a field error when it is not one value of 1 to 255
// characters.
func idempotencyKeyHeader(fe *fieldErrors, key []string) string {
	if key == nil {
		return ""
	}
	if len(key) != 1 || len(key[0]) < 1 || len(key[0]) > maxIdempotencyKey {
		fe.add("Idempotency-Key", "must be one header of 1 to 255 characters")
		return ""
	}
	return key[0]
}

// handleCreateTransfer starts a transfer from one of the caller's accounts (an admin's: any).
func (s *Server) handleCreateTransfer(c *gin.Context) {
	var body createTransferRequest
	if !decodeJSON(c, &body) {
		return
	}
	r, err := parseTransferRequest(body, callerOf(c), c.Request.Header["Idempotency-Key"])
	if err != nil {
		abortWithError(c, err)
		return
	}
	if !s.admit(c) {
		return
	}
	defer releaseSubmit(c)
	if !s.ownsSource(c, r.FromAccountID, "from_account_id") {
		return
	}
	s.submit(c, r)
}

// handleCreateDeposit moves money into an account from its currency's system account; admins only.
func (s *Server) handleCreateDeposit(c *gin.Context) {
	if !callerOf(c).admin() {
		abortWithProblem(c, codeForbidden, "only an admin may make deposits")
		return
	}
	r, ok := s.parseMoneyRequest(c, transfer.KindDeposit)
	if !ok || !s.admit(c) {
		return
	}
	defer releaseSubmit(c)
	s.submit(c, r)
}

// handleCreateWithdrawal moves money out of an account to its currency's system account; the
// account's owner or an admin.
func (s *Server) handleCreateWithdrawal(c *gin.Context) {
	r, ok := s.parseMoneyRequest(c, transfer.KindWithdrawal)
	if !ok || !s.admit(c) {
		return
	}
	defer releaseSubmit(c)
	if !s.ownsSource(c, r.FromAccountID, "account_id") {
		return
	}
	s.submit(c, r)
}

// parseMoneyRequest reads a deposit or withdrawal body. The system account's side is left for the
// service to fill in.
func (s *Server) parseMoneyRequest(c *gin.Context, kind transfer.Kind) (transfer.Request, bool) {
	var body moneyRequest
	if !decodeJSON(c, &body) {
		return transfer.Request{}, false
	}
	var fe fieldErrors
	r := transfer.Request{Kind: kind, InitiatedBy: callerOf(c).ID, APIKeyID: callerOf(c).KeyID}
	r.ID, r.IdempotencyKey = requestedID(&fe, body.ID, c.Request.Header["Idempotency-Key"])
	account := parseID(&fe, "account_id", body.AccountID)
	if kind == transfer.KindDeposit {
		r.ToAccountID = account
	} else {
		r.FromAccountID = account
	}
	r.Amount = body.Amount.check(&fe, "amount")
	cur, curErr := parseCurrency(&fe, "currency", body.Currency)
	r.Currency = cur
	checkText(&fe, "description", body.Description, maxDescription)
	r.Description = body.Description
	r.ScheduledFor = parseOptionalTime(&fe, "scheduled_for", body.ScheduledFor)
	if err := fe.err(); err != nil {
		abortWithError(c, err)
		return transfer.Request{}, false
	}
	if curErr != nil {
		abortWithError(c, curErr)
		return transfer.Request{}, false
	}
	return r, true
}

// ownsSource answers 422 account_not_found unless the account exists and the caller owns it or is an
// admin: an account that is not the caller's is reported exactly like one that does not exist.
func (s *Server) ownsSource(c *gin.Context, id uuid.UUID, field string) bool {
	acct, err := s.ledger.Account(c.Request.Context(), id)
	if transfer.IsCode(err, transfer.CodeAccountNotFound) || (err == nil && !canSee(callerOf(c), acct)) {
		abortWithProblem(c, transfer.CodeAccountNotFound, "account "+id.String()+" not found", FieldError{Field: field, Message: "no such account of yours"})
		return false
	}
	if err != nil {
		abortWithError(c, err)
		return false
	}
	return true
}

// submit starts the transfer and answers: 202 for a new transfer (201 if ?wait= saw it end), 200 with
// Idempotent-Replayed: true for a repeat.
func (s *Server) submit(c *gin.Context, r transfer.Request) {
	wait, ok := s.parseWait(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	now := time.Now()
	problems := r.Windows(now)
	windowErr := windowErrors(problems).err()
	named := r.ID != uuid.Nil || r.IdempotencyKey != ""
	// The upper bounds only loosen with time, so a retry of an accepted request never fails them:
	// only a time that has passed may be a retry's.
	onlyPassed := len(problems) == len(r.Passed(now))
	if windowErr != nil && (!named || !onlyPassed) {
		abortWithError(c, windowErr)
		return
	}
	// A request named by its id or Idempotency-Key may be the retry of one accepted before its
	// scheduled_for passed: the ledger answers it from that transfer (a replay, or a conflict), and
	// refuses it, in the transaction that would record it, only if it is new. A retry racing its
	// first attempt waits there for that attempt's outcome. A new one is told what is wrong with its
	// times before anything the ledger found wrong with its accounts, as an unnamed one is.
	t, created, err := s.transfers.Submit(ctx, r)
	releaseSubmit(c)
	var business *transfer.Error
	var late *transfer.WindowError
	if windowErr != nil && (errors.As(err, &late) || errors.As(err, &business) && business.Code != transfer.CodeIdempotencyConflict) {
		err = windowErr
	}
	if err != nil {
		abortWithError(c, err)
		return
	}
	c.Set(ctxTransferID, t.ID.String())
	if wait > 0 && !t.Status.Final() {
		if t, err = s.transfers.Wait(ctx, t.ID, wait); err != nil {
			abortWithError(c, err)
			return
		}
	}
	c.Header("Location", "/v1/transfers/"+t.ID.String())
	status := http.StatusAccepted
	switch {
	case !created:
		c.Header("Idempotent-Replayed", "true")
		status = http.StatusOK
	case wait > 0 && t.Status.Final():
		status = http.StatusCreated
	}
	// The caller sees the source: a transfer's or a withdrawal's caller was checked to own it, and only
	// an admin makes deposits.
	c.JSON(status, toTransferJSON(t, true))
}

// parseWait reads ?wait=DURATION, at most MaxWait.
func (s *Server) parseWait(c *gin.Context) (time.Duration, bool) {
	raw, ok := c.GetQuery("wait")
	if !ok {
		return 0, true
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d < 0 || d > s.maxWait {
		abortWithError(c, fieldErrors{{Field: "wait", Message: "must be a duration such as 5s, from 0 to " + s.maxWait.String()}})
		return 0, false
	}
	return d, true
}

// visibleTransfer loads the transfer named by the path's id if the caller may see it: an owner of
// either account, or an admin. It also returns whether the caller sees the source: owns it, or is an
// admin.
func (s *Server) visibleTransfer(c *gin.Context) (t transfer.Transfer, ownsSource bool, ok bool) {
	var fe fieldErrors
	id := parseID(&fe, "id", c.Param("id"))
	if fe.err() != nil {
		abortWithProblem(c, transfer.CodeNotFound, "no transfer has this id")
		return transfer.Transfer{}, false, false
	}
	ctx := c.Request.Context()
	t, err := s.ledger.Transfer(ctx, id)
	if transfer.IsCode(err, transfer.CodeNotFound) {
		abortWithProblem(c, transfer.CodeNotFound, "no transfer "+id.String())
		return transfer.Transfer{}, false, false
	}
	if err != nil {
		abortWithError(c, err)
		return transfer.Transfer{}, false, false
	}
	c.Set(ctxTransferID, t.ID.String())
	who := callerOf(c)
	if who.admin() {
		return t, true, true
	}
	for i, accountID := range []uuid.UUID{t.FromAccountID, t.ToAccountID} {
		acct, err := s.ledger.Account(ctx, accountID)
		if err != nil {
			abortWithError(c, err)
			return transfer.Transfer{}, false, false
		}
		if canSee(who, acct) {
			return t, i == 0, true
		}
	}
	abortWithProblem(c, transfer.CodeNotFound, "no transfer "+id.String())
	return transfer.Transfer{}, false, false
}

func (s *Server) handleGetTransfer(c *gin.Context) {
	t, ownsSource, ok := s.visibleTransfer(c)
	if !ok {
		return
	}
	c.JSON(http.StatusOK, toTransferJSON(t, ownsSource))
}

// handleListTransfers lists the transfers touching the caller's accounts (an admin's: all), newest
// first, filtered by account_id, status and kind.
func (s *Server) handleListTransfers(c *gin.Context) {
	who := callerOf(c)
	var fe fieldErrors
	p := parsePage(c, &fe)
	f := transfer.TransferFilter{AccountID: parseOptionalID(&fe, "account_id", c.Query("account_id")),
		Status: transfer.Status(c.Query("status")), Kind: transfer.Kind(c.Query("kind"))}
	if f.Status != "" && !f.Status.Valid() {
		fe.add("status", "must be scheduled, pending, reserved, debited, completed, failed or cancelled")
	}
	if f.Kind != "" && !f.Kind.Valid() {
		fe.add("kind", "must be transfer, deposit or withdrawal")
	}
	if err := fe.err(); err != nil {
		abortWithError(c, err)
		return
	}
	if !who.admin() {
		f.VisibleTo = who.ID
	}
	ctx := c.Request.Context()
	list, err := s.ledger.ListTransfers(ctx, f, p)
	if err != nil {
		abortWithError(c, err)
		return
	}
	sees, err := s.seenSources(ctx, who, list.Items)
	if err != nil {
		abortWithError(c, err)
		return
	}
	c.JSON(http.StatusOK, toListJSON(list, func(t transfer.Transfer) transferJSON {
		return toTransferJSON(t, who.admin() || sees[t.FromAccountID])
	}))
}

// seenSources returns the source accounts of ts that the caller owns. An admin sees every source and
// needs none; for a user only the sources of transfers with a failure message matter, since that is
// all that tells the payer's view from the payee's, and each is looked up once.
func (s *Server) seenSources(ctx context.Context, who caller, ts []transfer.Transfer) (map[uuid.UUID]bool, error) {
	sees := map[uuid.UUID]bool{}
	if who.admin() {
		return sees, nil
	}
	looked := map[uuid.UUID]bool{}
	for _, t := range ts {
		if t.FailureMessage == "" || looked[t.FromAccountID] {
			continue
		}
		looked[t.FromAccountID] = true
		acct, err := s.ledger.Account(ctx, t.FromAccountID)
		if transfer.IsCode(err, transfer.CodeAccountNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		sees[t.FromAccountID] = canSee(who, acct)
	}
	return sees, nil
}

// outcomeMessages is the one table of the failure messages shown to a viewer who does not see a
// transfer's source: each names the outcome and nothing of either account, and says no more than the
// failure code does.
var outcomeMessages = map[transfer.Code]string{
	transfer.CodeInsufficientFunds: "the transfer failed for insufficient funds",
	transfer.CodeAccountInactive:   "the transfer failed: one of its accounts cannot send or receive money",
	transfer.CodeAccountNotFound:   "the transfer failed: one of its accounts does not exist",
	transfer.CodeCurrencyMismatch:  "the transfer failed: its currency is not its accounts' currency",
	transfer.CodeHoldExpired:       "the transfer's hold expired before it was captured",
}

// outcomeMessage is the neutral failure message of a transfer that ended without moving money: its
// code's entry in outcomeMessages, or else one that names only its status.
func outcomeMessage(t transfer.Transfer) string {
	if msg, ok := outcomeMessages[t.FailureCode]; ok {
		return msg
	}
	if t.Status == transfer.StatusCancelled {
		return "the transfer was cancelled"
	}
	return "the transfer failed"
}

type cancelRequest struct {
	Reason string `json:"reason"`
}

// handleCancelTransfer cancels a transfer that has not been debited: the source's owner or an admin,
// and for a manual transfer (a hold) the owner of either account. The body is optional.
func (s *Server) handleCancelTransfer(c *gin.Context) {
	t, ownsSource, ok := s.visibleTransfer(c)
	if !ok {
		return
	}
	if !ownsSource && t.CaptureMethod != transfer.CaptureManual {
		abortWithProblem(c, codeForbidden, "only the source account's owner or an admin may cancel a transfer")
		return
	}
	var req cancelRequest
	if c.Request.ContentLength != 0 && !decodeJSON(c, &req) {
		return
	}
	var fe fieldErrors
	checkText(&fe, "reason", req.Reason, maxCancelReasonLen)
	if err := fe.err(); err != nil {
		abortWithError(c, err)
		return
	}
	if err := s.recordRequest(c, transfer.AuditCancelRequested, t, map[string]any{"reason": req.Reason}); err != nil {
		abortWithError(c, err)
		return
	}
	t, err := s.transfers.Cancel(c.Request.Context(), t.ID, req.Reason)
	if err != nil {
		abortWithError(c, err)
		return
	}
	c.JSON(http.StatusOK, toTransferJSON(t, ownsSource))
}

type captureRequest struct {
	Amount *jsonAmount `json:"amount"`
}

// handleCaptureTransfer captures a manual transfer's hold, all of it or the amount asked for; the
// owner of either account or an admin. The body is optional. It answers 200 with the transfer once
// the ledger has captured it, or with ?wait= once it has ended or the wait ran out.
func (s *Server) handleCaptureTransfer(c *gin.Context) {
	t, ownsSource, ok := s.visibleTransfer(c)
	if !ok {
		return
	}
	var req captureRequest
	if c.Request.ContentLength != 0 && !decodeJSON(c, &req) {
		return
	}
	var fe fieldErrors
	var amount transfer.Amount
	if req.Amount != nil {
		amount = req.Amount.check(&fe, "amount")
	}
	if err := fe.err(); err != nil {
		abortWithError(c, err)
		return
	}
	wait, ok := s.parseWait(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	if err := s.recordRequest(c, transfer.AuditCaptureRequested, t, map[string]any{"amount": int64(amount)}); err != nil {
		abortWithError(c, err)
		return
	}
	t, err := s.transfers.Capture(ctx, t.ID, int64(amount))
	if transfer.IsCode(err, transfer.CodeAccountInactive) && !ownsSource {
		// The payee is not told the state of the payer's account.
		err = transfer.Errorf(transfer.CodeNotCapturable, "the transfer cannot be captured now; the hold stays until it is cancelled or expires")
	}
	if err != nil {
		abortWithError(c, err)
		return
	}
	if wait > 0 && !t.Status.Final() {
		if t, err = s.transfers.Wait(ctx, t.ID, wait); err != nil {
			abortWithError(c, err)
			return
		}
	}
	c.JSON(http.StatusOK, toTransferJSON(t, ownsSource))
}

// recordRequest records in the audit log that the caller asks for a cancel or a capture, before it
// is sent: the saga's step that decides it does not know the caller, and the ledger records the
// cancel or capture itself, in the statement that makes it, as the latest requester's (migration
// 0011). An amount of 0 asks for all of a hold.
func (s *Server) recordRequest(c *gin.Context, action string, t transfer.Transfer, detail map[string]any) error {
	return s.ledger.RecordAudit(c.Request.Context(), callerOf(c).actor(), action, "transfer", t.ID, detail)
}
