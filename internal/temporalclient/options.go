// Package temporalclient builds the Temporal client options of every transferd subcommand, the way
// the rest of the Temporal ecosystem connects: it starts from the SDK's environment configuration (a
// profile of the Temporal CLI's temporal.toml, then the TEMPORAL_* variables) and lays transferd's own
// settings, from its flags and TRANSFERD_* variables, over it. A client certificate given as files is
// read again whenever the files change, so a rotated certificate needs no restart.
package temporalclient

import (
	"crypto/tls"
	"errors"
	"fmt"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
)

// The defaults when neither the settings, the environment nor a profile name an address or a
// namespace.
const (
	DefaultAddress   = "127.0.0.1:7233"
	DefaultNamespace = "default"
)

// Settings are transferd's own connection settings, read from its flags and TRANSFERD_* variables. A
// zero field is not given and leaves the value to the environment, the profile or the default.
type Settings struct {
	// Address is the frontend's host:port.
	Address string
	// Namespace is the Temporal namespace.
	Namespace string
	// APIKey is sent as `authorization: Bearer <key>` on every call. It turns TLS on unless TLS is
	// false.
	APIKey string
	// TLS turns TLS on or off; nil leaves it to the rest of the settings, the environment and the
	// profile.
	TLS *bool
	// TLSCert and TLSKey are the files of the client certificate and its key (PEM), for mTLS. They
	// are read again whenever either file changes.
	TLSCert, TLSKey string
	// TLSCA is the file of the CA certificates (PEM) the server's certificate must chain to, instead
	// of the system's.
	TLSCA string
	// TLSServerName is the name the server's certificate must have, when it is not the address's
	// host.
	TLSServerName string
	// Profile names the temporal.toml profile; empty for TEMPORAL_PROFILE, else "default". A named
	// profile must exist.
	Profile string
	// Compression is the gRPC compression of the client's requests: CompressionNone (the default
	// here) or CompressionGzip (the SDK's default).
	Compression string
	// Isolated ignores the environment and the profiles: for the clients of a Temporal server the
	// process started itself (transferd dev, the bench), which must not take a production cluster's
	// credentials from the shell.
	Isolated bool
}

// The gRPC compressions of Settings.Compression.
//
// transferd's requests to Temporal are small (a transfer's input, a workflow task's few commands),
// so gzip saves few bytes, and it costs every call a compressor's setup: a tenth of the API's CPU
// and more of the worker's in the bench's profiles (docs/profile-cluster.md). transferd therefore
// sends them uncompressed unless told otherwise; gzip is for a link where bytes cost more than CPU.
const (
	CompressionNone = "none"
	CompressionGzip = "gzip"
)

// Options returns the client options that s, the environment and the profile make, in this order of
// precedence: s, then the TEMPORAL_* variables (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
// TEMPORAL_API_KEY, TEMPORAL_TLS, TEMPORAL_TLS_CLIENT_CERT_PATH, ... as the SDK's envconfig reads
// them), then the profile of the temporal.toml that TEMPORAL_CONFIG_FILE names (by default the
// Temporal CLI's), then the defaults. Any TLS file of s turns TLS on unless s.TLS is false. It reads
// the files it is given, so a missing or bad file is an error now rather than at the first dial.
// The caller adds its logger, metrics and interceptors.
func Options(s Settings) (client.Options, error) {
	var prof envconfig.ClientConfigProfile
	if !s.Isolated {
		var err error
		prof, err = envconfig.LoadClientConfigProfile(envconfig.LoadClientConfigProfileOptions{ConfigFileProfile: s.Profile})
		if err != nil {
			return client.Options{}, fmt.Errorf("temporal: client configuration: %w", err)
		}
	}
	s.apply(&prof)
	if prof.Address == "" {
		prof.Address = DefaultAddress
	}
	if prof.Namespace == "" {
		prof.Namespace = DefaultNamespace
	}

	// The client certificate's files are left to a reloader rather than read once by envconfig.
	var certFile, keyFile string
	if prof.TLS != nil && !prof.TLS.Disabled && (prof.TLS.ClientCertPath != "" || prof.TLS.ClientKeyPath != "") {
		certFile, keyFile = prof.TLS.ClientCertPath, prof.TLS.ClientKeyPath
		if certFile == "" || keyFile == "" {
			return client.Options{}, errors.New("temporal: a client certificate needs both its certificate and its key file")
		}
		if len(prof.TLS.ClientCertData) > 0 || len(prof.TLS.ClientKeyData) > 0 {
			return client.Options{}, errors.New("temporal: a client certificate is given both as files and as data")
		}
		tlsCopy := *prof.TLS
		tlsCopy.ClientCertPath, tlsCopy.ClientKeyPath = "", ""
		prof.TLS = &tlsCopy
	}
	o, err := prof.ToClientOptions(envconfig.ToClientOptionsRequest{})
	if err != nil {
		return client.Options{}, fmt.Errorf("temporal: %w", err)
	}
	switch s.Compression {
	case "", CompressionNone:
		o.ConnectionOptions.GrpcCompression = &client.GrpcCompressionNone{}
	case CompressionGzip:
		o.ConnectionOptions.GrpcCompression = &client.GrpcCompressionGzip{}
	default:
		return client.Options{}, fmt.Errorf("temporal: gRPC compression %q: want %s or %s", s.Compression, CompressionNone, CompressionGzip)
	}
	if certFile != "" {
		r, err := newCertReloader(certFile, keyFile)
		if err != nil {
			return client.Options{}, err
		}
		if o.ConnectionOptions.TLS == nil {
			o.ConnectionOptions.TLS = &tls.Config{}
		}
		o.ConnectionOptions.TLS.GetClientCertificate = r.clientCertificate
	}
	return o, nil
}

// apply lays the settings given over the profile.
func (s Settings) apply(p *envconfig.ClientConfigProfile) {
	if s.Address != "" {
		p.Address = s.Address
	}
	if s.Namespace != "" {
		p.Namespace = s.Namespace
	}
	if s.APIKey != "" {
		p.APIKey = s.APIKey
	}
	if s.TLS == nil && s.TLSCert == "" && s.TLSKey == "" && s.TLSCA == "" && s.TLSServerName == "" {
		return
	}
	t := &envconfig.ClientConfigTLS{}
	if p.TLS != nil {
		*t = *p.TLS
	}
	p.TLS = t
	// A TLS file given here asks for TLS, whatever the environment or the profile say, unless TLS
	// itself is said to be off here.
	t.Disabled = false
	if s.TLS != nil {
		t.Disabled = !*s.TLS
	}
	if s.TLSCert != "" {
		t.ClientCertPath, t.ClientCertData = s.TLSCert, nil
	}
	if s.TLSKey != "" {
		t.ClientKeyPath, t.ClientKeyData = s.TLSKey, nil
	}
	if s.TLSCA != "" {
		t.ServerCACertPath, t.ServerCACertData = s.TLSCA, nil
	}
	if s.TLSServerName != "" {
		t.ServerName = s.TLSServerName
	}
}
