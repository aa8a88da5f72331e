package temporalclient

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
)

// certReloader serves the client certificate of a pair of files for every TLS handshake, reading the
// files again when either one's modification time or size has changed since the last good read. A
// pair that does not load, as in a rotation caught half-written with the new certificate beside the
// old key, leaves the last good certificate in use until both files match.
type certReloader struct {
	certFile, keyFile string

	mu    sync.Mutex
	cert  *tls.Certificate
	stamp [2]fileStamp
}

// fileStamp is what tells that a file changed.
type fileStamp struct {
	modNano, size int64
}

// newCertReloader reads the pair once, so a missing or bad pair is an error at start.
func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	stamp, err := r.stamps()
	if err == nil {
		err = r.load(stamp)
	}
	if err != nil {
		return nil, fmt.Errorf("temporal: client certificate %s and key %s: %w", certFile, keyFile, err)
	}
	return r, nil
}

// clientCertificate is the tls.Config's GetClientCertificate: it is asked at each handshake, that is
// each new connection, so a connection made after a rotation presents the new certificate.
func (r *certReloader) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if stamp, err := r.stamps(); err == nil && stamp != r.stamp {
		// On failure the last good certificate stays, and the next handshake tries again.
		_ = r.load(stamp)
	}
	return r.cert, nil
}

// load reads the pair and, when it loads, keeps it with the stamps taken before the read.
func (r *certReloader) load(stamp [2]fileStamp) error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	r.cert, r.stamp = &cert, stamp
	return nil
}

// stamps are the pair's stamps now. Stat follows symbolic links, so a Kubernetes secret volume,
// which swaps a link to a new directory, counts as changed.
func (r *certReloader) stamps() ([2]fileStamp, error) {
	var s [2]fileStamp
	for i, name := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return s, err
		}
		s[i] = fileStamp{modNano: fi.ModTime().UnixNano(), size: fi.Size()}
	}
	return s, nil
}
