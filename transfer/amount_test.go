package transfer

import "testing"

func TestNewAmount(t *testing.T) {
	tests := []struct {
		name string
		in   int64
		ok   bool
	}{
		{"zero", 0, false},
		{"negative", -1, false},
		{"most negative", -1 << 63, false},
		{"one", 1, true},
		{"max", 1<<53 - 1, true},
		{"max plus one", 1 << 53, false},
		{"most positive", 1<<63 - 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NewAmount(tt.in)
			if !tt.ok {
				if err == nil {
					t.Fatalf("NewAmount(%d) = %v, nil; want an error", tt.in, got)
				}
				if code := ErrorCode(err); code != CodeInvalidAmount {
					t.Errorf("NewAmount(%d) error code = %q, want %q (error %v)", tt.in, code, CodeInvalidAmount, err)
				}
				if got != 0 {
					t.Errorf("NewAmount(%d) = %v with an error, want 0", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewAmount(%d) error = %v, want nil", tt.in, err)
			}
			if got.Int64() != tt.in {
				t.Errorf("NewAmount(%d).Int64() = %d, want %d", tt.in, got.Int64(), tt.in)
			}
		})
	}
}

func TestMaxAmount(t *testing.T) {
	if want := int64(9007199254740991); MaxAmount != want {
		t.Errorf("MaxAmount = %d, want %d (2^53-1)", MaxAmount, want)
	}
}

func TestAmountString(t *testing.T) {
	tests := []struct {
		in   Amount
		want string
	}{
		{1, "1"},
		{1250, "1250"},
		{Amount(MaxAmount), "9007199254740991"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("Amount(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
	}
}
