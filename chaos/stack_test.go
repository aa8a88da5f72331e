//go:build linux

package chaos_test

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // The database/sql driver "pgx", for the suite's own reads.

	"github.com/transferd/transferd/devtemporal"
	"github.com/transferd/transferd/internal/faultproxy"
	"github.com/transferd/transferd/internal/pgtest"
	"github.com/transferd/transferd/internal/tcluster"
	"github.com/transferd/transferd/internal/testbin"
)

// The suite's fixed settings.
const (
	taskQueue     = "chaos"
	jwtSecret     = "chaos-suite-secret-of-at-least-32-bytes"
	adminEmail    = "admin@chaos.test"
	adminPassword = "chaos-admin-password"
)

// stack is the system under test: Temporal (a dev server, or the production-shaped cluster of
// internal/tcluster reaching PostgreSQL through a fault proxy of its own), the API and the workers as
// separate transferd processes, the API and the workers each reaching PostgreSQL through a fault
// proxy of their own, and a direct connection for the suite's checks.
type stack struct {
	t         *testing.T
	dir       string
	directURL string
	db        *sql.DB
	// pg is the suite's own PostgreSQL cluster, or nil when it runs on a shared server.
	pg *cluster

	pgAPI, pgWorkers *faultproxy.Proxy

	// temporal is the dev server's process, nil on the cluster.
	temporal     *proc
	temporalAddr string
	namespace    string
	// tc is the Temporal cluster, nil on the dev server; pgTemporal is the fault proxy between its
	// services and PostgreSQL.
	tc         *tcluster.Cluster
	pgTemporal *faultproxy.Proxy

	api     *proc
	apiURL  string
	workers []*proc

	// world is what the load runs on, and admin the API client of the admin's own requests (the
	// freezes), once the setup has run.
	world *world
	admin *api
	// evidence is what the faults hit.
	evidence evidence
	// bin is the transferd binary of the API, the workers and the setup's commands: this
	// checkout's when empty, a previous release's in the upgrade test.
	bin string
}

// startStack starts everything and returns once the API is ready. With a cluster, the database is
// on it; without, on the shared server of pgtest.
func startStack(t *testing.T, workers int, pg *cluster) *stack {
	t.Helper()
	return startStackOf(t, workers, pg, "")
}

// startStackOf is startStack with the API, the workers, the migration and the first admin run by
// the transferd binary bin (this checkout's when empty); Temporal is always this checkout's.
func startStackOf(t *testing.T, workers int, pg *cluster, bin string) *stack {
	t.Helper()
	return startStackOn(t, devServer, workers, pg, bin)
}

// temporalKind is the Temporal a stack runs on.
type temporalKind string

const (
	// devServer is `transferd temporal`, one process on SQLite.
	devServer temporalKind = "dev"
	// clusterPG is internal/tcluster: the official temporal-server as four processes on PostgreSQL.
	clusterPG temporalKind = "cluster"
)

// clusterNamespace is the namespace of the stacks on the cluster: not "default", so that a process
// or a check that would not be told the namespace finds nothing there.
const clusterNamespace = "chaos"

