package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/transferd/transferd/server"
	"github.com/transferd/transferd/transfer"
)

// hostile is the world the hostile tests attack. Alice has money, accounts, a completed transfer
// made with an Idempotency-Key and a transfer held before its reserve (so that it could still be
// cancelled). Bob, the attacker, has a token and two empty EUR accounts, so that no request of his
// can move money or name one of Alice's USD accounts as the destination of a transfer he could
// then list. Every probe is sent as bob, anonymously, or with a forged, expired or malformed
// token; none as Alice or the admin.
type hostile struct {
	a *api
	// vars are the values of the placeholders, such as {A_ACCT}, that probes are written with.
	vars map[string]string
	// secrets are Alice's ids and private strings, lower case: no answer may contain one that its
	// request did not.
	secrets []string
	// auth are the Authorization headers of each kind of caller, by probe.who; only whoBob is valid.
	auth [][]string
	// watched are the accounts and transfers that the fuzz target checks after every input.
	watched []string
	before  map[string]string
	bob     string // bob's user id
}

// callers is how many kinds of callers hostile.auth holds; whoBob is bob's, the only valid one.
const (
	whoBob  = 1
	callers = 14
)

// probe is one hostile request, written with placeholders.
type probe struct {
	who    int
	method string
	target string // the request-target as sent, already percent-encoded
	header string // extra header lines, separated by \n
	body   string
	want   int // the status it must get; 0 for any that keeps the invariants
}

// newHostile builds the world: Alice's and bob's users, accounts and transfers, and the tokens.
func newHostile(tb testing.TB) *hostile {
	tb.Helper()
	a := newAPI(tb)
	suffix := uuid.NewString()[:8]
	email, password := "alice-"+suffix+"@example.com", "alice-password-"+suffix
	r := a.do("POST", "/v1/users", "", map[string]string{"email": email, "password": password, "name": "Alice"})
	var alice struct{ ID string }
	if r.status != http.StatusCreated {
		tb.Fatalf("sign up alice: %v", r)
	}
	r.json(tb, &alice)
	tok := a.token(email, password)
	ext, label, key := "alice-ext-"+suffix, "alice-label-"+suffix, "alice-key-"+suffix
	r = a.do("POST", "/v1/accounts", tok, map[string]any{"currency": "USD", "external_id": ext, "labels": map[string]string{"team": label}})
	var acct accountBody
	if r.status != http.StatusCreated {
		tb.Fatalf("alice's account: %v", r)
	}
	r.json(tb, &acct)
	acct2 := a.account(tok, "USD")
	a.deposit(acct.ID, 10_000, "USD")
	r, done := a.transfer(tok, map[string]any{"from_account_id": acct.ID, "to_account_id": acct2, "amount": 100, "currency": "USD"}, "Idempotency-Key", key)
	if done.Status != "completed" {
		tb.Fatalf("alice's transfer: %v", r)
	}
	held := uuid.New()
	tb.Cleanup(a.gate.Hold(held))
	if r := a.do("POST", "/v1/transfers", tok, map[string]any{"id": held, "from_account_id": acct.ID, "to_account_id": acct2, "amount": 50, "currency": "USD"}); r.status != http.StatusAccepted {
		tb.Fatalf("alice's held transfer: %v", r)
	}
	var deposits struct{ Data []transferBody }
	a.do("GET", "/v1/transfers?kind=deposit", tok, nil).json(tb, &deposits)
	var entries struct{ Data []entryBody }
	a.do("GET", "/v1/accounts/"+acct.ID+"/entries", tok, nil).json(tb, &entries)
	if len(deposits.Data) != 1 || len(entries.Data) != 2 {
		tb.Fatalf("alice's deposits %+v and entries %+v: want one and two", deposits.Data, entries.Data)
	}
	var system string
	var accounts struct{ Data []map[string]any }
	a.do("GET", "/v1/accounts?currency=USD&limit=100", a.admin, nil).json(tb, &accounts)
	for _, acct := range accounts.Data {
		if acct["kind"] == "system" {
			system, _ = acct["id"].(string)
		}
	}
	bob, bobID := a.user()
	h := &hostile{a: a, vars: map[string]string{
		"{A_USER}": alice.ID, "{A_EMAIL}": email, "{A_ACCT}": acct.ID, "{A_ACCT2}": acct2, "{A_EXT}": ext,
		"{A_LABEL}": label, "{A_KEY}": key, "{A_TRANSFER}": done.ID, "{A_HELD}": held.String(),
		"{A_DEPOSIT}": deposits.Data[0].ID, "{A_ENTRY}": entries.Data[0].ID, "{A_ENTRY2}": entries.Data[1].ID,
		"{A_ACCT_UPPER}": strings.ToUpper(acct.ID), "{SYS_USD}": system, "{B_USER}": bobID, "{B_ACCT}": a.account(bob, "EUR"),
		"{B_ACCT2}": a.account(bob, "EUR"),
	}}
	h.vars["{B_ACCT_UPPER}"] = strings.ToUpper(h.vars["{B_ACCT}"])
	h.bob = bobID
	// The external id, label and Idempotency-Key are Alice's too, but bob may use the same strings
	// for his own; her ids, email and password he can learn only from a leak.
	for _, name := range []string{"{A_USER}", "{A_EMAIL}", "{A_ACCT}", "{A_ACCT2}", "{A_TRANSFER}", "{A_HELD}", "{A_DEPOSIT}", "{A_ENTRY}", "{A_ENTRY2}"} {
		h.secrets = append(h.secrets, strings.ToLower(h.vars[name]))
	}
	h.secrets = append(h.secrets, strings.ToLower(password))

	claims := userClaims(alice.ID)
	admin := with(claims, jwt.MapClaims{"role": "admin"})
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, admin).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		tb.Fatal(err)
	}
	h.auth = [][]string{
		nil,
		{"Bearer " + bob},
		{"Bearer " + escalate(tb, bob)},
		{"Bearer " + signToken(tb, jwt.SigningMethodHS256, []byte("another-secret-another-secret-0123456789"), admin)},
		{"Bearer " + none},
		{"Bearer " + signToken(tb, jwt.SigningMethodHS256, testSecret, with(claims, jwt.MapClaims{"iat": time.Now().Add(-2 * time.Hour).Unix(), "exp": time.Now().Add(-time.Hour).Unix()}))},
		{"Bearer " + bob, "Bearer " + escalate(tb, bob)},
		{"Bearer " + strings.Repeat("A", 32<<10)},
		{"Bearer a.b.c"},
		{"Basic " + base64.StdEncoding.EncodeToString([]byte(email+":"+password))},
		{"Bearer " + bob[:len(bob)-2]},
		{"Bearer " + bob + " " + bob},
		{"Bearer " + signToken(tb, jwt.SigningMethodHS512, testSecret, claims)},
		{"Bearer " + signToken(tb, jwt.SigningMethodHS256, testSecret, with(claims, jwt.MapClaims{"sub": "' OR 1=1 --"}))},
	}
	if len(h.auth) != callers {
		tb.Fatalf("got %d kinds of callers, want %d", len(h.auth), callers)
	}
	h.watched = []string{acct.ID, acct2, system, done.ID, held.String(), deposits.Data[0].ID}
	h.before = h.watchedState(tb)
	return h
}

