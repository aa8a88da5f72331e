package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"

	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/server"
	"github.com/transferd/transferd/service"
	"github.com/transferd/transferd/transfer"
	"github.com/transferd/transferd/worker"
)

// The wiring of the API: the ledger is its Ledger, the service its Transfers.
var (
	_ server.Ledger    = (*ledger.Store)(nil)
	_ server.Limits    = (*ledger.Store)(nil)
	_ server.Transfers = (*service.Service)(nil)
)

func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	fs := c.flagSet("server", stderr, func(fs *flag.FlagSet) {
		c.temporalFlags(fs)
		c.authFlags(fs)
		c.limitFlags(fs, 60)
		fs.StringVar(&c.Addr, "addr", env("ADDR", ":8080"), "address the API listens on (TRANSFERD_ADDR)")
		fs.StringVar(&c.TrustedProxies, "trusted-proxies", env("TRUSTED_PROXIES", ""), "comma-separated addresses or CIDRs of the reverse proxies whose X-Forwarded-For names the client, as the sign-in rate limit counts it; none when empty (TRANSFERD_TRUSTED_PROXIES)")
		fs.IntVar(&c.MaxSubmits, "max-submits", envInt("MAX_SUBMITS", 64), "submissions (transfers, deposits, withdrawals) in progress at once; beyond it a request waits --submit-queue-wait for a slot, then is answered 503 with Retry-After (TRANSFERD_MAX_SUBMITS)")
		fs.DurationVar(&c.SubmitQueueWait, "submit-queue-wait", envDuration("SUBMIT_QUEUE_WAIT", time.Second), "how long a submission waits for a slot before a 503 (TRANSFERD_SUBMIT_QUEUE_WAIT)")
		fs.BoolVar(&c.WithWorker, "with-worker", envBool("WITH_WORKER", false), "also run a worker in this process, which lets the API start workflows eagerly; the worker flags apply to it (TRANSFERD_WITH_WORKER)")
		c.workerFlags(fs)
		c.pprofFlag(fs)
		c.sagaFlags(fs)
	})
	if err := fs.Parse(args); err != nil {
		return exitError(2)
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	opts, err := c.temporalOptions()
	if err != nil {
		return err
	}
	c.print(stderr, fs)
	if c.PprofAddr != "" {
		go servePprof(ctx, c.PprofAddr, log)
	}
	proxies, err := server.ParseTrustedProxies(c.TrustedProxies)
	if err != nil {
		return err
	}
	auth, err := c.newAuth(log)
	if err != nil {
		return err
	}
	deps, err := connect(ctx, &c, opts, "transferd-server", log)
	if err != nil {
		return err
	}
	defer deps.close(ctx)
	// Starting a workflow names the search attributes, so they must exist before the first start;
	// the API registers them too rather than depend on a worker having started first.
	if !c.SkipSearchAttributes {
		if err := worker.EnsureSearchAttributes(ctx, deps.temporal, c.TemporalNamespace); err != nil {
			return err
		}
	}

	if c.WithWorker {
		stopWorker, err := startWorker(ctx, &c, deps.store, deps.temporal, deps.tel.registry, log)
		if err != nil {
			return err
		}
		defer stopWorker()
	}
	cfg := apiConfig(deps.store, deps.temporal, c.TaskQueue, auth, log, deps.tel.registry, c.serviceOptions())
	cfg.TrustedProxies = proxies
	cfg.AllowPrivateWebhooks = c.AllowPrivateWebhooks
	c.limits(&cfg)
	cfg.MaxSubmits, cfg.SubmitQueueWait = c.MaxSubmits, c.SubmitQueueWait
	srv := server.New(cfg).NewHTTPServer(c.Addr)
	srv.Handler = deps.tel.wrapHTTP(srv.Handler)
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return fmt.Errorf("server: listen: %w", err)
	}
	return serve(ctx, srv, ln, log)
}

// newAPI builds the HTTP API over the ledger and Temporal, with its readiness checks, serving the
// metrics of reg.
func newAPI(store *ledger.Store, tc client.Client, taskQueue string, auth *server.Auth, log *slog.Logger, reg *prometheus.Registry, opts service.Options) *server.Server {
	return server.New(apiConfig(store, tc, taskQueue, auth, log, reg, opts))
}

// apiConfig is the configuration of newAPI's API, for callers that set more of it.
func apiConfig(store *ledger.Store, tc client.Client, taskQueue string, auth *server.Auth, log *slog.Logger, reg *prometheus.Registry, opts service.Options) server.Config {
	return server.Config{
		Ledger:    store,
		Limits:    store,
		Transfers: service.New(store, tc, taskQueue, log).WithOptions(opts),
		Auth:      auth,
		Log:       log,
		Ready: map[string]server.Check{
			"postgres": store.Ping,
			"temporal": func(ctx context.Context) error {
				_, err := tc.CheckHealth(ctx, nil)
				return err
			},
		},
		Metrics:  reg,
		Gatherer: reg,
	}
}

// serve runs the HTTP server until ctx ends, then shuts it down gracefully: it stops accepting
// connections and waits for the requests in flight, however long a ?wait= holds them.
func serve(ctx context.Context, srv *http.Server, ln net.Listener, log *slog.Logger) error {
	log.Info("API listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	log.Info("API shutting down: draining requests in flight")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), srv.WriteTimeout+5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("server: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("server: %w", err)
	}
	log.Info("API stopped")
	return nil
}

