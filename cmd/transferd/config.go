package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/transferd/transferd/internal/temporalclient"
	"github.com/transferd/transferd/webhooks"
)

// config is every setting of every subcommand. Each field is a flag, and its default can be set by an
// environment variable: TRANSFERD_<FLAG> with dashes as underscores, and the conventional
// DATABASE_URL too. The Temporal connection's flags lie over the Temporal SDK's own environment
// variables and profiles (TEMPORAL_ADDRESS, TEMPORAL_API_KEY, temporal.toml, ...): see
// temporalOptions.
type config struct {
	DatabaseURL       string
	DBMaxConns        int
	TemporalAddress   string
	TemporalNamespace string
	TaskQueue         string
	// The Temporal connection's security and profile; empty (and TemporalTLS unset) when not given.
	TemporalAPIKey        string
	TemporalTLS           optionalBool
	TemporalTLSCert       string
	TemporalTLSKey        string
	TemporalTLSCA         string
	TemporalTLSServerName string
	TemporalProfile       string
	// TemporalGRPCCompression is the compression of the requests to Temporal: none or gzip.
	TemporalGRPCCompression string
	// Worker.
	MaxConcurrentActivities int
	WorkflowTaskPollers     int
	ReconcileEvery          time.Duration
	StuckAfter              time.Duration
	StopTimeout             time.Duration
	SkipSearchAttributes    bool
	// Server.
	Addr      string
	JWTSecret string
	TokenTTL  time.Duration
	// SignUpsPerHour and SignInsPerMinute are the rate limits of sign-up and sign-in per client
	// address; 0 turns the limit off.
	SignUpsPerHour, SignInsPerMinute int
	// AllowPrivateWebhooks lets webhook endpoints be http and on private addresses (dev: on).
	AllowPrivateWebhooks bool
	// WebhookPolicy is how deliveries are tried.
	WebhookPolicy webhooks.Policy
	// WebhookStallAfter is how late a delivery's attempt may be before the dispatcher checks that
	// its workflow runs, and starts a new run if not; WebhookRestartEvery how often it looks.
	WebhookStallAfter, WebhookRestartEvery time.Duration
	BcryptCost                             int
	MetricsAddr                            string
	WithWorker                             bool
	SagaVariant                            string
	// TrustedProxies is a comma-separated list of the reverse proxies' addresses or CIDRs.
	TrustedProxies string
	// MaxSubmits and SubmitQueueWait shed submissions beyond the bound with 503s (server.Config).
	MaxSubmits      int
	SubmitQueueWait time.Duration
	// PprofAddr serves Go's profiles (server, worker, dev).
	PprofAddr string
	// Audit.
	JSON       bool
	NoTemporal bool
}

const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/transferd?sslmode=disable"

// flagSet returns the flags of a subcommand bound to c, with defaults from the environment.
func (c *config) flagSet(name string, stderr io.Writer, extra func(fs *flag.FlagSet)) *flag.FlagSet {
	fs := flag.NewFlagSet("transferd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.DatabaseURL, "database-url", env("DATABASE_URL", defaultDatabaseURL), "PostgreSQL URL (TRANSFERD_DATABASE_URL, DATABASE_URL)")
	fs.IntVar(&c.DBMaxConns, "db-max-conns", envInt("DB_MAX_CONNS", 20), "connection pool size (TRANSFERD_DB_MAX_CONNS)")
	if extra != nil {
		extra(fs)
	}
	return fs
}

// temporalFlags adds the flags of the subcommands that talk to Temporal. Each names, in order of
// precedence under itself, where else its setting may come from; see temporalOptions.
func (c *config) temporalFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.TemporalAddress, "temporal-address", env("TEMPORAL_ADDRESS", ""), "Temporal frontend host:port (TRANSFERD_TEMPORAL_ADDRESS, TEMPORAL_ADDRESS, the profile's address; default "+temporalclient.DefaultAddress+")")
	fs.StringVar(&c.TemporalNamespace, "temporal-namespace", env("TEMPORAL_NAMESPACE", ""), "Temporal namespace (TRANSFERD_TEMPORAL_NAMESPACE, TEMPORAL_NAMESPACE, the profile's namespace; default "+temporalclient.DefaultNamespace+")")
	c.TemporalAPIKey = env("TEMPORAL_API_KEY", "")
	fs.Var(secret{&c.TemporalAPIKey}, "temporal-api-key", "API `key` sent as 'authorization: Bearer <key>' (Temporal Cloud); turns TLS on unless --temporal-tls=false; never printed (TRANSFERD_TEMPORAL_API_KEY, TEMPORAL_API_KEY, the profile's api_key)")
	c.TemporalTLS = envOptionalBool("TEMPORAL_TLS")
	fs.Var(&c.TemporalTLS, "temporal-tls", "connect with TLS; on by default with an API key or any --temporal-tls-* setting (TRANSFERD_TEMPORAL_TLS, TEMPORAL_TLS, the profile's tls)")
	fs.StringVar(&c.TemporalTLSCert, "temporal-tls-cert", env("TEMPORAL_TLS_CERT", ""), "client certificate file (PEM) for mTLS, read again whenever it changes (TRANSFERD_TEMPORAL_TLS_CERT, TEMPORAL_TLS_CLIENT_CERT_PATH, the profile's tls.client_cert_path)")
	fs.StringVar(&c.TemporalTLSKey, "temporal-tls-key", env("TEMPORAL_TLS_KEY", ""), "the client certificate's key file (PEM) (TRANSFERD_TEMPORAL_TLS_KEY, TEMPORAL_TLS_CLIENT_KEY_PATH, the profile's tls.client_key_path)")
	fs.StringVar(&c.TemporalTLSCA, "temporal-tls-ca", env("TEMPORAL_TLS_CA", ""), "CA certificates file (PEM) that the server's certificate must chain to, instead of the system's (TRANSFERD_TEMPORAL_TLS_CA, TEMPORAL_TLS_SERVER_CA_CERT_PATH, the profile's tls.server_ca_cert_path)")
	fs.StringVar(&c.TemporalTLSServerName, "temporal-tls-server-name", env("TEMPORAL_TLS_SERVER_NAME", ""), "name the server's certificate must carry when it is not the address's host (TRANSFERD_TEMPORAL_TLS_SERVER_NAME, TEMPORAL_TLS_SERVER_NAME, the profile's tls.server_name)")
	fs.StringVar(&c.TemporalProfile, "temporal-profile", env("TEMPORAL_PROFILE", ""), "profile of the Temporal CLI's temporal.toml (the file TEMPORAL_CONFIG_FILE names, by default $HOME/.config/temporalio/temporal.toml) under these settings; a profile named must exist (TRANSFERD_TEMPORAL_PROFILE, TEMPORAL_PROFILE; default default)")
	fs.StringVar(&c.TemporalGRPCCompression, "temporal-grpc-compression", env("TEMPORAL_GRPC_COMPRESSION", temporalclient.CompressionNone), "compression of the requests to Temporal: none, or gzip (the Temporal SDK's default, for a link where bytes cost more than CPU) (TRANSFERD_TEMPORAL_GRPC_COMPRESSION)")
	fs.StringVar(&c.TaskQueue, "task-queue", env("TASK_QUEUE", "transfers"), "Temporal task queue of transfers (TRANSFERD_TASK_QUEUE)")
}