// expand replaces the placeholders of s; each {RAND} and {NEW_UUID} gets a fresh value.
func (h *hostile) expand(s string) string {
	for strings.Contains(s, "{RAND}") {
		s = strings.Replace(s, "{RAND}", uuid.NewString()[:8], 1)
	}
	for strings.Contains(s, "{NEW_UUID}") {
		s = strings.Replace(s, "{NEW_UUID}", uuid.NewString(), 1)
	}
	for name, v := range h.vars {
		s = strings.ReplaceAll(s, name, v)
	}
	// b64(X)b64 is X in base64url, after its own placeholders: how the ledger's cursors look.
	for {
		start := strings.Index(s, "b64(")
		end := strings.Index(s, ")b64")
		if start < 0 || end < start {
			return s
		}
		s = s[:start] + base64.RawURLEncoding.EncodeToString([]byte(s[start+4:end])) + s[end+4:]
	}
}

// raw renders a probe as the bytes of an HTTP/1.1 request.
func (h *hostile) raw(p probe) []byte {
	header, body := h.expand(p.header), h.expand(p.body)
	lower := strings.ToLower(header)
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: transferd.test\r\nConnection: close\r\n", p.method, h.expand(p.target))
	for _, v := range h.auth[p.who%len(h.auth)] {
		fmt.Fprintf(&b, "Authorization: %s\r\n", v)
	}
	if body != "" && !strings.Contains(lower, "content-type:") {
		b.WriteString("Content-Type: application/json\r\n")
	}
	for line := range strings.SplitSeq(header, "\n") {
		if line != "" {
			b.WriteString(line + "\r\n")
		}
	}
	if !strings.Contains(lower, "content-length:") && !strings.Contains(lower, "transfer-encoding:") {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.Bytes()
}

// send writes a raw request on a new connection to the API and reads the answer.
func (h *hostile) send(raw []byte, method string) (*http.Response, []byte, error) {
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.a.url, "http://"))
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(45 * time.Second))
	// The server may answer before it has read everything, for example a body over the limit.
	go conn.Write(raw)
	rd := bufio.NewReader(conn)
	res, err := http.ReadResponse(rd, &http.Request{Method: method})
	// An Expect: 100-continue is answered 100 Continue before the answer.
	for err == nil && res.StatusCode == http.StatusContinue {
		res, err = http.ReadResponse(rd, &http.Request{Method: method})
	}
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res, b, err
}

// requestText is what a request tells the server, lower case, with its target also unescaped, so
// that an answer echoing it is not mistaken for a leak.
func requestText(raw []byte) string {
	s := string(raw)
	line, _, _ := strings.Cut(s, "\r\n")
	if u, err := url.PathUnescape(line); err == nil {
		s += "\n" + u
	}
	if u, err := url.QueryUnescape(line); err == nil {
		s += "\n" + u
	}
	return strings.ToLower(s)
}

// requiresAuth reports whether a path is served only to a valid bearer token.
func requiresAuth(path string) bool {
	return strings.HasPrefix(path, "/v1/") && path != "/v1/users" && path != "/v1/auth/token"
}

// netHTTPStatuses are the answers net/http writes by itself, in text/plain, to a request it will
// not hand to any handler: a malformed request line or header (400), headers over MaxHeaderBytes
// (431), a transfer coding it does not implement (501, as RFC 9112 asks) or another HTTP version
// (505). The API never sees those requests, so it cannot answer them with problem+json.
var netHTTPStatuses = []int{http.StatusBadRequest, http.StatusRequestHeaderFieldsTooLarge, http.StatusNotImplemented, http.StatusHTTPVersionNotSupported}

// check fails the test for an answer that breaks an invariant of hostile input: no 5xx; every
// error a problem+json whose status and type match its code and that leaks nothing internal; no
// success for a caller without a valid token on a path that needs one; no id or private string
// of Alice's that the request did not itself contain; and the probe's expected status, if any.
func (h *hostile) check(t testing.TB, p probe, raw []byte, path string, status int, header http.Header, body []byte) {
	t.Helper()
	what := fmt.Sprintf("%s %.200s (caller #%d, header %.100q, body %.200q)", p.method, h.expand(p.target), p.who%len(h.auth), p.header, p.body)
	fromAPI := header.Get("X-Request-Id") != ""
	if status >= 500 && fromAPI {
		t.Errorf("%s: got %d %.500s, want no 5xx", what, status, body)
	}
	switch {
	case !fromAPI:
		if !slices.Contains(netHTTPStatuses, status) {
			t.Errorf("%s: got %d %.200s without X-Request-Id, so not from the API, want one of net/http's own %v", what, status, body, netHTTPStatuses)
		}
	case status >= 400 && p.method != "HEAD":
		if ct := header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: got %d with content type %q, want application/problem+json", what, status, ct)
		}
		var pr server.Problem
		if err := json.Unmarshal(body, &pr); err != nil {
			t.Errorf("%s: got %d %.300s, not a problem: %v", what, status, body, err)
		} else if pr.Status != status || pr.Code == "" || pr.Type != "https://transferd.dev/problems/"+pr.Code || pr.Title == "" {
			t.Errorf("%s: got %d with problem %+v, want its status, a code, the code's type and a title", what, status, pr)
		}
		for _, m := range leakMarkers {
			if bytes.Contains(body, []byte(m)) {
				t.Errorf("%s: error body leaks %q: %.500s", what, m, body)
			}
		}
	}
	if p.who%len(h.auth) != whoBob && requiresAuth(path) && status < 300 {
		t.Errorf("%s: got %d %.300s for a caller without a valid token, want 401", what, status, body)
	}
	sent := requestText(raw)
	var answer strings.Builder
	for k, vs := range header {
		fmt.Fprintf(&answer, "%s: %s\n", k, strings.Join(vs, ", "))
	}
	answer.Write(body)
	got := strings.ToLower(answer.String())
	for _, s := range h.secrets {
		if strings.Contains(got, s) && !strings.Contains(sent, s) && !h.bobsTransfer(s) {
			t.Errorf("%s: the answer %d reveals Alice's %q: %.500s", what, status, s, got)
		}
	}
	if p.want != 0 && status != p.want {
		t.Errorf("%s: got %d %.300s, want %d", what, status, body, p.want)
	}
}

