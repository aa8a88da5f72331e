package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"

	"go.temporal.io/sdk/client"

	"github.com/transferd/transferd/devtemporal"
)

// devProcess names `transferd dev` among the processes whose peak RSS the runs report.
const devProcess = "dev (API+worker)"

// devTaskQueue is the task queue of `transferd dev`'s worker.
const devTaskQueue = "transfers"

// DevStack runs `transferd dev` as one process: the API, the worker and an embedded Temporal server
// on SQLite, on free loopback ports, with a data directory of its own. A start after Stop keeps the
// ports and the directory, so the Temporal server comes back as the same hosts and resumes at once.
type DevStack struct {
	// Binary is the transferd executable that runs `transferd dev`: a build without -tags nodev.
	Binary string
	// AdminEmail is the bootstrap admin's, whom dev creates on a database that has no admin.
	AdminEmail string
	// ReadBanner reads dev's stdout up to its ready line and returns the API's URL and the
	// bootstrap admin's password, which only the start that created the admin prints; then it
	// keeps draining the rest. It fails if the output ends first.
	ReadBanner func(stdout io.Reader) (api, password string, err error)
	// TemporalOptions are the options of a client of the dev server whose frontend is at hostPort.
	TemporalOptions func(hostPort string) (client.Options, error)
	// Pprof serves Go's pprof profiles from dev's process (Deployment.Pprof).
	Pprof bool

	// dataDir, temporal, addr and reserved are set by the first start and kept by the next.
	dataDir, temporal, addr string
	reserved                []int
	// password is the bootstrap admin's, from the start that printed it.
	password string
	proc     *process
}

var _ Stack = (*DevStack)(nil)

// Start implements Stack: it runs `transferd dev` on in.Database, which dev creates and migrates,
// with bcrypt's lowest cost and no Web UI.
func (d *DevStack) Start(ctx context.Context, in StackStart) (Deployment, error) {
	if d.dataDir == "" {
		if err := d.pick(); err != nil {
			return Deployment{}, err
		}
	}
	args := []string{"dev", "--database-url", in.Database, "--data-dir", d.dataDir, "--addr", d.addr,
		"--temporal-address", d.temporal, "--ui-addr", "", "--bcrypt-cost", "4", "--sign-ups-per-hour", "0"}
	if in.SagaVariant != "" {
		args = append(args, "--saga-variant", in.SagaVariant)
	}
	pprof := map[string]string{}
	args, err := withPprof(d.Pprof, d.reserved, pprof, devProcess, args)
	if err != nil {
		return Deployment{}, err
	}
	p := newProcess("dev", exec.CommandContext(ctx, d.Binary, args...))
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return Deployment{}, err
	}
	if err := p.start(); err != nil {
		return Deployment{}, err
	}
	api, password, err := d.ReadBanner(stdout)
	if err != nil {
		_ = p.stop()
		return Deployment{}, fmt.Errorf("bench: transferd dev did not start; its last words:\n%s", p.stderr.String())
	}
	d.proc = p
	// The admin exists after the first start; a restart prints no password, so the first one serves.
	if password != "" {
		d.password = password
	}
	opts, err := d.TemporalOptions(d.temporal)
	if err != nil {
		return Deployment{}, err
	}
	return Deployment{API: api, AdminEmail: d.AdminEmail, AdminPassword: d.password, Temporal: opts, TaskQueue: devTaskQueue,
		Processes: map[string]int{devProcess: p.pid()}, Reserved: d.reserved, Pprof: pprof,
		Summary: fmt.Sprintf("transferd dev (pid %d) on %s, Temporal %s", p.pid(), api, d.temporal)}, nil
}

// pick makes the data directory and picks the ports every start uses: a frontend port whose block of
// derived ports is free, and the API's outside that block. It sets nothing unless all succeed.
func (d *DevStack) pick() error {
	dir, err := os.MkdirTemp("", "transferd-bench-")
	if err != nil {
		return err
	}
	port, err := devtemporal.FreeFrontendPort("127.0.0.1")
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	reserved := devtemporal.Ports(port)
	addr, err := devtemporal.FreeAddrOutside(reserved)
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	d.dataDir, d.temporal, d.reserved, d.addr = dir, net.JoinHostPort("127.0.0.1", fmt.Sprint(port)), reserved, addr
	return nil
}

// Stop implements Stack: it stops dev with SIGTERM.
func (d *DevStack) Stop() error {
	if d.proc == nil {
		return nil
	}
	p := d.proc
	d.proc = nil
	return p.stop()
}

// Close implements Stack: it stops dev and removes its data directory.
func (d *DevStack) Close() error {
	err := d.Stop()
	if d.dataDir != "" {
		_ = os.RemoveAll(d.dataDir)
		d.dataDir = ""
	}
	return err
}
