//go:build !nodev

package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestTemporalRejectsBadAddresses checks that transferd temporal refuses an address it cannot
// listen on before it starts anything. Its running, killing and restarting over the same data dir
// are the chaos suite's business (chaos/).
func TestTemporalRejectsBadAddresses(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--addr", "7233"}, "temporal address"},
		{[]string{"--addr", "127.0.0.1:99999"}, "temporal address"},
		{[]string{"--ui-addr", "localhost"}, "UI address"},
	}
	for _, tt := range tests {
		args := append([]string{"temporal", "--data-dir", t.TempDir()}, tt.args...)
		err := run(context.Background(), args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("transferd %s: got %v, want an error about the %s", strings.Join(args, " "), err, tt.want)
		}
	}
}
