// Package securetemporal starts, for tests, real Temporal servers (temporaltest, in process) whose
// frontend is secured as a production cluster's or Temporal Cloud's is: one requires TLS with a
// client certificate (mTLS), the other TLS and an API key in the authorization header. The
// certificates are made on the spot. It is for the tests of how transferd connects, never for
// production.
package securetemporal

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/rpc/encryption"
	"go.temporal.io/server/temporal"
	"go.temporal.io/server/temporaltest"
)

// CA is a certificate authority made for a test.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// PEM is the CA's certificate.
	PEM []byte
}

// NewCA makes a CA named name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("securetemporal: CA: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("securetemporal: CA: %v", err)
	}
	return &CA{cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Issue makes a certificate named name signed by ca, and returns it and its key as PEM: a server
// certificate for 127.0.0.1 and localhost when server is true, else a client certificate.
func (ca *CA) Issue(t testing.TB, name string, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("securetemporal: certificate %s: %v", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("securetemporal: key %s: %v", name, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// IssueFiles issues a client certificate named name and writes it and its key to dir/name.pem and
// dir/name-key.pem, replacing files of that name, and returns their paths.
func (ca *CA) IssueFiles(t testing.TB, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM := ca.Issue(t, name, false)
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	WriteFile(t, certFile, certPEM)
	WriteFile(t, keyFile, keyPEM)
	return certFile, keyFile
}

// WriteFile writes b to path, readable by its owner only, as a key file is.
func WriteFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatalf("securetemporal: %v", err)
	}
}

func (ca *CA) tlsCertificate(t testing.TB, name string, server bool) tls.Certificate {
	t.Helper()
	certPEM, keyPEM := ca.Issue(t, name, server)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("securetemporal: %v", err)
	}
	return cert
}

// Server is a running Temporal test server with a secured frontend. Its default client
// (GetDefaultClient) and workers connect as the server's own components do, with their own
// credentials.
type Server struct {
	*temporaltest.TestServer
	// CAFile is the file of the CA that signed the frontend's certificate, for clients to trust.
	CAFile string

	clientCAs atomic.Pointer[x509.CertPool]
	serverCA  *CA

	mu             sync.Mutex
	authorizations []string
}

// StartMTLS starts a server whose frontend accepts only TLS connections that present a client
// certificate signed by one of clientCAs (or by its own CA, for the server's own components). The
// server stops when the test ends.
func StartMTLS(t *testing.T, clientCAs ...*CA) *Server {
	t.Helper()
	s := newServer(t)
	s.TrustClientCAs(clientCAs...)
	internal := s.serverCA.tlsCertificate(t, "temporal-internal", false)
	serverCert := s.serverCA.tlsCertificate(t, "temporal-frontend", true)
	frontend := &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAnyClientCert,
		// The client CAs are read at each handshake, so TrustClientCAs applies to new connections.
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return s.verifyClient(raw)
		},
	}
	s.start(t, frontend, []tls.Certificate{internal}, client.Options{})
	return s
}

// TrustClientCAs replaces the CAs whose client certificates the frontend of StartMTLS accepts, for
// the connections made from now on.
func (s *Server) TrustClientCAs(cas ...*CA) {
	pool := x509.NewCertPool()
	pool.AddCert(s.serverCA.cert)
	for _, ca := range cas {
		pool.AddCert(ca.cert)
	}
	s.clientCAs.Store(pool)
}

// verifyClient checks a client's certificate chain against the CAs trusted now.
func (s *Server) verifyClient(raw [][]byte) error {
	if len(raw) == 0 {
		return errors.New("securetemporal: no client certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, b := range raw {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return err
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: s.clientCAs.Load(), Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}

// StartAPIKey starts a server whose frontend serves TLS (without client certificates) and answers
// calls about any namespace but the server's own only when they carry `authorization: Bearer <key>`;
// a call with any other authorization header is refused whatever it asks. The server stops when the
// test ends.
func StartAPIKey(t *testing.T, key string) *Server {
	t.Helper()
	s := newServer(t)
	serverCert := s.serverCA.tlsCertificate(t, "temporal-frontend", true)
	frontend := &tls.Config{Certificates: []tls.Certificate{serverCert}}
	s.start(t, frontend, nil, client.Options{Credentials: client.NewAPIKeyStaticCredentials(key)},
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return apiKeyClaims{s: s, key: key} }),
		temporal.WithAuthorizer(apiKeyAuthorizer{}))
	return s
}

// Authorizations lists the authorization headers the frontend of StartAPIKey has seen, in order.
func (s *Server) Authorizations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.authorizations)
}