// bobsTransfer reports whether id is that of a transfer touching one of bob's accounts: bob may
// choose any UUID as the id of his own transfer, Alice's account ids included, and then see it.
func (h *hostile) bobsTransfer(id string) bool {
	ctx := context.Background()
	parsed, err := uuid.Parse(id)
	if err != nil {
		return false
	}
	tr, err := h.a.store.Transfer(ctx, parsed)
	if err != nil {
		return false
	}
	for _, accountID := range []uuid.UUID{tr.FromAccountID, tr.ToAccountID} {
		if acct, err := h.a.store.Account(ctx, accountID); err == nil && acct.OwnerID.String() == h.bob {
			return true
		}
	}
	return false
}

// watchedState reads Alice's accounts, the USD system account and Alice's transfers.
func (h *hostile) watchedState(tb testing.TB) map[string]string {
	tb.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for _, id := range h.watched {
		if acct, err := h.a.store.Account(ctx, uuid.MustParse(id)); err == nil {
			out[id] = fmt.Sprintf("account balance=%d reserved=%d status=%s labels=%v external_id=%s", acct.Balance, acct.Reserved, acct.Status, acct.Labels, acct.ExternalID)
			continue
		}
		tr, err := h.a.store.Transfer(ctx, uuid.MustParse(id))
		if err != nil {
			tb.Fatalf("read %s: %v", id, err)
		}
		// The held transfer stays pending however long the run takes: its reserve is retried for as
		// long as it is held, and no one but Alice may cancel it.
		out[id] = fmt.Sprintf("transfer status=%s amount=%d description=%q", tr.Status, tr.Amount, tr.Description)
	}
	return out
}

// checkWatched fails the test if anything of watchedState changed since the world was built.
func (h *hostile) checkWatched(tb testing.TB) {
	tb.Helper()
	for id, got := range h.watchedState(tb) {
		if want := h.before[id]; got != want {
			tb.Errorf("%s: got %s, want it unchanged: %s", id, got, want)
		}
	}
}

// money reads every account's balance, reserve and status, and the sum of balances per currency.
func (h *hostile) money(tb testing.TB) (accounts map[string]string, sums map[transfer.Currency]int64) {
	tb.Helper()
	accounts, sums = map[string]string{}, map[transfer.Currency]int64{}
	p := transfer.Page{Limit: transfer.MaxPageLimit}
	for {
		l, err := h.a.store.ListAccounts(context.Background(), transfer.AccountFilter{IncludeSystem: true}, p)
		if err != nil {
			tb.Fatalf("list accounts: %v", err)
		}
		for _, acct := range l.Items {
			accounts[acct.ID.String()] = fmt.Sprintf("%s balance=%d reserved=%d status=%s", acct.Currency, acct.Balance, acct.Reserved, acct.Status)
			sums[acct.Currency] += acct.Balance
		}
		if l.NextCursor == "" {
			return accounts, sums
		}
		p.Cursor = l.NextCursor
	}
}

// injections are SQL injection attempts, sent in every string field and every query filter.
var injections = []string{
	"' OR 1=1 --",
	"'); DROP TABLE transfers; --",
	`" OR ""="`,
	"1; SELECT pg_sleep(5); --",
	"%' OR '%'='",
	`\'; DELETE FROM accounts; --`,
	"' UNION SELECT id, owner_id, balance FROM accounts --",
	"?", "$1", "@p1",
}

// jsonOf marshals v, keeping placeholders as they are.
func jsonOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// bobTransfer is a valid transfer between bob's own empty accounts, with the changes.
func bobTransfer(changes map[string]any) string {
	b := map[string]any{"from_account_id": "{B_ACCT}", "to_account_id": "{B_ACCT2}", "amount": 1, "currency": "EUR"}
	for k, v := range changes {
		b[k] = v
	}
	return jsonOf(b)
}

// rawAmount is bob's transfer with the literal as its amount.
func rawAmount(literal string) string {
	return `{"from_account_id":"{B_ACCT}","to_account_id":"{B_ACCT2}","currency":"EUR","amount":` + literal + `}`
}

