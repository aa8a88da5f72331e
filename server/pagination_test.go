package server_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
)

// walk reads a list page by page with the limit, following next_cursor, and returns each page's ids,
// or for journal entries their seqs. It checks that every page but the last carries a cursor and
// the last none.
func (a *api) walk(t *testing.T, token, path string, limit int) (pages [][]string) {
	t.Helper()
	next := withQuery(path, fmt.Sprintf("limit=%d", limit))
	for range 100 {
		p := a.getPage(t, token, next)
		var ids []string
		for _, raw := range p.Data {
			var it struct {
				ID  string `json:"id"`
				Seq int64  `json:"seq"`
			}
			if err := json.Unmarshal(raw, &it); err != nil {
				t.Fatalf("decode %s: %v", raw, err)
			}
			if it.Seq != 0 {
				ids = append(ids, fmt.Sprint(it.Seq))
			} else {
				ids = append(ids, it.ID)
			}
		}
		pages = append(pages, ids)
		if p.NextCursor == nil {
			return pages
		}
		if *p.NextCursor == "" {
			t.Fatalf("GET %s: next_cursor is an empty string, want null or a cursor", next)
		}
		next = withQuery(path, fmt.Sprintf("limit=%d&cursor=%s", limit, *p.NextCursor))
	}
	t.Fatalf("GET %s: more than 100 pages", path)
	return nil
}

