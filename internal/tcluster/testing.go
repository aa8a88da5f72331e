package tcluster

import (
	"context"
	"testing"
	"time"
)

// ForTest starts a cluster for t, its logs in t's temporary directory, and closes it when t ends,
// printing the tail of every service's log first if t failed. It skips t under -short.
func ForTest(t testing.TB, o Options) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a Temporal cluster")
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	start := time.Now()
	c, err := Start(context.Background(), o)
	if err != nil {
		t.Fatalf("start the Temporal cluster: %v", err)
	}
	t.Logf("Temporal cluster on PostgreSQL ready at %s in %s", c.HostPort(), time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Temporal cluster logs:\n%s", c.LogTail(30))
		}
		c.Close()
	})
	return c
}
