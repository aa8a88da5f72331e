//go:build !nodev

package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/transferd/transferd/internal/temporalclient"
	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/server"
	"github.com/transferd/transferd/transfer"
)

// bootstrapAdminEmail is the admin `transferd dev` creates when the database has none.
const bootstrapAdminEmail = "admin@transferd.local"

// runDev runs the whole stack in one process: a Temporal dev server with its Web UI (SQLite under
// --data-dir), the worker and the API, over PostgreSQL, whose database it creates and migrates if
// missing. A restart resumes the transfers that were in flight.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	var dataDir, uiAddr string
	fs := c.flagSet("dev", stderr, func(fs *flag.FlagSet) {
		c.authFlags(fs)
		c.limitFlags(fs, 10000)
		c.workerFlags(fs)
		fs.StringVar(&c.Addr, "addr", env("ADDR", "127.0.0.1:8080"), "address the API listens on (TRANSFERD_ADDR)")
		fs.StringVar(&c.TemporalAddress, "temporal-address", env("DEV_TEMPORAL_ADDRESS", "127.0.0.1:7233"), "address of the embedded Temporal server's frontend (TRANSFERD_DEV_TEMPORAL_ADDRESS)")
		fs.StringVar(&uiAddr, "ui-addr", env("UI_ADDR", "127.0.0.1:8233"), "address of the Temporal Web UI; empty for none (TRANSFERD_UI_ADDR)")
		c.sagaFlags(fs)
		c.pprofFlag(fs)
		fs.StringVar(&dataDir, "data-dir", env("DATA_DIR", ".data"), "where the Temporal server keeps its SQLite database and dev keeps its token secret (TRANSFERD_DATA_DIR)")
	})
	if err := fs.Parse(args); err != nil {
		return exitError(2)
	}
	c.TemporalNamespace = "default"
	c.TaskQueue = env("TASK_QUEUE", "transfers")
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	c.print(stderr, fs)

	// PostgreSQL first: without it nothing else is worth starting.
	created, err := ledger.CreateDatabase(ctx, c.DatabaseURL)
	if err != nil {
		fmt.Fprintf(stderr, "transferd dev: PostgreSQL is not reachable at %s (%v). Start it (for example: pg_ctlcluster 15 main start), or point --database-url or DATABASE_URL at a running server.\n",
			maskURL(c.DatabaseURL), rootCause(err))
		return exitError(1)
	}
	if created {
		log.Info("created the database")
	}
	store, err := ledger.Open(ctx, c.DatabaseURL, ledger.Options{MaxOpenConns: c.DBMaxConns})
	if err != nil {
		return err
	}
	defer store.Close()
	if applied, err := store.Migrate(ctx); err != nil {
		return err
	} else if len(applied) > 0 {
		log.Info("migrated the database", "applied", strings.Join(applied, ","))
	}
	if c.PprofAddr != "" {
		go servePprof(ctx, c.PprofAddr, log)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("dev: data dir: %w", err)
	}
	if c.JWTSecret == "" {
		if c.JWTSecret, err = devSecret(filepath.Join(dataDir, "jwt-secret")); err != nil {
			return err
		}
	}
	auth, err := c.newAuth(log)
	if err != nil {
		return err
	}

	temporalServer, err := startDevTemporal(ctx, c.TemporalAddress, uiAddr, dataDir, c.TemporalNamespace, log)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	defer temporalServer.Stop()
	tel, err := newTelemetry(ctx, "transferd-dev", log)
	if err != nil {
		return err
	}
	defer tel.close(context.WithoutCancel(ctx))
	opts, err := devTemporalOptions(temporalServer.HostPort(), c.TemporalNamespace, log)
	if err != nil {
		return err
	}
	tc, err := client.DialContext(ctx, tel.clientOptions(opts))
	if err != nil {
		return fmt.Errorf("dev: connect to Temporal: %w", err)
	}
	defer tc.Close()
	c.AllowPrivateWebhooks = true
	stopWorker, err := startWorker(ctx, &c, store, tc, tel.registry, log)
	if err != nil {
		return err
	}
	defer stopWorker()

	password, err := bootstrapAdmin(ctx, store, auth)
	if err != nil {
		return err
	}
	// The API and the worker share the client here, so workflows start eagerly.
	c.WithWorker = true
	cfg := apiConfig(store, tc, c.TaskQueue, auth, log, tel.registry, c.serviceOptions())
	c.limits(&cfg)
	cfg.AllowPrivateWebhooks = true
	srv := server.New(cfg).NewHTTPServer(c.Addr)
	srv.Handler = tel.wrapHTTP(srv.Handler)
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("dev: API: %w", err)
	}
	fmt.Fprintf(stdout, "transferd dev\n")
	fmt.Fprintf(stdout, "  API          http://%s   (OpenAPI at /openapi.json)\n", ln.Addr())
	fmt.Fprintf(stdout, "  Temporal     %s   namespace %s, task queue %s\n", temporalServer.HostPort(), c.TemporalNamespace, c.TaskQueue)
	if temporalServer.UIURL() != "" {
		fmt.Fprintf(stdout, "  Web UI       %s\n", temporalServer.UIURL())
	}
	fmt.Fprintf(stdout, "  PostgreSQL   %s\n", maskURL(c.DatabaseURL))
	fmt.Fprintf(stdout, "  Data         %s\n", dataDir)
	if password != "" {
		fmt.Fprintf(stdout, "  Admin        %s / %s   (created now and printed only this once)\n", bootstrapAdminEmail, password)
	}
	fmt.Fprintf(stdout, "ready: press Ctrl-C to stop\n")
	return serve(ctx, srv, ln, log)
}

