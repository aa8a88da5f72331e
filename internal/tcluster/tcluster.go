// Package tcluster runs a production-shaped Temporal cluster on this machine, for the tests, the chaos
// suite, the bench and `make cluster`: the official temporal-server, built from the module version
// in go.mod (Build), as four processes (frontend, history, matching and worker) that find each other
// through ringpop membership and talk over gRPC on 127.0.0.1, on two PostgreSQL databases of the
// cluster's own (the default store and SQL visibility) whose schemas Temporal's temporal-sql-tool
// creates and upgrades. Each process is configured as docker-compose.yml configures the temporal
// service: temporal-server's embedded config template, filled from the same environment variables.
//
// Start also registers a namespace with a retention and transferd's search attributes. The cluster
// can SIGKILL, stop and start each service, and tells where its persistence is, so a fault proxy can
// sit between Temporal and PostgreSQL.
package tcluster

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/transferd/transferd/worker"
)

// Service is one of Temporal's services; the cluster runs each as a process of its own.
type Service string

// The services of a cluster.
const (
	Frontend Service = "frontend"
	History  Service = "history"
	Matching Service = "matching"
	Worker   Service = "worker"
)

// Services are every service of a cluster.
var Services = []Service{Frontend, History, Matching, Worker}

// Options configures a cluster. Zero values take the defaults.
type Options struct {
	// AdminURL is the PostgreSQL server on which the cluster's databases are created, upgraded and
	// dropped, as a URL whose user may create databases; default TRANSFERD_TEST_DATABASE_URL, else
	// postgres://postgres@127.0.0.1:5432/postgres.
	AdminURL string
	// PostgresAddr is the host:port the Temporal services connect to; default AdminURL's. Put a fault
	// proxy in front of PostgreSQL here.
	PostgresAddr string
	// Database and VisibilityDatabase name the default store's and visibility's databases. Left
	// empty, each gets a new random name and Close drops it; a name given is created if missing,
	// upgraded, and kept.
	Database, VisibilityDatabase string
	// Namespace is registered at start; default "default".
	Namespace string
	// Retention is the namespace's retention; default worker.DefaultRetention.
	Retention time.Duration
	// HistoryShards is NUM_HISTORY_SHARDS; default 4. It is fixed when the databases are first used:
	// a cluster started later on the same databases must give the same number.
	HistoryShards int
	// DefaultPorts runs the services on the config template's default ports, those of
	// docker-compose.yml (gRPC: frontend 7233, history 7234, matching 7235, worker 7239; membership
	// 6933, 6934, 6935, 6939; the frontend's HTTP API 7243), instead of free ones. A cluster started
	// again on kept databases needs the ports of its last run: the membership table still lists that
	// run's addresses, and a service that finds only dead ones there waits out ringpop's 30 s join.
	DefaultPorts bool
	// MaxConns is each service's pool size for the default store (SQL_MAX_CONNS, idle ones kept);
	// visibility gets half of it (SQL_VIS_MAX_CONNS), at least one; default 4. A service holds up
	// to both pools: the default's 4 and 2 make at most 24 connections for the cluster.
	MaxConns int
	// Dir receives each service's log (<service>.log) and the dynamic config file; default a new
	// temporary directory that Close removes.
	Dir string
	// DynamicConfig adds dynamic config values, each for every namespace and task queue, to the ones
	// of dynamicconfig.yaml (which they may not repeat).
	DynamicConfig map[string]any
	// Pprof serves Go's pprof profiles from each service on a port of its own (the template's
	// PPROF_PORT), at PprofAddr.
	Pprof bool
}

// Persistence is where the cluster keeps its state: what temporal-server's services are given.
type Persistence struct {
	// Plugin is Temporal's SQL plugin, postgres12.
	Plugin string
	// Addr is the host:port the services connect to (Options.PostgresAddr).
	Addr string
	// User and Password are the services' PostgreSQL credentials.
	User, Password string
	// Database and VisibilityDatabase are the two databases.
	Database, VisibilityDatabase string
}

