package transfer

import (
	"bytes"
	"encoding/hex"
	"maps"
	"testing"

	"github.com/google/uuid"
)

func baseRequest() Request {
	return Request{
		ID:            uuid.MustParse("00000000-0000-0000-0000-0000000000aa"),
		Kind:          KindTransfer,
		FromAccountID: uuid.MustParse("11111111-1111-1111-1111-111111111111"),
		ToAccountID:   uuid.MustParse("22222222-2222-2222-2222-222222222222"),
		Amount:        1250,
		Currency:      "USD",
		Description:   "rent",
		Labels:        map[string]string{"a": "1", "b": "2", "c": "3"},
		InitiatedBy:   uuid.MustParse("33333333-3333-3333-3333-333333333333"),
	}
}

func TestRequestHashEqual(t *testing.T) {
	base := baseRequest()
	want := base.Hash()
	if len(want) != 32 {
		t.Fatalf("Hash() has %d bytes, want 32 (SHA-256)", len(want))
	}

	tests := []struct {
		name   string
		change func(r *Request)
	}{
		{"same request", func(r *Request) {}},
		{"labels copied", func(r *Request) { r.Labels = maps.Clone(r.Labels) }},
		{"labels built in another order", func(r *Request) {
			r.Labels = map[string]string{}
			for _, k := range []string{"c", "a", "b"} {
				r.Labels[k] = base.Labels[k]
			}
		}},
		// ID and InitiatedBy do not define the transfer.
		{"another id", func(r *Request) { r.ID = uuid.MustParse("00000000-0000-0000-0000-0000000000bb") }},
		{"another initiator", func(r *Request) { r.InitiatedBy = uuid.Nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := baseRequest()
			tt.change(&r)
			// Map iteration order is random; hash several times to give it a chance to differ.
			for i := 0; i < 20; i++ {
				if got := r.Hash(); !bytes.Equal(got, want) {
					t.Fatalf("Hash() = %s, want %s", hex.EncodeToString(got), hex.EncodeToString(want))
				}
			}
		})
	}
}

func TestRequestHashDiffers(t *testing.T) {
	base := baseRequest().Hash()
	tests := []struct {
		name   string
		change func(r *Request)
	}{
		{"kind", func(r *Request) { r.Kind = KindDeposit }},
		{"from", func(r *Request) { r.FromAccountID = uuid.MustParse("44444444-4444-4444-4444-444444444444") }},
		{"to", func(r *Request) { r.ToAccountID = uuid.MustParse("44444444-4444-4444-4444-444444444444") }},
		{"from and to swapped", func(r *Request) { r.FromAccountID, r.ToAccountID = r.ToAccountID, r.FromAccountID }},
		{"amount", func(r *Request) { r.Amount = 1251 }},
		{"currency", func(r *Request) { r.Currency = "EUR" }},
		{"description", func(r *Request) { r.Description = "rent!" }},
		{"description empty", func(r *Request) { r.Description = "" }},
		{"label value", func(r *Request) { r.Labels = map[string]string{"a": "1", "b": "2", "c": "4"} }},
		{"label key", func(r *Request) { r.Labels = map[string]string{"a": "1", "b": "2", "d": "3"} }},
		{"label added", func(r *Request) { r.Labels = map[string]string{"a": "1", "b": "2", "c": "3", "d": ""} }},
		{"label removed", func(r *Request) { r.Labels = map[string]string{"a": "1", "b": "2"} }},
		{"no labels", func(r *Request) { r.Labels = nil }},
		{"label values swapped", func(r *Request) { r.Labels = map[string]string{"a": "2", "b": "1", "c": "3"} }},
		// Field boundaries are unambiguous: moving bytes from one field to the next changes the hash.
		{"description into label", func(r *Request) {
			r.Description = "ren"
			r.Labels = map[string]string{"ta": "1", "b": "2", "c": "3"}
		}},
		{"currency into description", func(r *Request) { r.Currency = "USDr"; r.Description = "ent" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := baseRequest()
			tt.change(&r)
			if got := r.Hash(); bytes.Equal(got, base) {
				t.Errorf("Hash() after changing %s = %s, the same as before", tt.name, hex.EncodeToString(got))
			}
		})
	}
}

func TestRequestHashLabelBoundaries(t *testing.T) {
	tests := []struct {
		name string
		x, y map[string]string
	}{
		{"key and value split differently", map[string]string{"a": "bc"}, map[string]string{"ab": "c"}},
		{"one label or two", map[string]string{"a": "b", "c": "d"}, map[string]string{"a": "bcd"}},
		{"empty value or none", map[string]string{"a": ""}, nil},
		{"empty key", map[string]string{"": "a"}, map[string]string{"a": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, y := baseRequest(), baseRequest()
			x.Labels, y.Labels = tt.x, tt.y
			if bytes.Equal(x.Hash(), y.Hash()) {
				t.Errorf("Hash() with labels %v equals Hash() with labels %v", tt.x, tt.y)
			}
		})
	}
}

func TestRequestHashNilAndEmptyLabels(t *testing.T) {
	x, y := baseRequest(), baseRequest()
	x.Labels, y.Labels = nil, map[string]string{}
	if !bytes.Equal(x.Hash(), y.Hash()) {
		t.Error("Hash() with nil labels differs from Hash() with empty labels; both mean no labels")
	}
}
