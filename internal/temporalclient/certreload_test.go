package temporalclient

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/securetemporal"
)

// TestCertReloaderHalfWritten rotates a pair one file at a time: while the new certificate sits
// beside the old key, the old pair stays in use; once the new key is written, the new pair is.
func TestCertReloaderHalfWritten(t *testing.T) {
	ca := securetemporal.NewCA(t, "clients")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	oldCert, oldKey := ca.Issue(t, "old", false)
	newCert, newKey := ca.Issue(t, "new", false)
	// Each write gets a later modification time than the last, whatever the file system's clock
	// granularity.
	stamp := time.Now()
	write := func(path string, b []byte) {
		t.Helper()
		securetemporal.WriteFile(t, path, b)
		stamp = stamp.Add(time.Second)
		if err := os.Chtimes(path, stamp, stamp); err != nil {
			t.Fatal(err)
		}
	}
	write(certFile, oldCert)
	write(keyFile, oldKey)
	r, err := newCertReloader(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	presented := func() []byte {
		t.Helper()
		c, err := r.clientCertificate(nil)
		if err != nil || c == nil {
			t.Fatalf("clientCertificate: %v, %v", c, err)
		}
		return c.Certificate[0]
	}
	oldDER := presented()

	write(certFile, newCert)
	if got := presented(); !bytes.Equal(got, oldDER) {
		t.Error("with the new certificate beside the old key: got another certificate, want the old pair kept")
	}
	write(keyFile, newKey)
	if got := presented(); bytes.Equal(got, oldDER) {
		t.Error("with both new files: got the old certificate, want the new one")
	}
}
