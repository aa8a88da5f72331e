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
)

// config is every setting of every subcommand. Each field is a flag, and its default can be set by an
// environment variable: TRANSFERD_<FLAG> with dashes as underscores, and the conventional
// DATABASE_URL, TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE too.
type config struct {
	DatabaseURL       string
	DBMaxConns        int
	TemporalAddress   string
	TemporalNamespace string
	TaskQueue         string
	// Worker.
	MaxConcurrentActivities int
	WorkflowTaskPollers     int
	ReconcileEvery          time.Duration
	StuckAfter              time.Duration
	StopTimeout             time.Duration
	SkipSearchAttributes    bool
	// Server.
	Addr        string
	JWTSecret   string
	TokenTTL    time.Duration
	BcryptCost  int
	MetricsAddr string
	WithWorker  bool
	SagaVariant string
	// TrustedProxies is a comma-separated list of the reverse proxies' addresses or CIDRs.
	TrustedProxies string
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

// temporalFlags adds the flags of the subcommands that talk to Temporal.
func (c *config) temporalFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.TemporalAddress, "temporal-address", env("TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend host:port (TRANSFERD_TEMPORAL_ADDRESS, TEMPORAL_ADDRESS)")
	fs.StringVar(&c.TemporalNamespace, "temporal-namespace", env("TEMPORAL_NAMESPACE", "default"), "Temporal namespace (TRANSFERD_TEMPORAL_NAMESPACE, TEMPORAL_NAMESPACE)")
	fs.StringVar(&c.TaskQueue, "task-queue", env("TASK_QUEUE", "transfers"), "Temporal task queue of transfers (TRANSFERD_TASK_QUEUE)")
}

// env returns TRANSFERD_<name>, else <name> itself for the conventional variables, else def.
func env(name, def string) string {
	if v, ok := os.LookupEnv("TRANSFERD_" + name); ok {
		return v
	}
	switch name {
	case "DATABASE_URL", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE":
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

// print writes the settings, one per line, with the database password masked.
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