// Cluster is a running cluster.
type Cluster struct {
	opts      Options
	bin       Binaries
	dir       string
	tempDir   bool
	drop      []string // databases Close drops
	admin     *url.URL
	pers      Persistence
	ports     map[string]int
	pprof     map[Service]int // each service's PPROF_PORT, with Options.Pprof
	env       []string
	namespace string

	mu    sync.Mutex
	procs map[Service]*process
}

// process is one running temporal-server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit, once done is closed
}

//go:embed dynamicconfig.yaml
var dynamicConfig []byte

// Start builds the executables if needed (Build), creates the databases and their schemas, starts
// every service, waits until each answers and the membership has them all, and registers the
// namespace with transferd's search attributes. It returns once a workflow could start. On error it
// has stopped what it started; the error carries the tail of the services' logs.
func Start(ctx context.Context, o Options) (_ *Cluster, err error) {
	c, err := newCluster(o)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			tail := c.LogTail(40)
			c.Close()
			err = fmt.Errorf("%w\n%s", err, tail)
		}
	}()
	if c.bin, err = Build(ctx); err != nil {
		return nil, err
	}
	if err := c.setupSchemas(ctx); err != nil {
		return nil, err
	}
	for _, svc := range Services {
		if err := c.launch(svc); err != nil {
			return nil, err
		}
	}
	for _, svc := range Services {
		err := c.waitReady(ctx, svc)
		if err != nil && c.lostMetadataRace(svc) {
			// Started again, it finds the cluster's metadata written.
			if err = c.launch(svc); err == nil {
				err = c.waitReady(ctx, svc)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	if err := c.AddNamespace(ctx, c.namespace); err != nil {
		return nil, err
	}
	return c, nil
}

// lostMetadataRace reports whether svc exited at start because another service wrote the cluster's
// metadata first. The services start together, and on new databases each tries to write it; one
// that loses exits, its SaveClusterMetadata refused ("encountered version mismatch", or a
// duplicate key), as the worker and the history service did in two of seven starts of the chaos
// suite on two busy cores. Compose's single process writes it once for all.
func (c *Cluster) lostMetadataRace(svc Service) bool {
	if c.Running(svc) {
		return false
	}
	log, err := os.ReadFile(c.LogFile(svc))
	// The refusal shows either as the failed SaveClusterMetadata call, or only as the initializer's
	// own error (the history service's, in a start of make test on a loaded machine).
	return err == nil && (bytes.Contains(log, []byte("SaveClusterMetadata")) ||
		bytes.Contains(log, []byte("failed to initialize current cluster metadata")))
}

// newCluster settles the options, the ports, the directory and the environment of a cluster.
func newCluster(o Options) (*Cluster, error) {
	if o.AdminURL == "" {
		o.AdminURL = os.Getenv("TRANSFERD_TEST_DATABASE_URL")
	}
	if o.AdminURL == "" {
		o.AdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	admin, err := url.Parse(o.AdminURL)
	if err != nil || admin.Host == "" {
		return nil, fmt.Errorf("tcluster: admin URL %q: want postgres://user@host:port/db", o.AdminURL)
	}
	if admin.Port() == "" {
		admin.Host = net.JoinHostPort(admin.Hostname(), "5432")
	}
	if o.PostgresAddr == "" {
		o.PostgresAddr = admin.Host
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.Retention <= 0 {
		o.Retention = worker.DefaultRetention
	}
	if o.HistoryShards <= 0 {
		o.HistoryShards = 4
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 4
	}
	c := &Cluster{opts: o, admin: admin, namespace: o.Namespace, procs: map[Service]*process{}}
	suffix := randomHex(4)
	c.pers = Persistence{Plugin: "postgres12", Addr: o.PostgresAddr, User: admin.User.Username(),
		Database: o.Database, VisibilityDatabase: o.VisibilityDatabase}
	c.pers.Password, _ = admin.User.Password()
	if c.pers.Database == "" {
		c.pers.Database = "temporal_" + suffix
		c.drop = append(c.drop, c.pers.Database)
	}
	if c.pers.VisibilityDatabase == "" {
		c.pers.VisibilityDatabase = "temporal_visibility_" + suffix
		c.drop = append(c.drop, c.pers.VisibilityDatabase)
	}
	if o.DefaultPorts {
		c.ports = defaultPorts
		for _, name := range portVars {
			if !portFree(c.ports[name]) {
				return nil, fmt.Errorf("tcluster: 127.0.0.1:%d (%s) is in use (is another Temporal running?)", c.ports[name], name)
			}
		}
	} else if c.ports, err = pickPorts(); err != nil {
		return nil, err
	}
	if o.Pprof {
		c.pprof = map[Service]int{}
		for _, svc := range Services {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil, fmt.Errorf("tcluster: pprof port: %w", err)
			}
			c.pprof[svc] = l.Addr().(*net.TCPAddr).Port
			l.Close()
		}
	}
	c.dir = o.Dir
	if c.dir == "" {
		if c.dir, err = os.MkdirTemp("", "tcluster-"); err != nil {
			return nil, fmt.Errorf("tcluster: %w", err)
		}
		c.tempDir = true
	} else if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("tcluster: %w", err)
	}
	// The services run in the directory, and the dynamic config's path must mean the same to them.
	if c.dir, err = filepath.Abs(c.dir); err != nil {
		return nil, fmt.Errorf("tcluster: %w", err)
	}
	dc, err := renderDynamicConfig(o.DynamicConfig)
	if err != nil {
		return nil, err
	}
	dcPath := filepath.Join(c.dir, "dynamicconfig.yaml")
	if err := os.WriteFile(dcPath, dc, 0o644); err != nil {
		return nil, fmt.Errorf("tcluster: %w", err)
	}
	c.env = c.serverEnv(dcPath)
	return c, nil
}

// serverEnv is the environment of every temporal-server process: the variables that
// temporal-server's embedded config template reads, as docker-compose.yml sets them for its
// temporal service, plus what separate processes on one host need: a port of their own for each
// service and a broadcast address.
func (c *Cluster) serverEnv(dynamicConfigPath string) []string {
	host, port, _ := net.SplitHostPort(c.pers.Addr)
	vars := map[string]string{
		"DB":                       c.pers.Plugin,
		"DB_PORT":                  port,
		"POSTGRES_SEEDS":           host,
		"POSTGRES_USER":            c.pers.User,
		"POSTGRES_PWD":             c.pers.Password,
		"DBNAME":                   c.pers.Database,
		"VISIBILITY_DBNAME":        c.pers.VisibilityDatabase,
		"NUM_HISTORY_SHARDS":       strconv.Itoa(c.opts.HistoryShards),
		"SQL_MAX_CONNS":            strconv.Itoa(c.opts.MaxConns),
		"SQL_MAX_IDLE_CONNS":       strconv.Itoa(c.opts.MaxConns),
		"SQL_VIS_MAX_CONNS":        strconv.Itoa(max(1, c.opts.MaxConns/2)),
		"SQL_VIS_MAX_IDLE_CONNS":   strconv.Itoa(max(1, c.opts.MaxConns/2)),
		"BIND_ON_IP":               "127.0.0.1",
		"DYNAMIC_CONFIG_FILE_PATH": dynamicConfigPath,
		"TEMPORAL_ALLOW_NO_AUTH":   "true",
		// Per process: compose's single container takes the template's default ports and its
		// entrypoint derives the broadcast address.
		"TEMPORAL_BROADCAST_ADDRESS": "127.0.0.1",
	}
	for name, port := range c.ports {
		vars[name] = strconv.Itoa(port)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir()}
	for _, k := range sortedKeys(vars) {
		env = append(env, k+"="+vars[k])
	}
	return env
}

// portVars are the template's port variables, one per service's gRPC and membership port and the
// frontend's HTTP API.
var portVars = []string{
	"FRONTEND_GRPC_PORT", "FRONTEND_HTTP_PORT", "FRONTEND_MEMBERSHIP_PORT",
	"HISTORY_GRPC_PORT", "HISTORY_MEMBERSHIP_PORT",
	"MATCHING_GRPC_PORT", "MATCHING_MEMBERSHIP_PORT",
	"WORKER_GRPC_PORT", "WORKER_MEMBERSHIP_PORT",
}

// perProcessVars are the variables the cluster sets that docker-compose.yml leaves to the image: the
// ports (one container takes the defaults) and the broadcast address (its entrypoint derives it).
var perProcessVars = append([]string{"TEMPORAL_BROADCAST_ADDRESS"}, portVars...)

// defaultPorts are the config template's defaults of portVars.
var defaultPorts = map[string]int{
	"FRONTEND_GRPC_PORT": 7233, "FRONTEND_HTTP_PORT": 7243, "FRONTEND_MEMBERSHIP_PORT": 6933,
	"HISTORY_GRPC_PORT": 7234, "HISTORY_MEMBERSHIP_PORT": 6934,
	"MATCHING_GRPC_PORT": 7235, "MATCHING_MEMBERSHIP_PORT": 6935,
	"WORKER_GRPC_PORT": 7239, "WORKER_MEMBERSHIP_PORT": 6939,
}

// pickPorts picks a free port on 127.0.0.1 for each of portVars. They come from below Linux's
// ephemeral range (32768 and up), so that no outgoing connection takes one between the pick and the
// service's listen.
func pickPorts() (map[string]int, error) {
	ports := map[string]int{}
	used := map[int]bool{}
	for _, name := range portVars {
		for tries := 0; ; tries++ {
			if tries == 1000 {
				return nil, errors.New("tcluster: found no free port")
			}
			n, _ := rand.Int(rand.Reader, big.NewInt(12000))
			p := 20000 + int(n.Int64())
			if !used[p] && portFree(p) {
				ports[name], used[p] = p, true
				break
			}
		}
	}
	return ports, nil
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// renderDynamicConfig appends extra, as global values, to dynamicconfig.yaml.
func renderDynamicConfig(extra map[string]any) ([]byte, error) {
	var b bytes.Buffer
	b.Write(dynamicConfig)
	for _, k := range sortedKeys(extra) {
		if bytes.Contains(dynamicConfig, []byte("\n"+k+":")) {
			return nil, fmt.Errorf("tcluster: dynamic config %s is already in dynamicconfig.yaml", k)
		}
		v := extra[k]
		if s, ok := v.(string); ok {
			v = strconv.Quote(s)
		}
		fmt.Fprintf(&b, "%s:\n  - value: %v\n", k, v)
	}
	return b.Bytes(), nil
}

// setupSchemas creates the two databases and brings their schemas to the module's latest version
// with temporal-sql-tool, as docker-compose.yml's schema job does: create, setup-schema -v 0.0, then
// update-schema over the versioned directories. Every step is idempotent.
func (c *Cluster) setupSchemas(ctx context.Context) error {
	schemaRoot := filepath.Join(c.bin.ModuleDir, "schema", "postgresql", "v12")
	for db, dir := range map[string]string{
		c.pers.Database:           filepath.Join(schemaRoot, "temporal", "versioned"),
		c.pers.VisibilityDatabase: filepath.Join(schemaRoot, "visibility", "versioned"),
	} {
		for _, args := range [][]string{
			{"create-database"},
			{"setup-schema", "-v", "0.0"},
			{"update-schema", "-d", dir},
		} {
			if err := c.sqlTool(ctx, db, args...); err != nil {
				return err
			}
		}
	}
	return nil
}

// sqlTool runs temporal-sql-tool on database db of the admin server.
func (c *Cluster) sqlTool(ctx context.Context, db string, args ...string) error {
	pw, _ := c.admin.User.Password()
	all := append([]string{"--ep", c.admin.Hostname(), "-p", c.admin.Port(), "-u", c.admin.User.Username(),
		"--pw", pw, "--pl", c.pers.Plugin, "--db", db}, args...)
	cmd := exec.CommandContext(ctx, c.bin.SQLTool, all...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("tcluster: temporal-sql-tool --db %s %s: %w\n%s", db, strings.Join(args, " "), err, out)
	}
	return nil
}

// launch starts svc's process, its output appended to its log file.
func (c *Cluster) launch(svc Service) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.procs[svc]; p != nil && !p.exited() {
		return fmt.Errorf("tcluster: %s is running", svc)
	}
	logFile, err := os.OpenFile(c.LogFile(svc), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("tcluster: %w", err)
	}
	fmt.Fprintf(logFile, "=== tcluster: starting %s at %s\n", svc, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(c.bin.Server, "start", "--service", string(svc))
	cmd.Env = c.env
	if port, ok := c.pprof[svc]; ok {
		cmd.Env = append(slices.Clone(c.env), "PPROF_PORT="+strconv.Itoa(port))
	}
	cmd.Dir = c.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("tcluster: start %s: %w", svc, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		fmt.Fprintf(logFile, "=== tcluster: %s exited at %s: %v\n", svc, time.Now().Format(time.RFC3339Nano), p.err)
		logFile.Close()
		close(p.done)
	}()
	c.procs[svc] = p
	return nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill SIGKILLs svc's process and waits until it has exited. Killing a service that is not running
// does nothing.
func (c *Cluster) Kill(svc Service) {
	c.signal(svc, syscall.SIGKILL, 0)
}

// Stop stops svc's process gracefully (SIGTERM), and SIGKILLs it after 20 seconds.
func (c *Cluster) Stop(svc Service) {
	c.signal(svc, syscall.SIGTERM, 20*time.Second)
}

func (c *Cluster) signal(svc Service, sig syscall.Signal, grace time.Duration) {
	c.mu.Lock()
	p := c.procs[svc]
	c.mu.Unlock()
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	if grace > 0 {
		select {
		case <-p.done:
			return
		case <-time.After(grace):
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	<-p.done
}

// StartService starts svc after a Kill or Stop, on the same ports, and waits until it is ready.
func (c *Cluster) StartService(ctx context.Context, svc Service) error {
	if err := c.launch(svc); err != nil {
		return err
	}
	return c.waitReady(ctx, svc)
}

// Restart stops svc gracefully and starts it again.
func (c *Cluster) Restart(ctx context.Context, svc Service) error {
	c.Stop(svc)
	return c.StartService(ctx, svc)
}

// Running reports whether svc's process is running.
func (c *Cluster) Running(svc Service) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.procs[svc]
	return p != nil && !p.exited()
}

// HostPort is the frontend's gRPC address, which clients dial.
func (c *Cluster) HostPort() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.ports["FRONTEND_GRPC_PORT"]))
}

// Address is svc's gRPC address.
func (c *Cluster) Address(svc Service) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.ports[strings.ToUpper(string(svc))+"_GRPC_PORT"]))
}

