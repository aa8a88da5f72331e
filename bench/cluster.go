package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"

	"go.temporal.io/sdk/client"

	"github.com/transferd/transferd/devtemporal"
	"github.com/transferd/transferd/internal/tcluster"
	"github.com/transferd/transferd/ledger"
)

// clusterTaskQueue is the task queue of the cluster stack's workers.
const clusterTaskQueue = "transfers"

// The names of the cluster stack's transferd processes; its Temporal services are "temporal
// <service>".
const (
	clusterAPI    = "api"
	clusterWorker = "worker"
)

// ClusterStack runs transferd as teams deploy it: on a production-shaped Temporal cluster
// (internal/tcluster: the official temporal-server's frontend, history, matching and worker
// services, each a process of its own, on PostgreSQL), with `transferd server` (no worker of its
// own, so no eager start: every workflow task goes through matching) and StackStart.Workers
// `transferd worker` processes, each a process of its own, from a binary built as the image's is.
// The cluster starts with the first Start and is kept across Stop and Start; a Start runs the API
// and the workers again, as many as it is given, with the saga variant it is given.
type ClusterStack struct {
	// Binary is the transferd executable of the API and the workers (BuildNodev).
	Binary string
	// AdminEmail is the admin the stack creates with `transferd users create --admin` on a new
	// database.
	AdminEmail string
	// Cluster configures the Temporal cluster; its zero value is tcluster's defaults.
	Cluster tcluster.Options
	// Pprof serves Go's pprof profiles from every process of the stack, the cluster's services
	// included (Deployment.Pprof).
	Pprof bool

	cluster  *tcluster.Cluster
	database string // the database whose admin password is known
	password string
	secret   string // the API's token secret, kept across starts
	api      *process
	workers  []*process
}

var _ Stack = (*ClusterStack)(nil)

// Start implements Stack. The first start brings the cluster up, which takes half a minute or so
// (more when temporal-server must be built first); on a database it has not seen, it creates and
// migrates the database (`transferd migrate`) and creates the admin (`transferd users create`).
func (s *ClusterStack) Start(ctx context.Context, in StackStart) (Deployment, error) {
	if s.cluster == nil {
		s.Cluster.Pprof = s.Cluster.Pprof || s.Pprof
		c, err := tcluster.Start(ctx, s.Cluster)
		if err != nil {
			return Deployment{}, fmt.Errorf("bench: start the Temporal cluster: %w", err)
		}
		s.cluster = c
	}
	if s.secret == "" {
		var b [32]byte
		_, _ = rand.Read(b[:])
		s.secret = hex.EncodeToString(b[:])
	}
	env := append(withoutTemporalEnv(os.Environ()), "TRANSFERD_JWT_SECRET="+s.secret)
	if in.Database != s.database {
		if err := s.prepare(ctx, in.Database, env); err != nil {
			return Deployment{}, err
		}
	}
	opts := client.Options{HostPort: s.cluster.HostPort(), Namespace: s.cluster.Namespace()}
	// Ten connections each leave room under PostgreSQL's default limit of 100 for the cluster's and
	// the bench's own.
	common := []string{"--database-url", in.Database, "--db-max-conns", "10", "--temporal-address", opts.HostPort,
		"--temporal-namespace", opts.Namespace, "--task-queue", clusterTaskQueue}
	dep := Deployment{AdminEmail: s.AdminEmail, AdminPassword: s.password, Temporal: opts, TaskQueue: clusterTaskQueue,
		Processes: map[string]int{}, Pprof: map[string]string{}}
	ok := false
	defer func() {
		if !ok {
			_ = s.Stop()
		}
	}()
	for i := range max(1, in.Workers) {
		name := clusterWorker
		if in.Workers > 1 {
			name = fmt.Sprintf("%s %d", clusterWorker, i+1)
		}
		args, err := withPprof(s.Pprof, nil, dep.Pprof, name, slices.Concat([]string{"worker"}, common, []string{"--metrics-addr", ""}))
		if err != nil {
			return Deployment{}, err
		}
		w, err := startProcess(s.Binary, name, env, args)
		if err != nil {
			return Deployment{}, err
		}
		s.workers = append(s.workers, w)
		dep.Processes[name] = w.pid()
	}
	addr, err := devtemporal.FreeAddrOutside(nil)
	if err != nil {
		return Deployment{}, err
	}
	args := slices.Concat([]string{"server"}, common, []string{"--addr", addr, "--with-worker=false", "--bcrypt-cost", "4", "--sign-ups-per-hour", "0"})
	if in.SagaVariant != "" {
		args = append(args, "--saga-variant", in.SagaVariant)
	}
	if args, err = withPprof(s.Pprof, nil, dep.Pprof, clusterAPI, args); err != nil {
		return Deployment{}, err
	}
	if s.api, err = startProcess(s.Binary, clusterAPI, env, args); err != nil {
		return Deployment{}, err
	}
	dep.Processes[clusterAPI] = s.api.pid()
	dep.API = "http://" + addr
	tc, err := client.DialContext(ctx, opts)
	if err != nil {
		return Deployment{}, err
	}
	defer tc.Close()
	if err := waitReady(ctx, tc, clusterTaskQueue, dep.API, s.api, s.workers...); err != nil {
		return Deployment{}, err
	}
	for _, svc := range tcluster.Services {
		dep.Processes["temporal "+string(svc)] = s.cluster.Pid(svc)
		if a := s.cluster.PprofAddr(svc); a != "" {
			dep.Pprof["temporal "+string(svc)] = a
		}
	}
	variant := ""
	if in.SagaVariant != "" {
		variant = ", saga " + in.SagaVariant
	}
	dep.Summary = fmt.Sprintf("Temporal cluster on PostgreSQL (4 temporal-server processes, frontend %s); transferd server (pid %d) on %s and %d transferd worker process(es)%s",
		opts.HostPort, s.api.pid(), dep.API, len(s.workers), variant)
	ok = true
	return dep, nil
}