// hostileCorpus is the fixed part of the attack: cross-tenant probes, forged tokens, SQL
// injection in every field and filter, and hostile paths, headers and bodies.
func hostileCorpus() []probe {
	var ps []probe
	add := func(who int, method, target, header, body string, want int) {
		ps = append(ps, probe{who: who, method: method, target: target, header: header, body: body, want: want})
	}
	bob := whoBob

	// Bob reading, changing, cancelling, listing and spending what is Alice's.
	for _, id := range []string{"{A_ACCT}", "{A_ACCT2}", "{SYS_USD}"} {
		add(bob, "GET", "/v1/accounts/"+id, "", "", 404)
		add(bob, "GET", "/v1/accounts/"+id+"/entries", "", "", 404)
		add(bob, "GET", "/v1/accounts/"+id+"/entries?limit=100", "", "", 404)
		add(bob, "PATCH", "/v1/accounts/"+id, "", `{"status":"frozen"}`, 403)
		add(bob, "PATCH", "/v1/accounts/"+id, "", `{"status":"closed"}`, 403)
		add(bob, "GET", "/v1/transfers?account_id="+id, "", "", 200)
		add(bob, "GET", "/v1/transfers?account_id="+id+"&status=completed&kind=transfer", "", "", 200)
		add(bob, "POST", "/v1/withdrawals", "", `{"account_id":"`+id+`","amount":100,"currency":"USD"}`, 422)
		add(bob, "POST", "/v1/transfers", "", `{"from_account_id":"`+id+`","to_account_id":"{B_ACCT}","amount":100,"currency":"USD"}`, 422)
		add(bob, "POST", "/v1/transfers", "", `{"from_account_id":"`+id+`","to_account_id":"{B_ACCT}","amount":100,"currency":"EUR"}`, 422)
	}
	add(bob, "GET", "/v1/accounts/{A_ACCT_UPPER}", "", "", 404)
	add(bob, "GET", "/v1/accounts/{B_ACCT_UPPER}", "", "", 200)
	for _, id := range []string{"{A_TRANSFER}", "{A_HELD}", "{A_DEPOSIT}"} {
		add(bob, "GET", "/v1/transfers/"+id, "", "", 404)
		add(bob, "POST", "/v1/transfers/"+id+"/cancel", "", "", 404)
		add(bob, "POST", "/v1/transfers/"+id+"/cancel", "", `{"reason":"mine now"}`, 404)
		add(bob, "POST", "/v1/transfers?wait=1s", "", bobTransfer(map[string]any{"id": id}), 409)
		add(bob, "POST", "/v1/withdrawals", "", `{"id":"`+id+`","account_id":"{B_ACCT}","amount":1,"currency":"EUR"}`, 409)
	}
	for _, id := range []string{"{A_ENTRY}", "{A_ENTRY2}", "{A_USER}"} {
		add(bob, "GET", "/v1/transfers/"+id, "", "", 404)
		add(bob, "GET", "/v1/accounts/"+id, "", "", 404)
	}
	add(bob, "GET", "/v1/accounts?owner_id={A_USER}", "", "", 403)
	add(bob, "GET", "/v1/accounts?external_id={A_EXT}", "", "", 200)
	add(bob, "GET", "/v1/accounts?label.team={A_LABEL}", "", "", 200)
	add(bob, "GET", "/v1/accounts?currency=USD", "", "", 200)
	add(bob, "GET", "/v1/accounts?currency=USD&limit=100", "", "", 200)
	add(bob, "GET", "/v1/transfers?limit=100", "", "", 200)
	add(bob, "GET", "/v1/transfers?kind=deposit", "", "", 200)
	add(bob, "GET", "/v1/me", "", "", 200)
	add(bob, "POST", "/v1/accounts", "", `{"currency":"USD","owner_id":"{A_USER}"}`, 403)
	add(bob, "POST", "/v1/accounts", "", `{"currency":"EUR","external_id":"{A_EXT}","labels":{"team":"{A_LABEL}"}}`, 201)
	add(bob, "POST", "/v1/transfers", "Idempotency-Key: {A_KEY}", `{"from_account_id":"{A_ACCT}","to_account_id":"{A_ACCT2}","amount":100,"currency":"USD"}`, 422)
	add(bob, "POST", "/v1/transfers", "Idempotency-Key: {A_KEY}", bobTransfer(nil), 202)
	add(bob, "POST", "/v1/transfers", "", bobTransfer(map[string]any{"to_account_id": "{A_ACCT}"}), 422)
	add(bob, "POST", "/v1/transfers", "", bobTransfer(map[string]any{"to_account_id": "{SYS_USD}"}), 422)
	add(bob, "POST", "/v1/deposits", "", `{"account_id":"{B_ACCT}","amount":100,"currency":"EUR"}`, 403)
	add(bob, "POST", "/v1/deposits", "", `{"id":"{A_DEPOSIT}","account_id":"{A_ACCT}","amount":10000,"currency":"USD"}`, 403)
	add(bob, "PATCH", "/v1/accounts/{B_ACCT}", "", `{"status":"frozen"}`, 403)
	add(bob, "POST", "/v1/users", "", `{"email":"{A_EMAIL}","password":"password-123","name":"Alice"}`, 409)
	add(bob, "POST", "/v1/users", "", `{"email":"{A_EMAIL}","password":"password-123","name":"Alice","role":"admin"}`, 400)

	// Every caller without a valid token, on every kind of route.
	for who := range callers {
		if who == whoBob {
			continue
		}
		add(who, "GET", "/v1/accounts/{A_ACCT}", "", "", 401)
		add(who, "GET", "/v1/accounts", "", "", 401)
		add(who, "GET", "/v1/transfers", "", "", 401)
		add(who, "GET", "/v1/me", "", "", 401)
		add(who, "POST", "/v1/transfers/{A_HELD}/cancel", "", "", 401)
		add(who, "PATCH", "/v1/accounts/{A_ACCT}", "", `{"status":"frozen"}`, 401)
		add(who, "POST", "/v1/withdrawals", "", `{"account_id":"{A_ACCT}","amount":100,"currency":"USD"}`, 401)
		add(who, "POST", "/v1/deposits", "", `{"account_id":"{B_ACCT}","amount":100,"currency":"EUR"}`, 401)
		add(who, "POST", "/v1/transfers", "", `{"from_account_id":"{A_ACCT}","to_account_id":"{B_ACCT}","amount":100,"currency":"USD"}`, 401)
		add(who, "POST", "/v1/accounts", "", `{"currency":"USD"}`, 401)
	}

	// SQL injection in every string field of every body, every query filter, path and header.
	for _, inj := range injections {
		q, p := url.QueryEscape(inj), url.PathEscape(inj)
		add(bob, "POST", "/v1/users", "", jsonOf(map[string]string{"email": inj, "password": "password-123", "name": "x"}), 400)
		add(bob, "POST", "/v1/users", "", jsonOf(map[string]string{"email": "inj-{RAND}@example.com", "password": inj + "-is-long-enough", "name": inj}), 201)
		add(bob, "POST", "/v1/auth/token", "", jsonOf(map[string]string{"email": inj, "password": inj}), 0)
		add(bob, "POST", "/v1/auth/token", "", jsonOf(map[string]string{"email": "{A_EMAIL}", "password": inj}), 0)
		add(bob, "POST", "/v1/accounts", "", jsonOf(map[string]any{"currency": inj}), 400)
		add(bob, "POST", "/v1/accounts", "", jsonOf(map[string]any{"currency": "EUR", "owner_id": inj}), 400)
		add(bob, "POST", "/v1/accounts", "", jsonOf(map[string]any{"currency": "EUR", "external_id": inj + "{RAND}", "labels": map[string]string{inj: inj}}), 201)
		add(bob, "PATCH", "/v1/accounts/{B_ACCT}", "", jsonOf(map[string]string{"status": inj}), 403)
		for _, field := range []string{"id", "from_account_id", "to_account_id", "currency"} {
			add(bob, "POST", "/v1/transfers", "", bobTransfer(map[string]any{field: inj}), 400)
		}
		add(bob, "POST", "/v1/transfers", "", bobTransfer(map[string]any{"description": inj, "labels": map[string]string{inj: inj}}), 202)
		add(bob, "POST", "/v1/transfers", "Idempotency-Key: "+inj, bobTransfer(nil), 0)
		add(bob, "POST", "/v1/transfers?wait="+q, "", bobTransfer(nil), 400)
		for _, field := range []string{"id", "account_id", "currency"} {
			add(bob, "POST", "/v1/withdrawals", "", jsonOf(map[string]any{"account_id": "{B_ACCT}", "amount": 1, "currency": "EUR", field: inj}), 400)
		}
		add(bob, "POST", "/v1/withdrawals", "", jsonOf(map[string]any{"account_id": "{B_ACCT}", "amount": 1, "currency": "EUR", "description": inj}), 202)
		add(bob, "POST", "/v1/deposits", "", jsonOf(map[string]any{"account_id": inj, "amount": 1, "currency": inj}), 403)
		add(bob, "POST", "/v1/transfers/{A_HELD}/cancel", "", jsonOf(map[string]string{"reason": inj}), 404)
		for _, kv := range []string{"owner_id=" + q, "currency=" + q, "limit=" + q, "cursor=" + q} {
			add(bob, "GET", "/v1/accounts?"+kv, "", "", 400)
		}
		for _, kv := range []string{"external_id=" + q, "label.team=" + q, "label." + q + "=" + q} {
			add(bob, "GET", "/v1/accounts?"+kv, "", "", 200)
		}
		for _, kv := range []string{"account_id=" + q, "status=" + q, "kind=" + q, "limit=" + q, "cursor=" + q} {
			add(bob, "GET", "/v1/transfers?"+kv, "", "", 400)
		}
		add(bob, "GET", "/v1/accounts/{B_ACCT}/entries?cursor="+q, "", "", 400)
		add(bob, "GET", "/v1/accounts/{B_ACCT}/entries?limit="+q, "", "", 400)
		add(bob, "GET", "/v1/accounts/"+p, "", "", 0)
		add(bob, "GET", "/v1/transfers/"+p, "", "", 0)
		add(bob, "POST", "/v1/transfers/"+p+"/cancel", "", "", 0)
		add(bob, "GET", "/v1/accounts/"+p+"/entries", "", "", 0)
		add(bob, "GET", "/healthz", "X-Request-Id: "+inj, "", 200)
	}

	// Hostile paths.
	for _, target := range []string{
		"/v1/accounts/" + strings.Repeat("a", 16<<10),
		"/" + strings.Repeat("x/", 4000),
		"/v1/%61ccounts",
		"/v1/accounts/%2e%2e/transfers",
		"/v1/accounts/../transfers",
		"/v1/accounts/{A_ACCT}/../../transfers/{A_TRANSFER}",
		"/v1/accounts/{A_ACCT}%00",
		"/v1/accounts/%00",
		"/v1/accounts/{B_ACCT}%00/entries",
		"/v1/transfers/{A_TRANSFER}%2F..%2F..%2Faccounts",
		"/v1/accounts/%ff%fe",
		"/v1/accounts/%C0%AE%C0%AE",
		"/v1/accounts/%",
		"//v1/accounts",
		"/V1/ACCOUNTS",
		"/v1/accounts/",
		"/v1/accounts/{B_ACCT}/",
		"/v1/accounts/{" + "{B_ACCT}" + "}",
		"/v1/accounts/urn:uuid:{B_ACCT}",
		"/v1/accounts?limit=100&limit=1",
		"/v1/accounts?" + strings.Repeat("a=b&", 2000),
		"/v1/accounts?label.=x",
		"/v1/accounts?label.team=a&label.team=b",
		"/v1/accounts?label.%ff=%fe",
		"/v1/accounts?external_id=%00",
		"/v1/accounts?external_id=" + strings.Repeat("e", 300),
		"/v1/transfers?cursor=" + "b64(" + `{"t":-9223372036854775808,"i":"{A_TRANSFER}"}` + ")b64",
		"/v1/transfers?cursor=" + "b64(" + `{"t":9223372036854775807,"i":"{A_TRANSFER}"}` + ")b64",
		"/v1/transfers?cursor=" + "b64(" + `{"t":1,"i":"{A_TRANSFER}","s":5}` + ")b64",
		"/v1/accounts?cursor=" + "b64(" + `{"t":-62135596800000001,"i":"{B_ACCT}"}` + ")b64",
		"/v1/accounts/{B_ACCT}/entries?cursor=" + "b64(" + `{"s":9223372036854775807}` + ")b64",
		"/v1/accounts/{B_ACCT}/entries?cursor=" + "b64(" + `{"s":-1}` + ")b64",
		"/v1/accounts/{B_ACCT}/entries?cursor=" + "b64(" + `{"t":1,"i":"{A_TRANSFER}"}` + ")b64",
		"/v1/transfers?limit=0", "/v1/transfers?limit=101", "/v1/transfers?limit=99999999999999999999", "/v1/transfers?limit=%EF%BC%91",
		"/v1/transfers?cursor=", "/v1/transfers?status=COMPLETED", "/v1/transfers?account_id=%7B{B_ACCT}%7D",
		"http://evil.example/v1/accounts",
		"*",
	} {
		add(bob, "GET", target, "", "", 0)
	}
	for _, m := range []string{"PUT", "DELETE", "HEAD", "OPTIONS", "TRACE", "PROPFIND", "FOO", "get", "CONNECT"} {
		add(bob, m, "/v1/accounts/{B_ACCT}", "", "", 0)
		add(bob, m, "/v1/transfers", "", bobTransfer(nil), 0)
		add(0, m, "/v1/auth/token", "", "", 0)
	}

	// Hostile headers.
	for _, header := range []string{
		"X-Big: " + strings.Repeat("b", 48<<10),
		"X-Big: " + strings.Repeat("b", 100<<10),
		strings.Repeat("X-Many: m\n", 2000),
		"Content-Type: application/json\nContent-Type: text/plain",
		"Content-Type: application/json; charset=utf-16",
		"Content-Type: " + strings.Repeat("a", 10<<10),
		"X-Request-Id: " + strings.Repeat("r", 10<<10),
		"X-Request-Id: ../../etc/passwd",
		"X-Forwarded-For: 127.0.0.1\nX-Real-IP: ::1",
		"Accept: application/xml",
		"Accept-Encoding: gzip, deflate, br, zstd",
		"Expect: 100-continue",
		"Bad Header: x",
		"Content-Length: -1",
		"Content-Length: 1\nContent-Length: 2",
		"Transfer-Encoding: gzip",
		"Host: other.example",
	} {
		add(bob, "GET", "/v1/accounts", header, "", 0)
		add(bob, "POST", "/v1/transfers", header, bobTransfer(nil), 0)
	}
	for _, key := range []string{"a\nIdempotency-Key: b", strings.Repeat("k", 255), strings.Repeat("k", 10<<10), "\t", "ключ"} {
		add(bob, "POST", "/v1/transfers", "Idempotency-Key: "+key, bobTransfer(nil), 0)
	}
	var chunked strings.Builder
	for range 10 {
		fmt.Fprintf(&chunked, "%x\r\n%s\r\n", 10<<10, strings.Repeat(" ", 10<<10))
	}
	chunked.WriteString("0\r\n\r\n")
	add(bob, "POST", "/v1/transfers", "Transfer-Encoding: chunked", chunked.String(), 413)
	add(bob, "POST", "/v1/transfers", "Transfer-Encoding: chunked", "zz\r\n{}\r\n0\r\n\r\n", 400)

	// Hostile bodies.
	for _, literal := range []string{"1.5", "1e3", "1E400", "-0", "0", "-1", "100.0", "1e-7", "0x10", "NaN", "Infinity", `"100"`, "null", "true", "[]", "{}",
		"9007199254740992", "9223372036854775807", "9223372036854775808", "18446744073709551616", "-9223372036854775809", "1" + strings.Repeat("0", 400)} {
		add(bob, "POST", "/v1/transfers", "", rawAmount(literal), 400)
		add(bob, "POST", "/v1/withdrawals", "", `{"account_id":"{B_ACCT}","currency":"EUR","amount":`+literal+`}`, 400)
	}
	add(bob, "POST", "/v1/transfers", "", rawAmount("9007199254740991"), 202)
	labels := map[string]string{}
	for i := range 1000 {
		labels[fmt.Sprint("k", i)] = "v"
	}
	for _, b := range []struct {
		body string
		want int
	}{
		{`{"description":"` + strings.Repeat("a", 1<<20) + `"}`, 413},
		{strings.Repeat("[", 10000), 400},
		{strings.Repeat(`{"labels":`, 100) + "{}" + strings.Repeat("}", 100), 400},
		{bobTransfer(map[string]any{"labels": map[string]any{"a": map[string]any{"b": map[string]any{"c": 1}}}}), 400},
		{"{\"description\":\"caf\xe9\xff\"}", 400},
		{"\xef\xbb\xbf" + bobTransfer(nil), 400},
		{`{"amount":1,"amount":2}`, 400},
		{`{"__proto__":{"admin":true}}`, 400},
		{`"string"`, 400}, {`42`, 400}, {`null`, 400}, {`[]`, 400}, {``, 400},
		{bobTransfer(map[string]any{"labels": labels}), 400},
		{bobTransfer(map[string]any{"labels": map[string]string{"k": strings.Repeat("v", 300)}}), 400},
		{bobTransfer(map[string]any{"labels": map[string]string{"": "v"}}), 400},
		{bobTransfer(map[string]any{"description": strings.Repeat("d", 1001)}), 400},
		{bobTransfer(map[string]any{"description": strings.Repeat("😀", 1000)}), 202},
		{bobTransfer(map[string]any{"description": "nul\x00"}), 400},
		{`{"from_account_id":"{B_ACCT}","to_account_id":"{B_ACCT2}","amount":1,"currency":"EUR","description":"\ud800"}`, 202},
		{`{"from_account_id":"{B_ACCT}","to_account_id":"{B_ACCT2}","amount":1,"currency":"EUR","description":"\u0000"}`, 400},
		{`{"from_account_id":"{B_ACCT}","to_account_id":"{B_ACCT2}","amount":1,"currency":"EUR",}`, 400},
		{`{"from_account_id":"{B_ACCT}","to_account_id":"{B_ACCT2}","amount":1,"currency":"EUR"} // comment`, 400},
		{`{"from_account_id":"{B_ACCT}","to_account_id":"{B_ACCT2}","AMOUNT":1,"currency":"EUR"}`, 400},
		{bobTransfer(map[string]any{"currency": "eur"}), 202},
		{bobTransfer(map[string]any{"currency": "EUR\u0000"}), 400},
		{bobTransfer(map[string]any{"currency": "ЕUR"}), 400},
		{bobTransfer(map[string]any{"to_account_id": "{B_ACCT}"}), 422},
	} {
		add(bob, "POST", "/v1/transfers", "", b.body, b.want)
	}
	for _, b := range []string{
		`{"email":"` + strings.Repeat("e", 300) + `@example.com","password":"password-123","name":"x"}`,
		`{"email":"x-{RAND}@example.com","password":"` + strings.Repeat("p", 73) + `","name":"x"}`,
		`{"email":"x-{RAND}@example.com","password":"password-123","name":"` + strings.Repeat("n", 10<<10) + `"}`,
		`{"email":"x-{RAND}@example.com\u0000","password":"password-123","name":"x"}`,
		`{"email":"\"x\"@example.com","password":"password-123","name":"x"}`,
	} {
		add(bob, "POST", "/v1/users", "", b, 400)
	}
	for _, b := range []string{
		`{"email":"` + strings.Repeat("e", 300) + `@example.com","password":"password-123"}`,
		`{"email":"{A_EMAIL}","password":"` + strings.Repeat("p", 10<<10) + `"}`,
		`{"email":"{A_EMAIL}\u0000","password":"x"}`,
		"{\"email\":\"{A_EMAIL}\xff\",\"password\":\"x\"}",
		`{"email":["{A_EMAIL}"],"password":"x"}`,
	} {
		add(0, "POST", "/v1/auth/token", "", b, 0)
	}
	for _, b := range []string{
		`{"currency":"EUR","labels":{"` + strings.Repeat("k", 65) + `":"v"}}`,
		`{"currency":"EUR","external_id":""}`,
		`{"currency":"EUR","external_id":"` + strings.Repeat("x", 256) + `"}`,
		`{"currency":"EUR","owner_id":"00000000-0000-0000-0000-000000000000"}`,
		`{"currency":"XXX"}`,
		`{"currency":"EUR","balance":1000000}`,
	} {
		add(bob, "POST", "/v1/accounts", "", b, 0)
	}
	add(bob, "GET", "/v1/accounts", "", `{"owner_id":"{A_USER}"}`, 200)
	return ps
}

