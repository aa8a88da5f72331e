// Command tcluster runs the production-shaped Temporal cluster of package tcluster in the
// foreground, for a person (make cluster): temporal-server's four services as processes on the
// PostgreSQL of --admin-url, in the databases temporal and temporal_visibility (created, upgraded and
// kept), with the namespace and transferd's search attributes registered, and the Temporal Web UI.
// Ctrl-C stops it; a restart resumes every workflow. With --build-only it only builds the two
// executables, as make test does before the tests so that a first build (minutes) does not count
// against their timeout.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uiserveroptions "github.com/temporalio/ui-server/v2/server/server_options"

	"github.com/transferd/transferd/internal/tcluster"
	"github.com/transferd/transferd/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tcluster:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	var o tcluster.Options
	var uiAddr string
	var buildOnly, freePorts bool
	flag.StringVar(&o.AdminURL, "admin-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL URL of a user who may create databases")
	flag.StringVar(&o.PostgresAddr, "postgres-addr", "", "host:port the services connect to (default: the admin URL's)")
	flag.StringVar(&o.Database, "database", "temporal", "database of the default store")
	flag.StringVar(&o.VisibilityDatabase, "visibility-database", "temporal_visibility", "database of SQL visibility")
	flag.IntVar(&o.HistoryShards, "history-shards", 4, "NUM_HISTORY_SHARDS: fixed at the databases' first use, never changeable")
	flag.BoolVar(&freePorts, "free-ports", false, "run the services on free ports instead of the config template's defaults (frontend 7233; 7234-7243, 6933-6939); a restart on the same databases then waits about 30 s for the membership")
	flag.StringVar(&o.Namespace, "namespace", "default", "namespace to register with transferd's search attributes")
	flag.DurationVar(&o.Retention, "retention", worker.DefaultRetention, "the namespace's retention of closed workflows")
	flag.IntVar(&o.MaxConns, "max-conns", 4, "SQL_MAX_CONNS of each service (visibility's pool is half of it)")
	flag.StringVar(&o.Dir, "dir", ".data/cluster", "directory of the services' logs and dynamic config")
	flag.StringVar(&uiAddr, "ui-addr", "127.0.0.1:8233", "address of the Temporal Web UI; empty for none")
	flag.BoolVar(&buildOnly, "build-only", false, "build temporal-server and temporal-sql-tool if needed, print where they are, and exit")
	flag.Parse()
	o.DefaultPorts = !freePorts

	if buildOnly {
		start := time.Now()
		bin, err := tcluster.Build(ctx)
		if err != nil {
			return err
		}
		fmt.Printf("tcluster: %s\ntcluster: %s\n(%s, %s)\n", bin.Server, bin.SQLTool, bin.Version, time.Since(start).Round(time.Millisecond))
		return nil
	}

	start := time.Now()
	fmt.Printf("tcluster: building temporal-server and temporal-sql-tool if needed, setting up %s and %s\n", o.Database, o.VisibilityDatabase)
	c, err := tcluster.Start(ctx, o)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Printf("tcluster: ready in %s\n", time.Since(start).Round(time.Millisecond))
	fmt.Printf("  Temporal     %s   namespace %s\n", c.HostPort(), c.Namespace())
	for _, svc := range tcluster.Services {
		fmt.Printf("  %-12s %s   log %s\n", svc, c.Address(svc), c.LogFile(svc))
	}
	p := c.Persistence()
	fmt.Printf("  PostgreSQL   %s   databases %s, %s\n", p.Addr, p.Database, p.VisibilityDatabase)
	if uiAddr != "" {
		host, port, err := net.SplitHostPort(uiAddr)
		if err != nil {
			return fmt.Errorf("--ui-addr: %w", err)
		}
		n, err := strconv.Atoi(port)
		if err != nil {
			return fmt.Errorf("--ui-addr: %w", err)
		}
		ui := uiserver.NewServer(uiserveroptions.WithConfigProvider(&uiconfig.Config{
			Host: host, Port: n, TemporalGRPCAddress: c.HostPort(), EnableUI: true,
			DefaultNamespace: c.Namespace(), CORS: uiconfig.CORS{CookieInsecure: true}, HideLogs: true,
		}))
		go func() {
			if err := ui.Start(); err != nil {
				fmt.Fprintln(os.Stderr, "tcluster: Web UI:", err)
			}
		}()
		defer ui.Stop()
		fmt.Printf("  Web UI       http://%s\n", uiAddr)
	}
	fmt.Println("ready: press Ctrl-C to stop")
	<-ctx.Done()
	fmt.Println("tcluster: stopping")
	return nil
}