// apiKeySubject is the subject of the claims of a call that carries the key.
const apiKeySubject = "api-key"

// apiKeyClaims maps the authorization header to claims: the key is an admin, no header is nobody
// (the server's own components, which may call only about its own namespace), and any other header
// is refused.
type apiKeyClaims struct {
	s   *Server
	key string
}

func (m apiKeyClaims) GetClaims(ai *authorization.AuthInfo) (*authorization.Claims, error) {
	m.s.mu.Lock()
	m.s.authorizations = append(m.s.authorizations, ai.AuthToken)
	m.s.mu.Unlock()
	switch ai.AuthToken {
	case "Bearer " + m.key:
		return &authorization.Claims{Subject: apiKeySubject, System: authorization.RoleAdmin}, nil
	case "":
		return &authorization.Claims{}, nil
	}
	return nil, errors.New("securetemporal: unknown API key")
}

// AuthInfoRequired is false so that calls without any header reach GetClaims too.
func (apiKeyClaims) AuthInfoRequired() bool { return false }

// apiKeyAuthorizer allows everything to the key, and to others only the calls that name no
// namespace or the server's own, which its components make.
type apiKeyAuthorizer struct{}

func (apiKeyAuthorizer) Authorize(_ context.Context, c *authorization.Claims, t *authorization.CallTarget) (authorization.Result, error) {
	if (c != nil && c.Subject == apiKeySubject) || t.Namespace == "" || t.Namespace == "temporal-system" {
		return authorization.Result{Decision: authorization.DecisionAllow}, nil
	}
	return authorization.Result{Decision: authorization.DecisionDeny, Reason: "an API key is required"}, nil
}

func newServer(t *testing.T) *Server {
	t.Helper()
	s := &Server{serverCA: NewCA(t, "temporal-server-ca")}
	s.CAFile = filepath.Join(t.TempDir(), "server-ca.pem")
	WriteFile(t, s.CAFile, s.serverCA.PEM)
	return s
}

// start starts the server with frontend as the frontend's TLS. The server's own components dial
// the frontend trusting the server's CA with internalCerts; the default client does the same, with
// base's credentials.
func (s *Server) start(t *testing.T, frontend *tls.Config, internalCerts []tls.Certificate, base client.Options, opts ...temporal.ServerOption) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(s.serverCA.cert)
	internal := &tls.Config{RootCAs: roots, Certificates: internalCerts}
	base.ConnectionOptions.TLS = internal
	opts = append(opts, temporal.WithTLSConfigFactory(tlsProvider{frontend: frontend, client: internal}))
	s.TestServer = temporaltest.NewServer(temporaltest.WithT(t), temporaltest.WithBaseClientOptions(base),
		temporaltest.WithBaseServerOptions(opts...))
}

// tlsProvider secures the frontend only: the services talk to one another in plain gRPC, as they
// run in one process here.
type tlsProvider struct {
	frontend, client *tls.Config
}

var _ encryption.TLSConfigProvider = tlsProvider{}

func (p tlsProvider) GetFrontendServerConfig() (*tls.Config, error) { return p.frontend, nil }
func (p tlsProvider) GetFrontendClientConfig() (*tls.Config, error) { return p.client, nil }
func (tlsProvider) GetInternodeServerConfig() (*tls.Config, error)  { return nil, nil }
func (tlsProvider) GetInternodeClientConfig() (*tls.Config, error)  { return nil, nil }
func (tlsProvider) GetRemoteClusterClientConfig(string) (*tls.Config, error) {
	return nil, nil
}
func (tlsProvider) GetExpiringCerts(time.Duration) (encryption.CertExpirationMap, encryption.CertExpirationMap, error) {
	return nil, nil, nil
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("securetemporal: %v", err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatalf("securetemporal: %v", err)
	}
	return n
}

// IsolateEnv keeps the caller's environment out of a test of how transferd connects: it unsets every
// TEMPORAL_* and TRANSFERD_TEMPORAL_* variable for the test's length and points TEMPORAL_CONFIG_FILE
// at a file that does not exist, so no temporal.toml of the machine's is read.
func IsolateEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "TEMPORAL_") || strings.HasPrefix(name, "TRANSFERD_TEMPORAL_") {
			t.Setenv(name, "") // restores the variable when the test ends
			os.Unsetenv(name)
		}
	}
	t.Setenv("TEMPORAL_CONFIG_FILE", filepath.Join(t.TempDir(), "no-temporal.toml"))
}