// temporalOptions builds the Temporal client options of the temporal flags with the one builder,
// temporalclient.Options: each setting comes from its flag, else its TRANSFERD_* variable, else the
// SDK's TEMPORAL_* variable, else the temporal.toml profile, else the default. It then sets the
// address and namespace to the ones it settled on, so the printed settings and everything that
// names the namespace use them. The caller adds its logger and telemetry.
func (c *config) temporalOptions() (client.Options, error) {
	o, err := temporalclient.Options(temporalclient.Settings{
		Address:       c.TemporalAddress,
		Namespace:     c.TemporalNamespace,
		APIKey:        c.TemporalAPIKey,
		TLS:           c.TemporalTLS.ptr(),
		TLSCert:       c.TemporalTLSCert,
		TLSKey:        c.TemporalTLSKey,
		TLSCA:         c.TemporalTLSCA,
		TLSServerName: c.TemporalTLSServerName,
		Profile:       c.TemporalProfile,
		Compression:   c.TemporalGRPCCompression,
	})
	if err != nil {
		return client.Options{}, err
	}
	c.TemporalAddress, c.TemporalNamespace = o.HostPort, o.Namespace
	return o, nil
}

// env returns TRANSFERD_<name>, else <name> itself for DATABASE_URL, else def. The TEMPORAL_*
// variables are the Temporal SDK's to read (temporalOptions), so that a flag or a TRANSFERD_*
// variable wins over them.
func env(name, def string) string {
	if v, ok := os.LookupEnv("TRANSFERD_" + name); ok {
		return v
	}
	switch name {
	case "DATABASE_URL":
		if v, ok := os.LookupEnv(name); ok {
			return v
		}
	}
	return def
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(env(name, "")); err == nil {
		return n
	}
	return def
}

func envBool(name string, def bool) bool {
	if b, err := strconv.ParseBool(env(name, "")); err == nil {
		return b
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(env(name, "")); err == nil {
		return d
	}
	return def
}

// secret is a string flag whose value is never shown: -h and print show its String, which masks it.
type secret struct{ p *string }

// String is "xxxxx" for any value but the empty one.
func (s secret) String() string {
	if s.p == nil || *s.p == "" {
		return ""
	}
	return "xxxxx"
}

// Set sets the value.
func (s secret) Set(v string) error {
	*s.p = v
	return nil
}

// envOptionalBool is TRANSFERD_<name> as an optionalBool, unset when it is not a boolean.
func envOptionalBool(name string) optionalBool {
	var b optionalBool
	_ = b.Set(env(name, ""))
	return b
}

// optionalBool is a boolean flag that tells "not given" from false.
type optionalBool struct{ set, value bool }

// String is "" when not given.
func (b *optionalBool) String() string {
	if b == nil || !b.set {
		return ""
	}
	return strconv.FormatBool(b.value)
}

// Set takes what strconv.ParseBool does.
func (b *optionalBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	b.set, b.value = true, v
	return nil
}

// IsBoolFlag lets the flag be given without a value, as --temporal-tls.
func (b *optionalBool) IsBoolFlag() bool { return true }

// ptr is the value, or nil when not given.
func (b *optionalBool) ptr() *bool {
	if !b.set {
		return nil
	}
	v := b.value
	return &v
}

// print writes the settings on one line, with the database password and the secrets masked (the
// API key by its flag's own String).
func (c *config) print(w io.Writer, fs *flag.FlagSet) {
	var b strings.Builder
	fs.VisitAll(func(f *flag.Flag) {
		v := f.Value.String()
		switch f.Name {
		case "database-url":
			v = maskURL(v)
		case "jwt-secret", "password":
			if v != "" {
				v = "xxxxx"
			}
		}
		fmt.Fprintf(&b, " %s=%s", f.Name, v)
	})
	fmt.Fprintf(w, "config:%s\n", b.String())
}

// passwordKV matches the password of a key=value connection string.
var passwordKV = regexp.MustCompile(`(password=)('[^']*'|\S+)`)

// maskURL hides the password of a database URL or key=value connection string.
func maskURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return passwordKV.ReplaceAllString(raw, "${1}xxxxx")
	}
	if u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
