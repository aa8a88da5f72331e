package server_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// accountFull is every field of an account as the API answers it.
type accountFull struct {
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

// sortedIDs lists the ids of listed objects in sorted order, for set comparisons.
func sortedIDs(t *testing.T, token, path string, a *api) []string {
	t.Helper()
	ids := idsOf(t, a.listAll(t, token, path))
	slices.Sort(ids)
	return ids
}

// sorted returns a sorted copy of ids.
func sorted(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

func TestOwnership(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	alice, aliceID := a.user()
	bob, bobID := a.user()
	carol, _ := a.user()
	aAcct := a.account(alice, "USD")
	bAcct := a.account(bob, "USD")
	cAcct := a.account(carol, "USD")
	a.deposit(aAcct, 1000, "USD")
	system := a.systemAccount(t, "USD")
	deposits := idsOf(t, a.listAll(t, alice, "/v1/transfers"))
	if len(deposits) != 1 {
		t.Fatalf("alice's transfers after one deposit: got %d, want 1", len(deposits))
	}
	_, tAC := a.transfer(alice, map[string]any{"from_account_id": aAcct, "to_account_id": cAcct, "amount": 100, "currency": "USD"})
	_, tAB := a.transfer(alice, map[string]any{"from_account_id": aAcct, "to_account_id": bAcct, "amount": 50, "currency": "USD"})
	if tAC.Status != "completed" || tAB.Status != "completed" {
		t.Fatalf("setup transfers: got %s and %s, want completed", tAC.Status, tAB.Status)
	}
	unknown := uuid.NewString()

	t.Run("another user's resources are 404 like unknown ones", func(t *testing.T) {
		tests := []struct {
			name, path, unknownPath string
		}{
			{"account", "/v1/accounts/" + aAcct, "/v1/accounts/" + unknown},
			{"account entries", "/v1/accounts/" + aAcct + "/entries", "/v1/accounts/" + unknown + "/entries"},
			{"system account", "/v1/accounts/" + system, "/v1/accounts/" + unknown},
			{"transfer between others", "/v1/transfers/" + tAC.ID, "/v1/transfers/" + unknown},
			{"deposit to another", "/v1/transfers/" + deposits[0], "/v1/transfers/" + unknown},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := expectProblem(t, a.do("GET", tt.path, bob, nil), http.StatusNotFound, "not_found")
				want := expectProblem(t, a.do("GET", tt.unknownPath, bob, nil), http.StatusNotFound, "not_found")
				ids := []string{aAcct, system, tAC.ID, deposits[0], unknown}
				if normalized(got, ids...) != normalized(want, ids...) {
					t.Errorf("got %s, want the unknown id's %s", normalized(got, ids...), normalized(want, ids...))
				}
			})
		}
	})

	t.Run("the owners of either side and admins read a transfer", func(t *testing.T) {
		for _, who := range []struct{ name, token, id string }{
			{"source owner", alice, tAB.ID}, {"destination owner", bob, tAB.ID}, {"admin", a.admin, tAB.ID},
			{"admin reads another's", a.admin, tAC.ID}, {"destination owner of a deposit", alice, deposits[0]},
		} {
			if r := a.do("GET", "/v1/transfers/"+who.id, who.token, nil); r.status != http.StatusOK {
				t.Errorf("%s: got %d %s, want 200", who.name, r.status, r.body)
			}
		}
	})

	t.Run("admin reads any account and its entries", func(t *testing.T) {
		for _, path := range []string{"/v1/accounts/" + aAcct, "/v1/accounts/" + aAcct + "/entries", "/v1/accounts/" + system, "/v1/accounts/" + cAcct} {
			if r := a.do("GET", path, a.admin, nil); r.status != http.StatusOK {
				t.Errorf("GET %s: got %d %s, want 200", path, r.status, r.body)
			}
		}
	})

	t.Run("a user may not change an account's status", func(t *testing.T) {
		for _, id := range []string{aAcct, bAcct} {
			r := a.do("PATCH", "/v1/accounts/"+id, bob, map[string]any{"status": "frozen"})
			expectProblem(t, r, http.StatusForbidden, "forbidden")
			if got := a.getAccount(a.admin, id).Status; got != "active" {
				t.Errorf("account %s after a refused PATCH: got %s, want active", id, got)
			}
		}
	})

	t.Run("a user may not deposit", func(t *testing.T) {
		r := a.do("POST", "/v1/deposits?wait=30s", bob, map[string]any{"account_id": bAcct, "amount": 100, "currency": "USD"})
		expectProblem(t, r, http.StatusForbidden, "forbidden")
		if got := a.getAccount(bob, bAcct).Balance; got != 50 {
			t.Errorf("bob's balance: got %d, want 50", got)
		}
	})

	t.Run("a user may not withdraw from another's account", func(t *testing.T) {
		before := a.ledgerState(t, aAcct, bAcct, system)
		got := expectProblem(t, a.do("POST", "/v1/withdrawals?wait=30s", bob, map[string]any{"account_id": aAcct, "amount": 100, "currency": "USD"}), http.StatusUnprocessableEntity, "account_not_found")
		want := expectProblem(t, a.do("POST", "/v1/withdrawals?wait=30s", bob, map[string]any{"account_id": unknown, "amount": 100, "currency": "USD"}), http.StatusUnprocessableEntity, "account_not_found")
		if normalized(got, aAcct, unknown) != normalized(want, aAcct, unknown) {
			t.Errorf("another's account: got %s, want the unknown account's %s", normalized(got, aAcct, unknown), normalized(want, aAcct, unknown))
		}
		// Nor from the system account, which is nobody's.
		expectProblem(t, a.do("POST", "/v1/withdrawals?wait=30s", bob, map[string]any{"account_id": system, "amount": 100, "currency": "USD"}), http.StatusUnprocessableEntity, "account_not_found")
		if after := a.ledgerState(t, aAcct, bAcct, system); after != before {
			t.Errorf("refused withdrawals changed the ledger:\ngot\n%swant\n%s", after, before)
		}
	})

	var withdrawals []string
	t.Run("the owner and an admin withdraw to the system account", func(t *testing.T) {
		for _, w := range []struct {
			name, token string
			amount      int64
			balance     int64
		}{{"owner", alice, 200, 650}, {"admin", a.admin, 10, 640}} {
			r := a.do("POST", "/v1/withdrawals?wait=30s", w.token, map[string]any{"account_id": aAcct, "amount": w.amount, "currency": "usd"})
			var tr transferBody
			r.json(t, &tr)
			if r.status != http.StatusCreated || tr.Kind != "withdrawal" || tr.Status != "completed" || tr.FromAccountID != aAcct || tr.ToAccountID != system || tr.Amount != w.amount || tr.Currency != "USD" {
				t.Errorf("%s's withdrawal: got %d %s, want 201 completed withdrawal of %d from %s to the system account %s", w.name, r.status, r.body, w.amount, aAcct, system)
			}
			withdrawals = append(withdrawals, tr.ID)
			if got := a.getAccount(alice, aAcct).Balance; got != w.balance {
				t.Errorf("after the %s's withdrawal: balance %d, want %d", w.name, got, w.balance)
			}
		}
	})

	t.Run("transfer lists show only transfers touching the caller's accounts", func(t *testing.T) {
		tests := []struct {
			name, token, path string
			want              []string
		}{
			{"alice", alice, "/v1/transfers", append([]string{deposits[0], tAC.ID, tAB.ID}, withdrawals...)},
			{"bob", bob, "/v1/transfers", []string{tAB.ID}},
			{"carol", carol, "/v1/transfers", []string{tAC.ID}},
			{"bob filtering on alice's account", bob, "/v1/transfers?account_id=" + aAcct, []string{tAB.ID}},
			{"bob filtering on carol's account", bob, "/v1/transfers?account_id=" + cAcct, nil},
			{"admin filtering on carol's account", a.admin, "/v1/transfers?account_id=" + cAcct, []string{tAC.ID}},
			{"admin filtering on withdrawals", a.admin, "/v1/transfers?kind=withdrawal", withdrawals},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := sortedIDs(t, tt.token, tt.path, a)
				if want := sorted(tt.want...); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("GET %s: got %v, want %v", tt.path, got, want)
				}
			})
		}
		all := sortedIDs(t, a.admin, "/v1/transfers", a)
		for _, id := range append([]string{deposits[0], tAC.ID, tAB.ID}, withdrawals...) {
			if !slices.Contains(all, id) {
				t.Errorf("admin's list: missing %s", id)
			}
		}
	})

	t.Run("account lists show only the caller's accounts", func(t *testing.T) {
		tests := []struct {
			name, token, path string
			want              []string
		}{
			{"alice", alice, "/v1/accounts", []string{aAcct}},
			{"bob", bob, "/v1/accounts", []string{bAcct}},
			{"bob's own owner_id", bob, "/v1/accounts?owner_id=" + bobID, []string{bAcct}},
			{"admin filtering on alice", a.admin, "/v1/accounts?owner_id=" + aliceID, []string{aAcct}},
			{"admin, everyone and the system account", a.admin, "/v1/accounts", []string{aAcct, bAcct, cAcct, system}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := sortedIDs(t, tt.token, tt.path, a)
				if want := sorted(tt.want...); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("GET %s: got %v, want %v", tt.path, got, want)
				}
			})
		}
		expectProblem(t, a.do("GET", "/v1/accounts?owner_id="+aliceID, bob, nil), http.StatusForbidden, "forbidden")
	})

	t.Run("only an admin creates an account for another user", func(t *testing.T) {
		expectProblem(t, a.do("POST", "/v1/accounts", bob, map[string]any{"currency": "USD", "owner_id": aliceID}), http.StatusForbidden, "forbidden")
		if got := sortedIDs(t, a.admin, "/v1/accounts?owner_id="+aliceID, a); fmt.Sprint(got) != fmt.Sprint([]string{aAcct}) {
			t.Errorf("alice's accounts after a refused creation: got %v, want [%s]", got, aAcct)
		}
		r := a.do("POST", "/v1/accounts", bob, map[string]any{"currency": "USD", "owner_id": bobID})
		if r.status != http.StatusCreated {
			t.Errorf("bob naming himself as owner: got %d %s, want 201", r.status, r.body)
		}
		r = a.do("POST", "/v1/accounts", a.admin, map[string]any{"currency": "EUR", "owner_id": aliceID})
		var acct accountFull
		r.json(t, &acct)
		if r.status != http.StatusCreated || acct.OwnerID == nil || *acct.OwnerID != aliceID || acct.Currency != "EUR" {
			t.Fatalf("admin creating for alice: got %d %s, want 201 owned by %s", r.status, r.body, aliceID)
		}
		if got := sortedIDs(t, alice, "/v1/accounts", a); !slices.Contains(got, acct.ID) {
			t.Errorf("alice's accounts: got %v, want them to include %s", got, acct.ID)
		}
		p := expectProblem(t, a.do("POST", "/v1/accounts", a.admin, map[string]any{"currency": "USD", "owner_id": uuid.NewString()}), http.StatusBadRequest, "invalid_request")
		expectFields(t, p, "owner_id")
	})

	a.audit()
}

