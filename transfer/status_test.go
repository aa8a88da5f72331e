package transfer

import "testing"

func TestStatus(t *testing.T) {
	tests := []struct {
		s     Status
		final bool
		valid bool
	}{
		{StatusPending, false, true},
		{StatusReserved, false, true},
		{StatusDebited, false, true},
		{StatusCompleted, true, true},
		{StatusFailed, true, true},
		{StatusCancelled, true, true},
		{"", false, false},
		{"Completed", false, false},
		{"canceled", false, false},
		{"unknown", false, false},
	}
	for _, tt := range tests {
		if got := tt.s.Final(); got != tt.final {
			t.Errorf("Status(%q).Final() = %v, want %v", tt.s, got, tt.final)
		}
		if got := tt.s.Valid(); got != tt.valid {
			t.Errorf("Status(%q).Valid() = %v, want %v", tt.s, got, tt.valid)
		}
	}
}

func TestKindValid(t *testing.T) {
	tests := []struct {
		k    Kind
		want bool
	}{
		{KindTransfer, true},
		{KindDeposit, true},
		{KindWithdrawal, true},
		{"", false},
		{"Transfer", false},
		{"refund", false},
	}
	for _, tt := range tests {
		if got := tt.k.Valid(); got != tt.want {
			t.Errorf("Kind(%q).Valid() = %v, want %v", tt.k, got, tt.want)
		}
	}
}

func TestAccountStatusValid(t *testing.T) {
	tests := []struct {
		s    AccountStatus
		want bool
	}{
		{AccountActive, true},
		{AccountFrozen, true},
		{AccountClosed, true},
		{"", false},
		{"deleted", false},
	}
	for _, tt := range tests {
		if got := tt.s.Valid(); got != tt.want {
			t.Errorf("AccountStatus(%q).Valid() = %v, want %v", tt.s, got, tt.want)
		}
	}
}

func TestAccountAvailable(t *testing.T) {
	a := Account{Balance: 1000, Reserved: 250}
	if got, want := a.Available(), int64(750); got != want {
		t.Errorf("Available() = %d, want %d", got, want)
	}
}