// devTemporalOptions are the options of a client of the Temporal dev server at hostPort that this
// process or the bench started. They come from the one builder, isolated: the TEMPORAL_* variables
// and the temporal.toml profiles name the real cluster a shell may be set up for, and their address,
// TLS and API key must not reach the dev server.
func devTemporalOptions(hostPort, namespace string, log *slog.Logger) (client.Options, error) {
	o, err := temporalclient.Options(temporalclient.Settings{Address: hostPort, Namespace: namespace, Isolated: true})
	o.Logger = tlog.NewStructuredLogger(log)
	return o, err
}

// devBanner is what `transferd dev` prints on stdout before its ready line.
type devBanner struct {
	// API is the API's URL.
	API string
	// Password is the bootstrap admin's, printed only by the start that created it.
	Password string
}

// readDevBanner reads dev's stdout, as runDev prints it, up to the ready line, then keeps draining
// the rest in the background so the process never blocks on a full pipe. It fails if the output ends
// before the ready line, which means dev exited.
func readDevBanner(stdout io.Reader) (devBanner, error) {
	var b devBanner
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 2 && fields[0] == "API":
			b.API = fields[1]
		case len(fields) >= 4 && fields[0] == "Admin":
			b.Password = fields[3]
		case len(fields) > 0 && strings.HasPrefix(fields[0], "ready"):
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			return b, nil
		}
	}
	return devBanner{}, errors.New("transferd dev exited before it was ready")
}

// bootstrapAdmin creates the bootstrap admin with a random password when the database has no admin,
// and returns the password; it returns "" when an admin exists.
func bootstrapAdmin(ctx context.Context, store *ledger.Store, auth *server.Auth) (string, error) {
	has, err := store.HasAdmin(ctx)
	if err != nil || has {
		return "", err
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	password := base64.RawURLEncoding.EncodeToString(b[:])
	u, err := auth.NewUser(bootstrapAdminEmail, password, "Bootstrap admin", transfer.RoleAdmin)
	if err != nil {
		return "", err
	}
	if _, err := store.CreateUser(ctx, u); err != nil {
		return "", fmt.Errorf("dev: bootstrap admin: %w", err)
	}
	return password, nil
}

// devSecret reads the token secret kept in path, creating it on first use, so tokens survive a
// restart of `transferd dev`.
func devSecret(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		return strings.TrimSpace(string(b)), nil
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	secret := base64.RawURLEncoding.EncodeToString(b[:])
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("dev: token secret: %w", err)
	}
	return secret, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	var p int
	if _, err := fmt.Sscanf(port, "%d", &p); err != nil || p < 1 || p > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	return host, p, nil
}

// rootCause returns the innermost error, for one-line messages.
func rootCause(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}