// startStackOn is startStackOf on the Temporal of kind. The cluster's databases are on the same
// PostgreSQL server as the ledger's (pg's, or the shared one), its services reaching it through a
// fault proxy of their own.
func startStackOn(t *testing.T, kind temporalKind, workers int, pg *cluster, bin string) *stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := &stack{t: t, dir: t.TempDir(), pg: pg, bin: bin, namespace: "default"}
	if pg != nil {
		s.directURL = pg.newDatabase(t)
	} else {
		s.directURL = pgtest.NewDatabase(t)
	}
	var err error
	if s.db, err = sql.Open("pgx", s.directURL); err != nil {
		t.Fatalf("open database: %v", err)
	}
	t.Cleanup(func() { s.db.Close() })
	// A connection kept idle would be broken by a PostgreSQL restart; the suite's reads are few.
	s.db.SetMaxIdleConns(0)
	dsn, err := url.Parse(s.directURL)
	if err != nil {
		t.Fatalf("database URL: %v", err)
	}
	for _, p := range []**faultproxy.Proxy{&s.pgAPI, &s.pgWorkers} {
		if *p, err = faultproxy.New(dsn.Host); err != nil {
			t.Fatalf("fault proxy: %v", err)
		}
		t.Cleanup(func() { (*p).Close() })
	}

	s.run(ctx, "migrate", "--database-url", s.directURL)
	s.run(ctx, "users", "create", "--database-url", s.directURL, "--email", adminEmail, "--password", adminPassword, "--admin", "--bcrypt-cost", "4")

	if kind == clusterPG {
		s.startCluster()
	} else {
		port, err := devtemporal.FreeFrontendPort("127.0.0.1")
		if err != nil {
			t.Fatalf("temporal port: %v", err)
		}
		s.temporalAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.temporal = newProc(t, s.dir, "temporal", nil, "temporal", "--addr", s.temporalAddr, "--ui-addr", "", "--data-dir", s.dir+"/temporal")
		s.temporal.ready = func(ctx context.Context) error { return s.temporal.waitLog(ctx, "ready:") }
		s.temporal.launch(ctx)
	}

	// Ten connections a process keep the suite well under a shared server's default limit of 100.
	// Each process's environment is its own slice: appending to a shared one with room to spare
	// would let a later process's settings overwrite an earlier one's (slices.Concat copies).
	common := slices.Concat([]string{"TRANSFERD_TEMPORAL_ADDRESS=" + s.temporalAddr, "TRANSFERD_TASK_QUEUE=" + taskQueue, "TRANSFERD_DB_MAX_CONNS=10"}, webhookEnv)
	if kind == clusterPG {
		// Only here: a previous release's binaries (the upgrade test, on the dev server) may not
		// know the variable, and the dev server's namespace is their default.
		common = slices.Concat(common, []string{"TRANSFERD_TEMPORAL_NAMESPACE=" + s.namespace})
	}
	var taken []int
	if _, p, err := net.SplitHostPort(s.temporalAddr); err == nil && kind != clusterPG {
		port, _ := strconv.Atoi(p)
		taken = devtemporal.Ports(port)
	}
	apiAddr := freeAddr(t, taken...)
	s.apiURL = "http://" + apiAddr
	s.api = newProc(t, s.dir, "api", slices.Concat(common, []string{"TRANSFERD_DATABASE_URL=" + viaProxy(dsn, s.pgAPI),
		"TRANSFERD_JWT_SECRET=" + jwtSecret, "TRANSFERD_BCRYPT_COST=4", "TRANSFERD_SIGN_UPS_PER_HOUR=0"}), "server", "--addr", apiAddr)
	s.api.bin = bin
	s.api.ready = func(ctx context.Context) error { return waitHTTP(ctx, s.apiURL+"/readyz", s.api) }
	for i := range workers {
		// The reconciler starts the workflows of transfers the API recorded but died before starting.
		w := newProc(t, s.dir, "worker-"+strconv.Itoa(i+1), slices.Concat(common, []string{"TRANSFERD_DATABASE_URL=" + viaProxy(dsn, s.pgWorkers),
			"TRANSFERD_RECONCILE_EVERY=5s"}), "worker", "--metrics-addr", "")
		w.bin = bin
		// A worker is ready once it polls its task queue, which it does only once it has reached
		// PostgreSQL: the next fault then finds it working (a stall that begins while the workers
		// are still connecting would hold up no step).
		w.ready = func(ctx context.Context) error { return w.waitLog(ctx, `"msg":"worker started"`) }
		w.launch(ctx)
		s.workers = append(s.workers, w)
	}
	s.api.launch(ctx)
	return s
}

// startCluster starts the Temporal cluster on the ledger's PostgreSQL server, behind a fault proxy
// of its own; the schemas are created and dropped directly (AdminURL).
func (s *stack) startCluster() {
	t := s.t
	t.Helper()
	adminURL := os.Getenv("TRANSFERD_TEST_DATABASE_URL")
	if s.pg != nil {
		adminURL = s.pg.url("postgres")
	} else if adminURL == "" {
		adminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	admin, err := url.Parse(adminURL)
	if err != nil {
		t.Fatalf("admin URL: %v", err)
	}
	host := admin.Host
	if admin.Port() == "" {
		host = net.JoinHostPort(admin.Hostname(), "5432")
	}
	// Registered before the cluster's Close, so it closes after it.
	if s.pgTemporal, err = faultproxy.New(host); err != nil {
		t.Fatalf("fault proxy: %v", err)
	}
	t.Cleanup(func() { s.pgTemporal.Close() })
	s.tc = tcluster.ForTest(t, tcluster.Options{AdminURL: adminURL, PostgresAddr: s.pgTemporal.Addr(),
		Namespace: clusterNamespace, Dir: filepath.Join(s.dir, "tcluster"),
		// The operator lists workflows every 1.5 s and reads the history of every one it acted on,
		// and the audit lists them all: past the default 10 visibility requests a second.
		DynamicConfig: map[string]any{"frontend.namespaceRPS.visibility": 100}})
	s.temporalAddr, s.namespace = s.tc.HostPort(), s.tc.Namespace()
}

// run runs a transferd command to its end, failing the test if it fails.
func (s *stack) run(ctx context.Context, args ...string) {
	s.t.Helper()
	bin := s.bin
	if bin == "" {
		bin = testbin.Transferd(s.t)
	}
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("transferd %s: %v\n%s", args[0], err, out)
	}
}

// restartTimeout bounds how long a process may take to be ready again after a start.
const restartTimeout = time.Minute