func TestAccounts(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	alice, aliceID := a.user()
	bob, _ := a.user()

	t.Run("created empty and active", func(t *testing.T) {
		r := a.do("POST", "/v1/accounts", alice, map[string]any{"currency": "eur"})
		if r.status != http.StatusCreated {
			t.Fatalf("status: got %d %s, want 201", r.status, r.body)
		}
		var acct accountFull
		r.json(t, &acct)
		if acct.Currency != "EUR" || acct.Balance != 0 || acct.Available != 0 || acct.Reserved != 0 || acct.Status != "active" ||
			acct.OwnerID == nil || *acct.OwnerID != aliceID || acct.ExternalID != nil || acct.Labels == nil || len(acct.Labels) != 0 {
			t.Errorf("account: got %s, want an empty active EUR account of %s with labels {} and no external_id", r.body, aliceID)
		}
		if !strings.Contains(string(r.body), `"labels":{}`) {
			t.Errorf("labels: got %s, want {}", r.body)
		}
		if uuid.Validate(acct.ID) != nil {
			t.Errorf("id: got %q, want a UUID", acct.ID)
		}
		for _, ts := range []string{acct.CreatedAt, acct.UpdatedAt} {
			if _, err := time.Parse(time.RFC3339, ts); err != nil || !strings.HasSuffix(ts, "Z") {
				t.Errorf("timestamp: got %q, want RFC 3339 in UTC", ts)
			}
		}
		if got, want := r.header.Get("Location"), "/v1/accounts/"+acct.ID; got != want {
			t.Errorf("Location: got %q, want %q", got, want)
		}
		g := a.do("GET", "/v1/accounts/"+acct.ID, alice, nil)
		if g.status != http.StatusOK || string(g.body) != string(r.body) {
			t.Errorf("GET: got %d %s, want the created account %s", g.status, g.body, r.body)
		}
	})

	t.Run("external_id makes creation idempotent", func(t *testing.T) {
		body := map[string]any{"currency": "USD", "external_id": "wallet-1", "labels": map[string]string{"env": "prod"}}
		first := a.do("POST", "/v1/accounts", alice, body)
		var acct accountFull
		first.json(t, &acct)
		if first.status != http.StatusCreated || acct.ExternalID == nil || *acct.ExternalID != "wallet-1" || acct.Labels["env"] != "prod" {
			t.Fatalf("first: got %d %s, want 201 with external_id wallet-1", first.status, first.body)
		}
		again := a.do("POST", "/v1/accounts", alice, map[string]any{"currency": "usd", "external_id": "wallet-1", "labels": map[string]string{"env": "prod"}})
		var same accountFull
		again.json(t, &same)
		if again.status != http.StatusOK || same.ID != acct.ID {
			t.Errorf("same body again: got %d %s, want 200 with id %s", again.status, again.body, acct.ID)
		}
		for _, tt := range []struct {
			name string
			body map[string]any
		}{
			{"different labels", map[string]any{"currency": "USD", "external_id": "wallet-1", "labels": map[string]string{"env": "dev"}}},
			{"no labels", map[string]any{"currency": "USD", "external_id": "wallet-1"}},
			{"different currency", map[string]any{"currency": "EUR", "external_id": "wallet-1", "labels": map[string]string{"env": "prod"}}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				expectProblem(t, a.do("POST", "/v1/accounts", alice, tt.body), http.StatusConflict, "external_id_conflict")
			})
		}
		if got := idsOf(t, a.listAll(t, alice, "/v1/accounts?external_id=wallet-1")); fmt.Sprint(got) != fmt.Sprint([]string{acct.ID}) {
			t.Errorf("alice's wallet-1 accounts: got %v, want [%s]", got, acct.ID)
		}
		// external_id is unique per owner: bob may use the same one.
		other := a.do("POST", "/v1/accounts", bob, map[string]any{"currency": "EUR", "external_id": "wallet-1"})
		var bobs accountFull
		other.json(t, &bobs)
		if other.status != http.StatusCreated || bobs.ID == acct.ID {
			t.Errorf("bob's wallet-1: got %d %s, want 201 with another account", other.status, other.body)
		}
	})

	t.Run("invalid accounts are refused and not created", func(t *testing.T) {
		before := len(a.listAll(t, alice, "/v1/accounts"))
		label32 := manyLabels(32)
		tests := []struct {
			name   string
			body   any
			status int
			code   string
			field  string
		}{
			{"33 labels", map[string]any{"currency": "USD", "labels": manyLabels(33)}, 400, "invalid_request", ""},
			{"label key of 65 characters", map[string]any{"currency": "USD", "labels": map[string]string{strings.Repeat("k", 65): "v"}}, 400, "invalid_request", ""},
			{"label value of 257 characters", map[string]any{"currency": "USD", "labels": map[string]string{"k": strings.Repeat("v", 257)}}, 400, "invalid_request", ""},
			{"empty label key", map[string]any{"currency": "USD", "labels": map[string]string{"": "v"}}, 400, "invalid_request", ""},
			{"label value not a string", map[string]any{"currency": "USD", "labels": map[string]any{"n": 1}}, 400, "malformed_json", ""},
			{"missing currency", map[string]any{"labels": label32}, 400, "invalid_request", "currency"},
			{"malformed currency", map[string]any{"currency": "DOLLAR"}, 400, "invalid_request", "currency"},
			{"unsupported currency", map[string]any{"currency": "XXX"}, 422, "unsupported_currency", ""},
			{"empty external_id", map[string]any{"currency": "USD", "external_id": ""}, 400, "invalid_request", "external_id"},
			{"external_id of 256 characters", map[string]any{"currency": "USD", "external_id": strings.Repeat("x", 256)}, 400, "invalid_request", "external_id"},
			{"owner_id not a UUID", map[string]any{"currency": "USD", "owner_id": "alice"}, 400, "invalid_request", "owner_id"},
			{"status in the body", map[string]any{"currency": "USD", "status": "frozen"}, 400, "malformed_json", ""},
			{"balance in the body", map[string]any{"currency": "USD", "balance": 1000000}, 400, "malformed_json", ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				p := expectProblem(t, a.do("POST", "/v1/accounts", alice, tt.body), tt.status, tt.code)
				if tt.field != "" {
					expectFields(t, p, tt.field)
				}
			})
		}
		if after := len(a.listAll(t, alice, "/v1/accounts")); after != before {
			t.Errorf("alice's accounts: got %d, want %d", after, before)
		}
	})

	t.Run("label limits are inclusive", func(t *testing.T) {
		for name, labels := range map[string]map[string]string{
			"32 labels":                       manyLabels(32),
			"key of 64 characters":            {strings.Repeat("k", 64): "v"},
			"value of 256 characters":         {"k": strings.Repeat("v", 256)},
			"key of 64 multi-byte characters": {strings.Repeat("é", 64): "ü"},
		} {
			r := a.do("POST", "/v1/accounts", alice, map[string]any{"currency": "USD", "labels": labels})
			var acct accountFull
			r.json(t, &acct)
			if r.status != http.StatusCreated || fmt.Sprint(acct.Labels) != fmt.Sprint(labels) {
				t.Errorf("%s: got %d %s, want 201 with the labels", name, r.status, r.body)
			}
		}
	})

	t.Run("status changes", func(t *testing.T) {
		acct := a.account(alice, "USD")
		tests := []struct {
			name   string
			body   any
			status int
			code   string // for problems
			want   string // the account's status afterwards
		}{
			{"freeze", map[string]any{"status": "frozen"}, 200, "", "frozen"},
			{"freeze again", map[string]any{"status": "frozen"}, 200, "", "frozen"},
			{"reactivate", map[string]any{"status": "active"}, 200, "", "active"},
			{"unknown status", map[string]any{"status": "deleted"}, 400, "invalid_request", "active"},
			{"upper-case status", map[string]any{"status": "FROZEN"}, 400, "invalid_request", "active"},
			{"no status", map[string]any{}, 400, "invalid_request", "active"},
			{"other fields", map[string]any{"status": "frozen", "balance": 5}, 400, "malformed_json", "active"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := a.do("PATCH", "/v1/accounts/"+acct, a.admin, tt.body)
				if tt.code != "" {
					expectProblem(t, r, tt.status, tt.code)
				} else {
					var got accountFull
					r.json(t, &got)
					if r.status != tt.status || got.Status != tt.want || got.ID != acct {
						t.Errorf("got %d %s, want %d with status %s", r.status, r.body, tt.status, tt.want)
					}
				}
				if got := a.getAccount(alice, acct).Status; got != tt.want {
					t.Errorf("status afterwards: got %s, want %s", got, tt.want)
				}
			})
		}
		expectProblem(t, a.do("PATCH", "/v1/accounts/"+uuid.NewString(), a.admin, map[string]any{"status": "frozen"}), http.StatusNotFound, "not_found")
	})

	t.Run("closing", func(t *testing.T) {
		funded := a.account(alice, "USD")
		a.deposit(funded, 300, "USD")
		expectProblem(t, a.do("PATCH", "/v1/accounts/"+funded, a.admin, map[string]any{"status": "closed"}), http.StatusConflict, "account_not_empty")
		if got := a.getAccount(alice, funded); got.Status != "active" || got.Balance != 300 {
			t.Errorf("after a refused close: got %+v, want active with 300", got)
		}
		// Emptied by a withdrawal, it closes.
		r := a.do("POST", "/v1/withdrawals?wait=30s", alice, map[string]any{"account_id": funded, "amount": 300, "currency": "USD"})
		if r.status != http.StatusCreated {
			t.Fatalf("withdrawal: got %d %s", r.status, r.body)
		}
		empty := a.account(alice, "USD")
		for _, id := range []string{funded, empty} {
			r := a.do("PATCH", "/v1/accounts/"+id, a.admin, map[string]any{"status": "closed"})
			var got accountFull
			r.json(t, &got)
			if r.status != http.StatusOK || got.Status != "closed" {
				t.Errorf("closing empty %s: got %d %s, want 200 closed", id, r.status, r.body)
			}
		}
	})

	t.Run("filters", func(t *testing.T) {
		carol, _ := a.user()
		usdProd := a.do("POST", "/v1/accounts", carol, map[string]any{"currency": "USD", "labels": map[string]string{"env": "prod", "team": "a"}})
		eurProd := a.do("POST", "/v1/accounts", carol, map[string]any{"currency": "EUR", "labels": map[string]string{"env": "prod"}})
		usdDev := a.do("POST", "/v1/accounts", carol, map[string]any{"currency": "USD", "external_id": "x-1", "labels": map[string]string{"env": "dev"}})
		var up, ep, ud accountFull
		usdProd.json(t, &up)
		eurProd.json(t, &ep)
		usdDev.json(t, &ud)
		tests := []struct {
			query string
			want  []string
		}{
			{"", []string{up.ID, ep.ID, ud.ID}},
			{"currency=USD", []string{up.ID, ud.ID}},
			{"currency=usd", []string{up.ID, ud.ID}},
			{"currency=EUR", []string{ep.ID}},
			{"currency=JPY", nil},
			{"external_id=x-1", []string{ud.ID}},
			{"external_id=x-2", nil},
			{"label.env=prod", []string{up.ID, ep.ID}},
			{"label.env=prod&label.team=a", []string{up.ID}},
			{"label.env=prod&currency=EUR", []string{ep.ID}},
			{"label.env=dev&external_id=x-1&currency=USD", []string{ud.ID}},
			{"label.env=staging", nil},
			{"label.team=b", nil},
		}
		for _, tt := range tests {
			t.Run(tt.query, func(t *testing.T) {
				got := sortedIDs(t, carol, withQuery("/v1/accounts", tt.query), a)
				if want := sorted(tt.want...); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("GET /v1/accounts?%s: got %v, want %v", tt.query, got, want)
				}
			})
		}
		for _, q := range []string{"currency=U5D", "owner_id=carol", "limit=0", "label.=x", "label.env=prod&label.env=dev"} {
			t.Run("bad "+q, func(t *testing.T) {
				expectProblem(t, a.do("GET", "/v1/accounts?"+q, carol, nil), http.StatusBadRequest, "invalid_request")
			})
		}
		// Filter values no account can hold are answered like any other filter, never with a 500.
		for _, q := range []string{"external_id=%00", "external_id=%FF", "label.env=%00", "label.env=%FF"} {
			t.Run("odd "+q, func(t *testing.T) {
				r := a.do("GET", "/v1/accounts?"+q, carol, nil)
				switch r.status {
				case http.StatusOK:
					var p page
					r.json(t, &p)
					if len(p.Data) != 0 {
						t.Errorf("got %s, want no account", r.body)
					}
				case http.StatusBadRequest:
					expectProblem(t, r, http.StatusBadRequest, "invalid_request")
				default:
					t.Errorf("got %d %s, want 200 with no account or 400 invalid_request", r.status, r.body)
					checkNoLeak(t, r.body)
				}
			})
		}
	})

	a.audit()
}