// sagaFlags adds the flag that picks the saga variant of new transfers.
func (c *config) sagaFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.SagaVariant, "saga-variant", env("SAGA_VARIANT", "fast"), "fast (every step a local activity), or naive (regular activities, as Temporal's sample does; for benchmarks) (TRANSFERD_SAGA_VARIANT)")
}

// serviceOptions are the service's options from the configuration.
func (c *config) serviceOptions() service.Options {
	return service.Options{EagerStart: c.WithWorker, Naive: c.SagaVariant == "naive", Namespace: c.TemporalNamespace}
}

// authFlags adds the flags of the subcommands that issue tokens or hash passwords.
func (c *config) authFlags(fs *flag.FlagSet) {
	c.JWTSecret = env("JWT_SECRET", "")
	fs.Var(secret{&c.JWTSecret}, "jwt-secret", "`secret` that signs bearer tokens, at least 32 bytes; never printed (TRANSFERD_JWT_SECRET); a random one, lost at restart, when empty")
	fs.DurationVar(&c.TokenTTL, "token-ttl", envDuration("TOKEN_TTL", time.Hour), "lifetime of bearer tokens (TRANSFERD_TOKEN_TTL)")
	fs.IntVar(&c.BcryptCost, "bcrypt-cost", envInt("BCRYPT_COST", 0), "bcrypt cost of password hashes; 0 for the default 10 (TRANSFERD_BCRYPT_COST)")
}

// limitFlags adds the flags of the API's rate limits, with the defaults of the subcommand: transferd
// dev's are higher, for scripts that sign many users up from one address.
func (c *config) limitFlags(fs *flag.FlagSet, signUpsPerHour int) {
	fs.IntVar(&c.SignUpsPerHour, "sign-ups-per-hour", envInt("SIGN_UPS_PER_HOUR", signUpsPerHour), "sign-ups (POST /v1/users) allowed per client address per hour, shared by every API process on the database; 0 turns the limit off (TRANSFERD_SIGN_UPS_PER_HOUR)")
	fs.IntVar(&c.SignInsPerMinute, "sign-ins-per-minute", envInt("SIGN_INS_PER_MINUTE", 60), "sign-in attempts (POST /v1/auth/token) allowed per client address per minute; each email also gets at most a sixth of it per address and 100 per 10 minutes in all; 0 turns the limit off (TRANSFERD_SIGN_INS_PER_MINUTE)")
}

// limits applies the rate-limit flags to the API's configuration.
func (c *config) limits(cfg *server.Config) {
	if c.SignUpsPerHour <= 0 {
		cfg.SignUpLimit.Disabled = true
	} else {
		cfg.SignUpLimit.PerIP = server.Rate{Attempts: c.SignUpsPerHour, Window: time.Hour}
	}
	if c.SignInsPerMinute <= 0 {
		cfg.SignInLimit.Disabled = true
	} else {
		cfg.SignInLimit.PerIP = server.Rate{Attempts: c.SignInsPerMinute, Window: time.Minute}
		cfg.SignInLimit.PerEmailAddress = server.Rate{Attempts: max(c.SignInsPerMinute/6, 1), Window: time.Minute}
	}
}

// newAuth builds the token issuer; without a secret it makes a random one and says so.
func (c *config) newAuth(log *slog.Logger) (*server.Auth, error) {
	secret := []byte(c.JWTSecret)
	if len(secret) == 0 {
		var b [32]byte
		_, _ = rand.Read(b[:])
		secret = []byte(hex.EncodeToString(b[:]))
		log.Warn("TRANSFERD_JWT_SECRET is not set: using a random secret; tokens will not survive a restart or work across API processes")
	}
	return server.NewAuth(secret, c.TokenTTL, c.BcryptCost)
}

func runUsers(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprintln(stderr, "usage: transferd users create --email EMAIL --password PASSWORD [--name NAME] [--admin]")
		return exitError(2)
	}
	var c config
	var email, password, name string
	var admin bool
	fs := c.flagSet("users create", stderr, func(fs *flag.FlagSet) {
		fs.IntVar(&c.BcryptCost, "bcrypt-cost", envInt("BCRYPT_COST", 0), "bcrypt cost; 0 for the default 10 (TRANSFERD_BCRYPT_COST)")
		fs.StringVar(&email, "email", "", "the user's email")
		fs.StringVar(&password, "password", env("USER_PASSWORD", ""), "the user's password, at least 8 characters (TRANSFERD_USER_PASSWORD)")
		fs.StringVar(&name, "name", "", "the user's name")
		fs.BoolVar(&admin, "admin", false, "make the user an admin")
	})
	if err := fs.Parse(args[1:]); err != nil {
		return exitError(2)
	}
	// The hashing needs no token secret; any valid one will do here.
	auth, err := server.NewAuth([]byte("users-create-does-not-issue-tokens-here"), 0, c.BcryptCost)
	if err != nil {
		return err
	}
	role := transfer.RoleUser
	if admin {
		role = transfer.RoleAdmin
	}
	u, err := auth.NewUser(email, password, name, role)
	if err != nil {
		return fmt.Errorf("users create: %w", err)
	}
	store, err := openStore(ctx, &c)
	if err != nil {
		return err
	}
	defer store.Close()
	u, err = store.CreateUser(ctx, u)
	if err != nil {
		return fmt.Errorf("users create: %w", err)
	}
	fmt.Fprintf(stdout, "created %s %s (%s)\n", u.Role, u.Email, u.ID)
	return nil
}
