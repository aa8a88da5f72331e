package temporalclient_test

import (
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/client"

	"github.com/transferd/transferd/internal/securetemporal"
	"github.com/transferd/transferd/internal/temporalclient"
)

// profiles is a temporal.toml as the Temporal CLI writes it: a default profile and a Cloud-shaped one.
const profiles = `
[profile.default]
address = "profile-default:7233"
namespace = "profile-default-ns"

[profile.cloud]
address = "profile-cloud:7233"
namespace = "profile-cloud-ns"
api_key = "profile-key"

[profile.cloud.tls]
server_name = "profile-sni"
`

// connection is what a test reads back from client options.
type connection struct {
	address, namespace string
	tls                bool
	serverName         string
	apiKey             bool
	clientCert         bool
}

func connectionOf(o client.Options) connection {
	c := connection{address: o.HostPort, namespace: o.Namespace, apiKey: o.Credentials != nil}
	if t := o.ConnectionOptions.TLS; t != nil && !o.ConnectionOptions.TLSDisabled {
		c.tls, c.serverName, c.clientCert = true, t.ServerName, t.GetClientCertificate != nil
	}
	// The SDK turns TLS on for an API key unless it is disabled, as envconfig does.
	if c.apiKey && o.ConnectionOptions.TLS == nil && !o.ConnectionOptions.TLSDisabled {
		c.tls = true
	}
	return c
}

