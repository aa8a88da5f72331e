package server

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/transfer"
)

// TestLimitsDefaults checks the buckets that sign-in and sign-up take from: 60 a minute per address,
// 10 a minute per email and address, 100 per 10 minutes per email for sign-in, 60 an hour per
// address for sign-up, unless set; none when a limit is disabled or there is no store.
func TestLimitsDefaults(t *testing.T) {
	var store Limits = noLimits{}
	three := Rate{Attempts: 3, Window: time.Hour}
	tests := []struct {
		name       string
		l          *limits
		wantSignIn []transfer.Bucket
		wantSignUp []transfer.Bucket
	}{
		{"defaults", newLimits(store, SignInLimit{}, SignUpLimit{}),
			[]transfer.Bucket{{Key: keySignInAddress + subjectKey("ip"), Rate: Rate{Attempts: 60, Window: time.Minute}}, {Key: keySignInPair + subjectKey(emailKey("e")+"\x00"+"ip"), Rate: Rate{Attempts: 10, Window: time.Minute}}, {Key: keySignInEmail + emailKey("e"), Rate: Rate{Attempts: 100, Window: 10 * time.Minute}}},
			[]transfer.Bucket{{Key: keySignUpAddress + subjectKey("ip"), Rate: Rate{Attempts: 60, Window: time.Hour}}}},
		{"set", newLimits(store, SignInLimit{PerEmailAddress: three, PerEmail: three, PerIP: three}, SignUpLimit{PerIP: three}),
			[]transfer.Bucket{{Key: keySignInAddress + subjectKey("ip"), Rate: three}, {Key: keySignInPair + subjectKey(emailKey("e")+"\x00"+"ip"), Rate: three}, {Key: keySignInEmail + emailKey("e"), Rate: three}},
			[]transfer.Bucket{{Key: keySignUpAddress + subjectKey("ip"), Rate: three}}},
		{"a rate without a window takes the default", newLimits(store, SignInLimit{PerEmail: Rate{Attempts: 3}}, SignUpLimit{PerIP: Rate{Window: time.Hour}}),
			[]transfer.Bucket{{Key: keySignInAddress + subjectKey("ip"), Rate: defaultPerIP}, {Key: keySignInPair + subjectKey(emailKey("e")+"\x00"+"ip"), Rate: defaultPerEmailAddr}, {Key: keySignInEmail + emailKey("e"), Rate: defaultPerEmail}},
			[]transfer.Bucket{{Key: keySignUpAddress + subjectKey("ip"), Rate: defaultSignUpsPerIP}}},
		{"disabled", newLimits(store, SignInLimit{Disabled: true}, SignUpLimit{Disabled: true}), nil, nil},
		{"no store", newLimits(nil, SignInLimit{}, SignUpLimit{}), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.l.signInBuckets("ip", "e"); !slices.Equal(got, tt.wantSignIn) {
				t.Errorf("sign-in buckets: got %v, want %v", got, tt.wantSignIn)
			}
			if got := tt.l.signUpBuckets("ip"); !slices.Equal(got, tt.wantSignUp) {
				t.Errorf("sign-up buckets: got %v, want %v", got, tt.wantSignUp)
			}
		})
	}
	// The same address is a different bucket for sign-in and for sign-up.
	l := newLimits(store, SignInLimit{}, SignUpLimit{})
	if l.signInBuckets("ip", "e")[0].Key == l.signUpBuckets("ip")[0].Key {
		t.Errorf("sign-in and sign-up share the address's bucket")
	}
}

type noLimits struct{ Limits }

// TestEmailKey checks that every spelling the ledger matches as one email shares one bucket, and
// that keys have a fixed size however long the email, and hold no part of it.
func TestEmailKey(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"ada@example.com", "ada@example.com", true},
		{"ada@example.com", "ADA@Example.COM", true},
		{"ada@example.com", "  ada@example.com\t", true},
		{"ada@example.com", "ada@example.org", false},
		{"ada@example.com", "ada@example.com\x00", false},
	}
	for _, tt := range tests {
		if got := emailKey(tt.a) == emailKey(tt.b); got != tt.same {
			t.Errorf("emailKey(%q) == emailKey(%q): got %v, want %v", tt.a, tt.b, got, tt.same)
		}
	}
	if got := len(emailKey(string(make([]byte, 1<<16)))); got != 32 {
		t.Errorf("key of a 64 KiB email: got %d characters, want 32", got)
	}
	if k := emailKey("ada@example.com"); strings.Contains(k, "ada") {
		t.Errorf("key %q holds the email", k)
	}
}