// Pid is the process id of svc's process, or 0 when it is not running.
func (c *Cluster) Pid(svc Service) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.procs[svc]; p != nil && !p.exited() {
		return p.cmd.Process.Pid
	}
	return 0
}

// PprofAddr is the address of svc's pprof handlers (/debug/pprof/), or "" unless Options.Pprof.
func (c *Cluster) PprofAddr(svc Service) string {
	port, ok := c.pprof[svc]
	if !ok {
		return ""
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// Namespace is the namespace Start registered.
func (c *Cluster) Namespace() string { return c.namespace }

// Persistence tells where the services keep their state.
func (c *Cluster) Persistence() Persistence { return c.pers }

// Env is the environment every temporal-server process of the cluster runs with.
func (c *Cluster) Env() []string { return append([]string(nil), c.env...) }

// Dir is the directory of the logs and the dynamic config file.
func (c *Cluster) Dir() string { return c.dir }

// LogFile is the file svc's output goes to, across restarts.
func (c *Cluster) LogFile(svc Service) string {
	return filepath.Join(c.dir, string(svc)+".log")
}

// LogTail returns the last lines of every service's log.
func (c *Cluster) LogTail(lines int) string {
	var b strings.Builder
	for _, svc := range Services {
		data, err := os.ReadFile(c.LogFile(svc))
		if err != nil {
			continue
		}
		all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		fmt.Fprintf(&b, "--- %s (last %d lines of %s)\n", svc, min(lines, len(all)), c.LogFile(svc))
		for _, l := range all[max(0, len(all)-lines):] {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// Close stops every service (gracefully, then SIGKILL), drops the databases it created, and
// removes the directory it created.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for _, svc := range Services {
		wg.Go(func() { c.Stop(svc) })
	}
	wg.Wait()
	if c.bin.SQLTool != "" {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, db := range c.drop {
			// Close has nobody to report to; a database left behind is visible by its name.
			_ = c.sqlTool(ctx, db, "drop-database", "-f")
		}
	}
	if c.tempDir {
		_ = os.RemoveAll(c.dir)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
