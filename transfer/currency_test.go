package transfer

import (
	"slices"
	"strings"
	"testing"
)

func TestParseCurrency(t *testing.T) {
	tests := []struct {
		in       string
		want     Currency
		wantExp  int
		wantCode Code // empty when the input is accepted
	}{
		{in: "USD", want: "USD", wantExp: 2},
		{in: "usd", want: "USD", wantExp: 2},
		{in: "uSd", want: "USD", wantExp: 2},
		{in: "JPY", want: "JPY", wantExp: 0},
		{in: "jpy", want: "JPY", wantExp: 0},
		{in: "KWD", want: "KWD", wantExp: 3},
		{in: "EUR", want: "EUR", wantExp: 2},
		// Well-formed codes the service does not accept.
		{in: "XXX", wantCode: CodeUnsupportedCurrency},
		{in: "xxx", wantCode: CodeUnsupportedCurrency},
		{in: "ABC", wantCode: CodeUnsupportedCurrency},
		{in: "XAU", wantCode: CodeUnsupportedCurrency},
		// Anything that is not three ASCII letters.
		{in: "", wantCode: CodeInvalidInput},
		{in: "US", wantCode: CodeInvalidInput},
		{in: "USDX", wantCode: CodeInvalidInput},
		{in: "U1D", wantCode: CodeInvalidInput},
		{in: "US ", wantCode: CodeInvalidInput},
		{in: " US", wantCode: CodeInvalidInput},
		{in: "US\x00", wantCode: CodeInvalidInput},
		{in: "U@D", wantCode: CodeInvalidInput},    // '@' is 'A'-1
		{in: "U[D", wantCode: CodeInvalidInput},    // '[' is 'Z'+1
		{in: "U`D", wantCode: CodeInvalidInput},    // '`' is 'a'-1
		{in: "U{D", wantCode: CodeInvalidInput},    // '{' is 'z'+1
		{in: "U\x15D", wantCode: CodeInvalidInput}, // 0x15|0x20 is '5', not a letter
		{in: "€", wantCode: CodeInvalidInput},      // three bytes, no letters
		{in: "ÜSD", wantCode: CodeInvalidInput},
		{in: "U\xd3D", wantCode: CodeInvalidInput}, // 0xd3|0x20 is 0xf3, beyond 'z'
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseCurrency(tt.in)
			if tt.wantCode != "" {
				if err == nil {
					t.Fatalf("ParseCurrency(%q) = %q, nil; want an error with code %q", tt.in, got, tt.wantCode)
				}
				if code := ErrorCode(err); code != tt.wantCode {
					t.Errorf("ParseCurrency(%q) error code = %q, want %q (error %v)", tt.in, code, tt.wantCode, err)
				}
				if got != "" {
					t.Errorf("ParseCurrency(%q) = %q with an error, want empty", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCurrency(%q) error = %v, want nil", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseCurrency(%q) = %q, want %q", tt.in, got, tt.want)
			}
			exp, ok := got.Exponent()
			if !ok || exp != tt.wantExp {
				t.Errorf("%s.Exponent() = %d, %v; want %d, true", got, exp, ok, tt.wantExp)
			}
		})
	}
}

func TestCurrencyExponentUnsupported(t *testing.T) {
	for _, c := range []Currency{"", "XXX", "usd", "US"} {
		if exp, ok := c.Exponent(); ok {
			t.Errorf("Currency(%q).Exponent() = %d, true; want false", c, exp)
		}
	}
}

func TestCurrencies(t *testing.T) {
	got := Currencies()
	if len(got) == 0 {
		t.Fatal("Currencies() is empty")
	}
	if !slices.IsSortedFunc(got, func(a, b CurrencyInfo) int { return strings.Compare(string(a.Code), string(b.Code)) }) {
		t.Errorf("Currencies() is not sorted by code: %v", got)
	}
	seen := map[Currency]bool{}
	for i, ci := range got {
		if seen[ci.Code] {
			t.Errorf("Currencies()[%d] = %s appears twice", i, ci.Code)
		}
		seen[ci.Code] = true
		// Every listed currency is one ParseCurrency accepts, with the same exponent.
		parsed, err := ParseCurrency(string(ci.Code))
		if err != nil || parsed != ci.Code {
			t.Errorf("ParseCurrency(%q) = %q, %v; want %q, nil", ci.Code, parsed, err, ci.Code)
		}
		if exp, ok := ci.Code.Exponent(); !ok || exp != ci.Exponent {
			t.Errorf("%s.Exponent() = %d, %v; Currencies() says %d", ci.Code, exp, ok, ci.Exponent)
		}
		if ci.Exponent < 0 || ci.Exponent > 3 {
			t.Errorf("%s exponent = %d, want 0..3", ci.Code, ci.Exponent)
		}
	}
	for _, want := range []CurrencyInfo{{"USD", 2}, {"JPY", 0}, {"KWD", 3}, {"EUR", 2}, {"BHD", 3}, {"KRW", 0}} {
		if !slices.Contains(got, want) {
			t.Errorf("Currencies() does not contain %+v", want)
		}
	}
	// The list is a copy: changing it does not change the next one.
	got[0].Exponent = 99
	if again := Currencies(); again[0].Exponent == 99 {
		t.Error("Currencies() returns shared state")
	}
}

func FuzzParseCurrency(f *testing.F) {
	for _, s := range []string{
		"USD", "usd", "uSd", "JPY", "KWD", "XXX", "ABC", "US", "USDX", "U1D", "", "   ",
		"U@D", "U[D", "U`D", "U{D", "€", "ÜSD", "\xff\xff\xff", "\x00\x00\x00", "\xd5\xd3\xc4",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseCurrency(s)
		threeLetters := len(s) == 3 && isASCIILetter(s[0]) && isASCIILetter(s[1]) && isASCIILetter(s[2])
		if err != nil {
			if got != "" {
				t.Errorf("ParseCurrency(%q) = %q with error %v, want empty", s, got, err)
			}
			var want Code = CodeInvalidInput
			if threeLetters {
				want = CodeUnsupportedCurrency
			}
			if code := ErrorCode(err); code != want {
				t.Errorf("ParseCurrency(%q) error code = %q, want %q (error %v)", s, code, want, err)
			}
			return
		}
		if !threeLetters {
			t.Fatalf("ParseCurrency(%q) = %q, nil; accepted something that is not three ASCII letters", s, got)
		}
		if len(got) != 3 || !isUpper(got[0]) || !isUpper(got[1]) || !isUpper(got[2]) {
			t.Errorf("ParseCurrency(%q) = %q, want three upper-case ASCII letters", s, got)
		}
		if _, ok := got.Exponent(); !ok {
			t.Errorf("ParseCurrency(%q) = %q, which has no exponent", s, got)
		}
		// Parsing is case-insensitive: every casing of an accepted code gives the same currency.
		for _, variant := range []string{strings.ToLower(s), strings.ToUpper(s), swapCase(s)} {
			again, err := ParseCurrency(variant)
			if err != nil || again != got {
				t.Errorf("ParseCurrency(%q) = %q, %v; want %q, nil like ParseCurrency(%q)", variant, again, err, got, s)
			}
		}
	})
}

func isASCIILetter(b byte) bool { return isUpper(b) || ('a' <= b && b <= 'z') }

func isUpper(b byte) bool { return 'A' <= b && b <= 'Z' }

// swapCase swaps the case of the ASCII letters of s.
func swapCase(s string) string {
	b := []byte(s)
	for i, c := range b {
		if isASCIILetter(c) {
			b[i] = c ^ 0x20
		}
	}
	return string(b)
}
