// Command transferd is the transfer service's one binary. Its subcommands:
//
//	transferd migrate   apply the ledger's schema migrations
//	transferd worker    run the Temporal worker that executes transfers
//	transferd audit     check the ledger's invariants; exit 1 on any violation
//	transferd repair    give transfers that are not final a running workflow
//	transferd server    serve the HTTP API
//	transferd dev       run everything in one process: Temporal with its Web UI, worker and API
//	transferd temporal  run only the Temporal dev server and Web UI, for separate server and workers
//	transferd temporal-setup  register the namespace and search attributes on a Temporal cluster
//	transferd users     create users, admins included (users create --admin)
//
// Every setting is a flag and an environment variable; see config.go.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var exit exitError
	switch {
	case errors.As(err, &exit):
		os.Exit(int(exit))
	case err != nil:
		fmt.Fprintln(os.Stderr, "transferd:", err)
		os.Exit(2)
	}
}

// exitError ends the process with a status code and nothing more to print.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

const usage = `usage: transferd <command> [flags]

commands:
  migrate   apply the ledger's schema migrations to the database
  worker    run the Temporal worker that executes transfers
  audit     check the ledger's invariants; exit 1 on any violation
  repair    give transfers that are not final a running workflow (all, or the ids given)
  server    serve the HTTP API (default :8080)
  dev       run everything in one process: Temporal dev server and Web UI, worker, API
  temporal  run only the Temporal dev server and Web UI (SQLite in --data-dir)
  temporal-setup  register the namespace (--retention) and search attributes on a Temporal cluster
  users     users create --email E --password P [--name N] [--admin]
  healthcheck  exit 0 when --url (default the API's /readyz) answers 200
  bench     bench suite: floor, sql and saga side by side; writes docs/benchmarks.md

Run 'transferd <command> -h' for a command's flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitError(2)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "migrate":
		return runMigrate(ctx, rest, stdout, stderr)
	case "worker":
		return runWorker(ctx, rest, stdout, stderr)
	case "audit":
		return runAudit(ctx, rest, stdout, stderr)
	case "repair":
		return runRepair(ctx, rest, stdout, stderr)
	case "server":
		return runServer(ctx, rest, stdout, stderr)
	case "dev":
		return runDev(ctx, rest, stdout, stderr)
	case "temporal":
		return runTemporal(ctx, rest, stdout, stderr)
	case "temporal-setup":
		return runTemporalSetup(ctx, rest, stdout, stderr)
	case "healthcheck":
		return runHealthcheck(ctx, rest, stdout, stderr)
	case "bench":
		return runBench(ctx, rest, stdout, stderr)
	case "users":
		return runUsers(ctx, rest, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "transferd: unknown command %q\n\n%s", cmd, usage)
	return exitError(2)
}