// ClusterOptions are the options of the bench's Temporal cluster on the PostgreSQL server of
// adminURL: sized as a deployment is, not as the tests' small clusters are. With tcluster's default of
// 4 connections per service, the history service's persistence queued under a load of 50/s, its
// calls timed out ("context canceled"), their retries added to the queue, and no workflow task
// reached a worker until the load stopped. Here each service has 8 connections to its store and 4
// to visibility (48 for the cluster; docker-compose.yml gives 10 and 5), and 16 history shards:
// with the API's and two workers' pools of 10 and the bench's, 88 of PostgreSQL's default 100.
func ClusterOptions(adminURL string) tcluster.Options {
	return tcluster.Options{AdminURL: adminURL, MaxConns: 8, HistoryShards: 16}
}

// prepare creates and migrates the database, and creates the admin, as an operator does.
func (s *ClusterStack) prepare(ctx context.Context, database string, env []string) error {
	if _, err := ledger.CreateDatabase(ctx, database); err != nil {
		return err
	}
	if err := s.run(ctx, env, "migrate", "--database-url", database); err != nil {
		return err
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	password := hex.EncodeToString(b[:])
	if err := s.run(ctx, env, "users", "create", "--database-url", database, "--email", s.AdminEmail, "--password", password,
		"--name", "bench admin", "--admin", "--bcrypt-cost", "4"); err != nil {
		return err
	}
	s.database, s.password = database, password
	return nil
}

// run runs a transferd subcommand to its end.
func (s *ClusterStack) run(ctx context.Context, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, s.Binary, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		// The output of users create holds no password: it says who was created.
		return fmt.Errorf("bench: transferd %s: %v\n%s", strings.Join(args[:min(2, len(args))], " "), err, out)
	}
	return nil
}

// Stop implements Stack: it stops the API, then the workers, with SIGTERM. The cluster keeps
// running.
func (s *ClusterStack) Stop() error {
	var errs []error
	if s.api != nil {
		errs = append(errs, s.api.stop())
		s.api = nil
	}
	for _, w := range s.workers {
		errs = append(errs, w.stop())
	}
	s.workers = nil
	return errors.Join(errs...)
}

// Close implements Stack: it stops transferd's processes and the cluster, whose databases it drops.
func (s *ClusterStack) Close() error {
	err := s.Stop()
	if s.cluster != nil {
		s.cluster.Close()
		s.cluster = nil
	}
	return err
}