// allRunning fails the test for each process that exited by itself.
func (s *stack) allRunning() {
	s.t.Helper()
	procs := append([]*proc{s.api}, s.workers...)
	if s.temporal != nil {
		procs = append(procs, s.temporal)
	}
	for _, p := range procs {
		if !p.running() || p.crashes > 0 {
			s.t.Errorf("%s exited by itself (%d times before a kill found it gone)", p.name, p.crashes)
		}
	}
	if s.tc != nil {
		for _, svc := range tcluster.Services {
			if !s.tc.Running(svc) {
				s.t.Errorf("Temporal's %s exited by itself", svc)
			}
		}
	}
}

// viaProxy is the database URL with its host replaced by the proxy's address.
func viaProxy(u *url.URL, p *faultproxy.Proxy) string {
	v := *u
	v.Host = p.Addr()
	return v.String()
}

// freeAddr returns a 127.0.0.1 address whose port is free now and none of taken. The port comes from
// below the ephemeral range (devtemporal.FreeAddrOutside), so that no outgoing connection takes it
// before a process the faults restarted binds it again.
func freeAddr(t *testing.T, taken ...int) string {
	t.Helper()
	addr, err := devtemporal.FreeAddrOutside(taken)
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	return addr
}

// waitHTTP waits until url, served by p, answers 200; it gives up at once if p exits.
func waitHTTP(ctx context.Context, url string, p *proc) error {
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		if !p.running() {
			return fmt.Errorf("%s exited before %s answered", p.name, url)
		}
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer 200: %w", url, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// cluster is a PostgreSQL cluster of the suite's own, which it may restart without disturbing the
// tests that share the machine's server.
type cluster struct {
	version, name string
	port          int
}

// ownCluster creates and starts a cluster with Debian's pg_createcluster, as root may (CI does), and
// drops it when the test ends. It returns nil and why, and the suite then restarts no PostgreSQL,
// when the suite is not root, the tools are missing, or they fail.
func ownCluster(t *testing.T) (*cluster, string) {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	switch _, err := exec.LookPath("pg_createcluster"); {
	case err != nil:
		return nil, "pg_createcluster is not installed (Debian's postgresql-common)"
	case os.Geteuid() != 0:
		return nil, "the suite is not running as root"
	case len(bins) == 0:
		return nil, "no /usr/lib/postgresql/*/bin/postgres"
	}
	slices.Sort(bins)
	version := filepath.Base(filepath.Dir(filepath.Dir(bins[len(bins)-1])))
	dropOrphanClusters(t, version)
	_, port, err := net.SplitHostPort(freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{version: version, name: fmt.Sprintf("%s%d_%d", clusterPrefix, os.Getpid(), time.Now().UnixNano()%1e6)}
	c.port, _ = strconv.Atoi(port)
	// The API and every worker hold a pool of 20, and killed processes' connections linger a moment.
	if out, err := exec.Command("pg_createcluster", version, c.name, "-p", port, "-o", "max_connections=300",
		"--", "--auth=trust").CombinedOutput(); err != nil {
		return nil, fmt.Sprintf("pg_createcluster: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("pg_dropcluster", "--stop", version, c.name).CombinedOutput(); err != nil {
			t.Errorf("pg_dropcluster: %v\n%s", err, out)
		}
	})
	if err := c.ctl("start"); err != nil {
		return nil, err.Error()
	}
	return c, ""
}

// clusterPrefix starts the name of every cluster the suite creates, which goes on with the pid of
// the test process that owns it.
const clusterPrefix = "transferd_chaos_"

// dropOrphanClusters drops the suite's clusters whose test process is gone: one killed before its
// cleanup ran leaves its cluster behind.
func dropOrphanClusters(t *testing.T, version string) {
	out, err := exec.Command("pg_lsclusters", "--no-header").Output()
	if err != nil {
		return
	}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != version || !strings.HasPrefix(f[1], clusterPrefix) {
			continue
		}
		pid, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(f[1], clusterPrefix), "_", 2)[0])
		if err != nil || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		if out, err := exec.Command("pg_dropcluster", "--stop", version, f[1]).CombinedOutput(); err != nil {
			t.Logf("drop orphan cluster %s: %v\n%s", f[1], err, out)
		} else {
			t.Logf("dropped orphan cluster %s", f[1])
		}
	}
}

// ctl runs pg_ctlcluster with the action and its options.
func (c *cluster) ctl(action string, opts ...string) error {
	args := append([]string{"--skip-systemctl-redirect", c.version, c.name, action}, opts...)
	if out, err := exec.Command("pg_ctlcluster", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctlcluster %s: %v\n%s", action, err, out)
	}
	return nil
}

// restart stops the cluster in immediate mode, as a crash would (it recovers from its WAL), and
// starts it again.
func (c *cluster) restart() error { return c.ctl("restart", "-m", "immediate") }

// url is the URL of the cluster's database db.
func (c *cluster) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// newDatabase creates a database on the cluster and returns its URL.
func (c *cluster) newDatabase(t *testing.T) string {
	t.Helper()
	admin, err := sql.Open("pgx", c.url("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec("CREATE DATABASE transferd_chaos"); err != nil {
		t.Fatalf("create database: %v", err)
	}
	return c.url("transferd_chaos")
}