// randomProbe puts together a probe from pools of hostile parts.
func randomProbe(rng *rand.Rand) probe {
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	ids := []string{"{A_ACCT}", "{A_ACCT2}", "{A_TRANSFER}", "{A_HELD}", "{A_DEPOSIT}", "{A_ENTRY}", "{A_USER}", "{SYS_USD}",
		"{B_ACCT}", "{B_ACCT2}", "{B_USER}", "{NEW_UUID}", "00000000-0000-0000-0000-000000000000", "%2e%2e", "..", "%00", "%ff", "-1",
		strings.Repeat("9", 100), url.PathEscape(pick(injections))}
	// Each route with its method; a fifth of the probes take another method.
	routes := []string{"GET /v1/accounts/%s", "PATCH /v1/accounts/%s", "GET /v1/accounts/%s/entries", "GET /v1/transfers/%s",
		"POST /v1/transfers/%s/cancel", "GET /v1/accounts", "POST /v1/accounts", "GET /v1/transfers", "POST /v1/transfers",
		"POST /v1/deposits", "POST /v1/withdrawals", "POST /v1/users", "POST /v1/auth/token", "GET /v1/me", "GET /v1/currencies",
		"GET /healthz", "GET /readyz", "GET /openapi.json", "GET /v1/%s", "POST /%s"}
	keys := []string{"limit", "cursor", "owner_id", "currency", "external_id", "label.team", "label.%s", "account_id", "status", "kind", "wait"}
	values := append([]string{"", "-1", "101", "0", "1e2", "30s", "31s", "-1s", "1h", "USD", "usd", "completed", "deposit", "%00", "%ff",
		strings.Repeat("v", 4<<10), "{A_EXT}", "{A_LABEL}"}, ids...)
	methods := []string{"GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS"}
	headers := []string{"", "", "Idempotency-Key: {A_KEY}", "Idempotency-Key: {RAND}", "Idempotency-Key: " + pick(injections),
		"Content-Type: text/plain", "Content-Type: application/merge-patch+json", "X-Request-Id: " + pick(injections), "X-Forwarded-For: 10.0.0.1"}
	bodies := []string{"", bobTransfer(nil), bobTransfer(map[string]any{"from_account_id": pick(ids), "to_account_id": pick(ids)}),
		bobTransfer(map[string]any{"description": pick(injections), "id": pick([]string{"{NEW_UUID}", "{A_TRANSFER}", "{A_HELD}", "not-a-uuid", pick(injections)})}), rawAmount(pick([]string{"1", "1.5", "1e9", "9223372036854775808", "-3"})),
		`{"account_id":"` + pick(ids) + `","amount":1,"currency":"EUR"}`, `{"status":"` + pick([]string{"frozen", "closed", "active", "x"}) + `"}`,
		`{"currency":"` + pick([]string{"EUR", "eur", "XXX", "E"}) + `","external_id":"` + pick(injections) + `"}`,
		`{"email":"` + pick(injections) + `","password":"` + pick(injections) + `"}`, `{"reason":"` + pick(injections) + `"}`,
		strings.Repeat("{", rng.IntN(50)), "\xff\xfe\xfd", `{"amount":1,"amount":1}`}

	method, target, _ := strings.Cut(pick(routes), " ")
	if rng.IntN(5) == 0 {
		method = pick(methods)
	}
	if strings.Contains(target, "%s") {
		target = fmt.Sprintf(target, pick(ids))
	}
	for i := range rng.IntN(4) {
		sep := "?"
		if i > 0 {
			sep = "&"
		}
		key := pick(keys)
		if strings.Contains(key, "%s") {
			key = fmt.Sprintf(key, url.QueryEscape(pick(injections)))
		}
		value := pick(values)
		if !strings.HasPrefix(value, "{") && !strings.Contains(value, "%") {
			value = url.QueryEscape(value)
		}
		target += sep + key + "=" + value
	}
	return probe{who: rng.IntN(callers), method: method, target: target, header: pick(headers), body: pick(bodies)}
}