// TestOptionsPrecedence checks each layer against the ones below it: the settings (transferd's flags
// and TRANSFERD_* variables) over the TEMPORAL_* variables, over the temporal.toml profile that
// TEMPORAL_CONFIG_FILE and TEMPORAL_PROFILE select, over the defaults.
func TestOptionsPrecedence(t *testing.T) {
	ca := securetemporal.NewCA(t, "test-ca")
	certFile, keyFile := ca.IssueFiles(t, t.TempDir(), "client")
	yes, no := true, false
	tests := []struct {
		name     string
		profiles string
		env      map[string]string
		settings temporalclient.Settings
		want     connection
	}{
		{name: "defaults", want: connection{address: "127.0.0.1:7233", namespace: "default"}},
		{name: "the default profile over the defaults", profiles: profiles,
			want: connection{address: "profile-default:7233", namespace: "profile-default-ns"}},
		{name: "TEMPORAL_PROFILE picks a profile", profiles: profiles, env: map[string]string{"TEMPORAL_PROFILE": "cloud"},
			want: connection{address: "profile-cloud:7233", namespace: "profile-cloud-ns", tls: true, serverName: "profile-sni", apiKey: true}},
		{name: "the profile setting over TEMPORAL_PROFILE", profiles: profiles, env: map[string]string{"TEMPORAL_PROFILE": "default"},
			settings: temporalclient.Settings{Profile: "cloud"},
			want:     connection{address: "profile-cloud:7233", namespace: "profile-cloud-ns", tls: true, serverName: "profile-sni", apiKey: true}},
		{name: "TEMPORAL_* over the profile", profiles: profiles,
			env:  map[string]string{"TEMPORAL_PROFILE": "cloud", "TEMPORAL_ADDRESS": "env:7233", "TEMPORAL_NAMESPACE": "env-ns", "TEMPORAL_TLS_SERVER_NAME": "env-sni"},
			want: connection{address: "env:7233", namespace: "env-ns", tls: true, serverName: "env-sni", apiKey: true}},
		{name: "TEMPORAL_TLS=false over the API key's TLS", profiles: profiles,
			env:  map[string]string{"TEMPORAL_PROFILE": "cloud", "TEMPORAL_TLS": "false"},
			want: connection{address: "profile-cloud:7233", namespace: "profile-cloud-ns", apiKey: true}},
		{name: "the settings over TEMPORAL_*", profiles: profiles,
			env:      map[string]string{"TEMPORAL_ADDRESS": "env:7233", "TEMPORAL_NAMESPACE": "env-ns", "TEMPORAL_TLS_SERVER_NAME": "env-sni"},
			settings: temporalclient.Settings{Address: "flag:7233", Namespace: "flag-ns", TLSServerName: "flag-sni"},
			want:     connection{address: "flag:7233", namespace: "flag-ns", tls: true, serverName: "flag-sni"}},
		{name: "an API key turns TLS on", settings: temporalclient.Settings{APIKey: "k"},
			want: connection{address: "127.0.0.1:7233", namespace: "default", tls: true, apiKey: true}},
		{name: "TLS false over the API key", settings: temporalclient.Settings{APIKey: "k", TLS: &no},
			want: connection{address: "127.0.0.1:7233", namespace: "default", apiKey: true}},
		{name: "TLS true over TEMPORAL_TLS=false", env: map[string]string{"TEMPORAL_TLS": "false"}, settings: temporalclient.Settings{TLS: &yes},
			want: connection{address: "127.0.0.1:7233", namespace: "default", tls: true}},
		{name: "a client certificate over TEMPORAL_TLS=false", env: map[string]string{"TEMPORAL_TLS": "false"},
			settings: temporalclient.Settings{TLSCert: certFile, TLSKey: keyFile},
			want:     connection{address: "127.0.0.1:7233", namespace: "default", tls: true, clientCert: true}},
		{name: "TEMPORAL_TLS_CLIENT_* give a reloaded client certificate",
			env:  map[string]string{"TEMPORAL_TLS_CLIENT_CERT_PATH": certFile, "TEMPORAL_TLS_CLIENT_KEY_PATH": keyFile},
			want: connection{address: "127.0.0.1:7233", namespace: "default", tls: true, clientCert: true}},
		{name: "isolated ignores TEMPORAL_* and profiles", profiles: profiles,
			env:      map[string]string{"TEMPORAL_PROFILE": "cloud", "TEMPORAL_API_KEY": "env-key", "TEMPORAL_TLS": "true"},
			settings: temporalclient.Settings{Address: "127.0.0.1:9999", Isolated: true},
			want:     connection{address: "127.0.0.1:9999", namespace: "default"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			securetemporal.IsolateEnv(t)
			if tt.profiles != "" {
				file := filepath.Join(t.TempDir(), "temporal.toml")
				securetemporal.WriteFile(t, file, []byte(tt.profiles))
				t.Setenv("TEMPORAL_CONFIG_FILE", file)
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			o, err := temporalclient.Options(tt.settings)
			if err != nil {
				t.Fatalf("Options: %v", err)
			}
			if got := connectionOf(o); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestOptionsErrors checks that settings which cannot work are refused when the options are built,
// before any dial.
func TestOptionsErrors(t *testing.T) {
	ca := securetemporal.NewCA(t, "test-ca")
	dir := t.TempDir()
	certFile, keyFile := ca.IssueFiles(t, dir, "client")
	_, otherKey := ca.IssueFiles(t, dir, "other")
	tomlFile := filepath.Join(dir, "temporal.toml")
	securetemporal.WriteFile(t, tomlFile, []byte(profiles))
	tests := []struct {
		name     string
		env      map[string]string
		settings temporalclient.Settings
		want     string
	}{
		{"a profile that is not there", map[string]string{"TEMPORAL_CONFIG_FILE": tomlFile}, temporalclient.Settings{Profile: "staging"}, "staging"},
		{"TEMPORAL_PROFILE that is not there", map[string]string{"TEMPORAL_CONFIG_FILE": tomlFile, "TEMPORAL_PROFILE": "staging"}, temporalclient.Settings{}, "staging"},
		{"a certificate without its key", nil, temporalclient.Settings{TLSCert: certFile}, "key"},
		{"a key without its certificate", map[string]string{"TEMPORAL_TLS_CLIENT_KEY_PATH": keyFile}, temporalclient.Settings{}, "key"},
		{"a certificate file that is not there", nil, temporalclient.Settings{TLSCert: filepath.Join(dir, "missing.pem"), TLSKey: keyFile}, "missing.pem"},
		{"a certificate with another's key", nil, temporalclient.Settings{TLSCert: certFile, TLSKey: otherKey}, "private key does not match"},
		{"a CA file that is not there", nil, temporalclient.Settings{TLSCA: filepath.Join(dir, "missing-ca.pem")}, "missing-ca.pem"},
		{"a compression that is not there", nil, temporalclient.Settings{Compression: "zstd"}, "zstd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			securetemporal.IsolateEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, err := temporalclient.Options(tt.settings)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

// TestOptionsCompression: requests go uncompressed unless gzip is asked for, in every mode, the
// isolated one of dev and the bench included.
func TestOptionsCompression(t *testing.T) {
	securetemporal.IsolateEnv(t)
	for _, tt := range []struct {
		settings temporalclient.Settings
		gzip     bool
	}{
		{temporalclient.Settings{}, false},
		{temporalclient.Settings{Isolated: true}, false},
		{temporalclient.Settings{Compression: temporalclient.CompressionNone}, false},
		{temporalclient.Settings{Compression: temporalclient.CompressionGzip}, true},
	} {
		o, err := temporalclient.Options(tt.settings)
		if err != nil {
			t.Fatal(err)
		}
		switch c := o.ConnectionOptions.GrpcCompression.(type) {
		case *client.GrpcCompressionGzip:
			if !tt.gzip {
				t.Errorf("%+v: gzip, want none", tt.settings)
			}
		case *client.GrpcCompressionNone:
			if tt.gzip {
				t.Errorf("%+v: none, want gzip", tt.settings)
			}
		default:
			t.Errorf("%+v: compression %T, want it set", tt.settings, c)
		}
	}
}