// reversed returns a reversed copy.
func reversed(s []string) []string {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

// seqs returns the seqs from hi down to lo as strings.
func seqs(hi, lo int) []string {
	var out []string
	for s := hi; s >= lo; s-- {
		out = append(out, fmt.Sprint(s))
	}
	return out
}

// chunk splits s into pages of n.
func chunk(s []string, n int) [][]string {
	var out [][]string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

func TestPagination(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	alice, _ := a.user()
	bob, _ := a.user()
	from := a.account(alice, "USD")
	to := a.account(bob, "USD")
	a.deposit(from, 10_000, "USD")
	// send makes a completed transfer of amount from alice to bob and returns its id.
	send := func(t *testing.T, amount int64) string {
		t.Helper()
		r, tr := a.transfer(alice, map[string]any{"from_account_id": from, "to_account_id": to, "amount": amount, "currency": "USD"})
		if r.status != http.StatusCreated || tr.Status != "completed" {
			t.Fatalf("transfer: got %d %s, want 201 completed", r.status, r.body)
		}
		return tr.ID
	}
	var created []string // oldest first
	for i := range 7 {
		created = append(created, send(t, int64(i+1)))
	}
	newestFirst := reversed(created)

	t.Run("transfers", func(t *testing.T) {
		tests := []struct {
			name, token, path string
			limit             int
			want              [][]string
		}{
			{"limit 3", bob, "/v1/transfers", 3, chunk(newestFirst, 3)},
			{"limit 6", bob, "/v1/transfers", 6, chunk(newestFirst, 6)},
			{"limit equal to the count", bob, "/v1/transfers", 7, [][]string{newestFirst}},
			{"limit above the count", bob, "/v1/transfers", 100, [][]string{newestFirst}},
			{"limit 1", bob, "/v1/transfers", 1, chunk(newestFirst, 1)},
			{"filtered by kind", alice, "/v1/transfers?kind=transfer", 3, chunk(newestFirst, 3)},
			{"filtered by account", a.admin, "/v1/transfers?account_id=" + to, 3, chunk(newestFirst, 3)},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := a.walk(t, tt.token, tt.path, tt.limit)
				if fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Errorf("pages: got %v, want %v", got, tt.want)
				}
			})
		}
	})

	t.Run("entries", func(t *testing.T) {
		tests := []struct {
			name, account string
			limit         int
			want          [][]string
		}{
			{"destination, limit 3", to, 3, chunk(seqs(7, 1), 3)},
			{"source, limit 3", from, 3, chunk(seqs(8, 1), 3)},
			{"source, limit 4", from, 4, chunk(seqs(8, 1), 4)},
			{"source, limit 8", from, 8, [][]string{seqs(8, 1)}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := a.walk(t, a.admin, "/v1/accounts/"+tt.account+"/entries", tt.limit)
				if fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Errorf("seq pages: got %v, want %v", got, tt.want)
				}
			})
		}
		// Each entry's balance_after is the previous one's plus its amount, and the last is the balance.
		for _, acct := range []string{from, to} {
			es := a.entries(t, a.admin, acct)
			for i, e := range es {
				prev := int64(0)
				if i+1 < len(es) {
					prev = es[i+1].BalanceAfter
				}
				if e.BalanceAfter != prev+e.Amount || e.AccountID != acct {
					t.Errorf("entry %+v: want balance_after %d on account %s", e, prev+e.Amount, acct)
				}
			}
			if bal := a.getAccount(a.admin, acct).Balance; len(es) == 0 || es[0].BalanceAfter != bal {
				t.Errorf("account %s: newest balance_after does not match the balance %d", acct, bal)
			}
		}
		want := []string{}
		for i, id := range newestFirst {
			want = append(want, fmt.Sprintf("credit %d %s", 7-i, id))
		}
		var got []string
		for _, e := range a.entries(t, bob, to) {
			got = append(got, fmt.Sprintf("%s %d %s", e.Kind, e.Amount, e.TransferID))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("destination entries: got %v, want %v", got, want)
		}
	})

	t.Run("accounts", func(t *testing.T) {
		carol, _ := a.user()
		var accts []string
		for _, cur := range []string{"USD", "EUR", "JPY", "KWD", "GBP"} {
			accts = append(accts, a.account(carol, cur))
		}
		if got, want := a.walk(t, carol, "/v1/accounts", 2), chunk(reversed(accts), 2); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("pages: got %v, want %v", got, want)
		}
	})

	transfersCursor := a.getPage(t, bob, "/v1/transfers?limit=1").NextCursor
	entriesCursor := a.getPage(t, bob, "/v1/accounts/"+to+"/entries?limit=1").NextCursor
	if transfersCursor == nil || entriesCursor == nil {
		t.Fatal("first pages of one item: want a next_cursor on both lists")
	}

	t.Run("bad limits and cursors", func(t *testing.T) {
		enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
		tests := []struct {
			query string
			code  string
			field string
		}{
			{"limit=0", "invalid_request", "limit"},
			{"limit=101", "invalid_request", "limit"},
			{"limit=abc", "invalid_request", "limit"},
			{"limit=-1", "invalid_request", "limit"},
			{"limit=", "invalid_request", "limit"},
			{"limit=1.5", "invalid_request", "limit"},
			{"limit=%2B5", "invalid_request", "limit"},
			{"limit=99999999999999999999", "invalid_request", "limit"},
			{"cursor=", "invalid_request", "cursor"},
			{"cursor=garbage", "invalid_cursor", ""},
			{"cursor=!!!", "invalid_cursor", ""},
			{"cursor=" + enc("null"), "invalid_cursor", ""},
			{"cursor=" + enc("{}"), "invalid_cursor", ""},
			{"cursor=" + enc(`{"t":"x"}`), "invalid_cursor", ""},
			// A cursor of the shape lists issued when they were ordered by (created_at, id): refused, not
			// taken for the first page.
			{"cursor=" + enc(fmt.Sprintf(`{"t":%d,"i":%q}`, time.Now().UnixMicro(), uuid.NewString())), "invalid_cursor", ""},
		}
		for _, path := range []string{"/v1/transfers", "/v1/accounts/" + to + "/entries", "/v1/accounts"} {
			for _, tt := range tests {
				t.Run(path+"?"+tt.query, func(t *testing.T) {
					p := expectProblem(t, a.do("GET", withQuery(path, tt.query), bob, nil), http.StatusBadRequest, tt.code)
					if tt.field != "" {
						expectFields(t, p, tt.field)
					}
				})
			}
		}
		cross := []struct{ name, path, cursor string }{
			{"an entries cursor on /v1/transfers", "/v1/transfers", *entriesCursor},
			{"a transfers cursor on entries", "/v1/accounts/" + to + "/entries", *transfersCursor},
			{"an entries cursor on /v1/accounts", "/v1/accounts", *entriesCursor},
		}
		for _, tt := range cross {
			t.Run(tt.name, func(t *testing.T) {
				expectProblem(t, a.do("GET", withQuery(tt.path, "cursor="+tt.cursor), bob, nil), http.StatusBadRequest, "invalid_cursor")
			})
		}
		for _, q := range []string{"limit=1", "limit=100"} {
			if r := a.do("GET", "/v1/transfers?"+q, bob, nil); r.status != http.StatusOK {
				t.Errorf("GET /v1/transfers?%s: got %d %s, want 200", q, r.status, r.body)
			}
		}
	})

	t.Run("new items between page reads are neither repeated nor skipped", func(t *testing.T) {
		first := a.getPage(t, bob, "/v1/transfers?limit=3")
		seen := idsOf(t, first.Data)
		added := []string{send(t, 100), send(t, 101)}
		for next := first.NextCursor; next != nil; {
			p := a.getPage(t, bob, "/v1/transfers?limit=3&cursor="+*next)
			seen = append(seen, idsOf(t, p.Data)...)
			next = p.NextCursor
			if next != nil {
				// Another write between every page.
				added = append(added, send(t, 102))
			}
		}
		if fmt.Sprint(seen) != fmt.Sprint(newestFirst) {
			t.Errorf("walk while writing: got %v, want the original %v", seen, newestFirst)
		}
		all := idsOf(t, a.listAll(t, bob, "/v1/transfers"))
		if want := append(reversed(added), newestFirst...); fmt.Sprint(all) != fmt.Sprint(want) {
			t.Errorf("fresh walk: got %v, want %v", all, want)
		}

		// The same for the journal: its seqs stay gap-free and the walk sees exactly the entries that
		// existed when it began.
		total := len(all)
		firstEntries := a.getPage(t, bob, "/v1/accounts/"+to+"/entries?limit=3")
		var got []string
		for _, raw := range firstEntries.Data {
			var e entryBody
			_ = json.Unmarshal(raw, &e)
			got = append(got, fmt.Sprint(e.Seq))
		}
		send(t, 103)
		for next := firstEntries.NextCursor; next != nil; {
			p := a.getPage(t, bob, "/v1/accounts/"+to+"/entries?limit=3&cursor="+*next)
			for _, raw := range p.Data {
				var e entryBody
				_ = json.Unmarshal(raw, &e)
				got = append(got, fmt.Sprint(e.Seq))
			}
			next = p.NextCursor
			if next != nil {
				send(t, 104)
			}
		}
		if want := seqs(total, 1); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("journal walk while writing: got seqs %v, want %v", got, want)
		}
	})

	t.Run("an unknown account's entries are 404, not an empty page", func(t *testing.T) {
		expectProblem(t, a.do("GET", "/v1/accounts/"+uuid.NewString()+"/entries?limit=3", a.admin, nil), http.StatusNotFound, "not_found")
	})

	a.audit()
}