// hostileSeed replays the random probes of one run of TestHostileRequests, which logs its seed.
var hostileSeed = flag.Uint64("hostile-seed", 0, "seed of TestHostileRequests's random probes; 0 for a new one")

// TestHostileRequests attacks the API over HTTP with the hostile corpus and a few hundred random
// combinations of its parts, checking each answer against the invariants of check, then that no
// money moved: every account that existed before has the same balance, reserve and status, the
// money per currency is the same, Alice's transfers are as they were, and the ledger's audit finds
// nothing.
func TestHostileRequests(t *testing.T) {
	t.Parallel()
	h := newHostile(t)
	accountsBefore, sumsBefore := h.money(t)
	seed := *hostileSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("random probes seeded with -hostile-seed=%d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	probes := hostileCorpus()
	corpus := len(probes)
	for range 400 {
		probes = append(probes, randomProbe(rng))
	}
	t.Logf("%d probes: %d from the corpus, %d random", len(probes), corpus, len(probes)-corpus)
	for _, p := range probes {
		raw := h.raw(p)
		res, body, err := h.send(raw, p.method)
		if err != nil {
			t.Errorf("%s %.200s (caller #%d): no answer: %v", p.method, p.target, p.who, err)
			continue
		}
		path := ""
		if u, err := url.ParseRequestURI(h.expand(p.target)); err == nil {
			path = u.Path
		}
		h.check(t, p, raw, path, res.StatusCode, res.Header, body)
	}
	// Bob's transfers end fast, failing for want of money; wait for their workflows before counting.
	// Alice's held transfer stays in flight until the test ends.
	inFlight, err := h.a.store.InFlightTransfersAfter(context.Background(), transfer.Key{}, 10_000)
	if err != nil {
		t.Fatalf("transfers in flight: %v", err)
	}
	for _, tr := range inFlight {
		if tr.ID.String() != h.vars["{A_HELD}"] {
			h.a.awaitWorkflows(t, tr.ID.String())
		}
	}
	accountsAfter, sumsAfter := h.money(t)
	for id, want := range accountsBefore {
		if got := accountsAfter[id]; got != want {
			t.Errorf("account %s: got %s, want it unchanged: %s", id, got, want)
		}
	}
	for id, got := range accountsAfter {
		if _, existed := accountsBefore[id]; !existed && !strings.Contains(got, "balance=0 reserved=0 ") {
			t.Errorf("new account %s: got %s, want it empty", id, got)
		}
	}
	for cur, want := range sumsBefore {
		if got := sumsAfter[cur]; got != want {
			t.Errorf("money in %s: got %d, want %d", cur, got, want)
		}
	}
	h.checkWatched(t)
	h.a.audit()
}

// TestInjectionIsData checks that SQL injection strings are stored and matched as the literal
// strings they are: an account created with one as its external id and label is found by exactly
// those values and by no other, and a transfer's description comes back byte for byte.
func TestInjectionIsData(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	bob, _ := a.user()
	other := a.account(bob, "EUR")
	for i, inj := range injections {
		t.Run(inj, func(t *testing.T) {
			ext := fmt.Sprint(inj, " #", i)
			r := a.do("POST", "/v1/accounts", bob, map[string]any{"currency": "EUR", "external_id": ext, "labels": map[string]string{"note": inj, inj: "key"}})
			var acct struct {
				ID         string            `json:"id"`
				ExternalID string            `json:"external_id"`
				Labels     map[string]string `json:"labels"`
			}
			r.json(t, &acct)
			if r.status != http.StatusCreated || acct.ExternalID != ext || acct.Labels["note"] != inj || acct.Labels[inj] != "key" {
				t.Fatalf("create: got %v, want 201 with the strings as sent", r)
			}
			tests := []struct {
				query string
				want  []string
			}{
				{"external_id=" + url.QueryEscape(ext), []string{acct.ID}},
				{"label.note=" + url.QueryEscape(inj), []string{acct.ID}},
				{"label." + url.QueryEscape(inj) + "=key", []string{acct.ID}},
				{"external_id=" + url.QueryEscape(ext+" "), nil},
				{"external_id=" + url.QueryEscape("' OR 1=1 --"), nil},
				{"label.note=" + url.QueryEscape("' OR '1'='1"), nil},
			}
			for _, tt := range tests {
				var list struct{ Data []accountBody }
				r := a.do("GET", "/v1/accounts?"+tt.query, bob, nil)
				r.json(t, &list)
				var got []string
				for _, acct := range list.Data {
					got = append(got, acct.ID)
				}
				if r.status != http.StatusOK || !slices.Equal(got, tt.want) {
					t.Errorf("GET /v1/accounts?%s: got %d %v, want 200 %v", tt.query, r.status, got, tt.want)
				}
			}
			r = a.do("POST", "/v1/transfers", bob, map[string]any{"from_account_id": other, "to_account_id": acct.ID, "amount": 1, "currency": "EUR", "description": inj, "labels": map[string]string{inj: inj}})
			var tr struct {
				ID          string            `json:"id"`
				Description string            `json:"description"`
				Labels      map[string]string `json:"labels"`
			}
			r.json(t, &tr)
			g := a.do("GET", "/v1/transfers/"+tr.ID, bob, nil)
			g.json(t, &tr)
			if r.status != http.StatusAccepted || g.status != http.StatusOK || tr.Description != inj || tr.Labels[inj] != inj {
				t.Errorf("transfer described %q: got %v then %v, want 202 then 200 with the strings as sent", inj, r, g)
			}
		})
	}
	// The tables the injections name are all still there.
	if got := len(a.listAll(t, bob, "/v1/transfers")); got != len(injections) {
		t.Errorf("bob's transfers: got %d, want %d", got, len(injections))
	}
	a.audit()
}

// FuzzHTTPAPI sends arbitrary requests, as bob, anonymously or with forged tokens, through the API's
// handler on the real ledger and Temporal, and checks every answer against the invariants of
// hostile.check and, after each, that nothing of Alice's changed. `go test` runs the seeds (the
// hostile corpus); `go test -fuzz FuzzHTTPAPI -parallel 1` explores from them. Placeholders such
// as {A_ACCT} in the inputs are replaced with the world's ids.
func FuzzHTTPAPI(f *testing.F) {
	// Every tenth probe of the corpus, and none of the largest: each input runs against the real
	// ledger and Temporal, and the fuzzer must get through its seeds before it explores.
	for i, p := range hostileCorpus() {
		if i%10 == 0 && len(p.target)+len(p.header)+len(p.body) <= 16<<10 {
			f.Add(uint8(p.who), p.method, p.target, p.header, []byte(p.body))
		}
	}
	h := newHostile(f)
	handler := h.a.handle.Handler()
	f.Fuzz(func(t *testing.T, who uint8, method, target, header string, body []byte) {
		p := probe{who: int(who), method: method, target: target, header: header, body: string(body)}
		raw := h.raw(p)
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			// net/http refuses it before any handler runs.
			return
		}
		req.RemoteAddr = "192.0.2.1:40000"
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		h.check(t, p, raw, req.URL.Path, rec.Code, rec.Header(), rec.Body.Bytes())
		h.checkWatched(t)
	})
}
