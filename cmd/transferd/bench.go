//go:build !nodev

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/transferd/transferd/bench"
)

// runBench runs `transferd bench suite` (bench.Suite): it starts its own `transferd dev` from this
// executable on a throwaway database, runs the floor, sql and saga targets one after another on the
// same Temporal server and PostgreSQL, audits the ledger, and writes the report.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "suite" {
		fmt.Fprintln(stderr, "usage: transferd bench suite [--quick] [--servers dev,cluster] [--out docs/benchmarks.md] [--count N] [--concurrency N] [--accounts N] [--split-for 5m] [--split-binary PATH] [--profile-dir DIR]")
		return exitError(2)
	}
	var c config
	var s bench.Settings
	var out, jsonOut, splitBinary, servers, profileDir string
	var quick bool
	fs := c.flagSet("bench suite", stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&out, "out", "docs/benchmarks.md", "where to write the Markdown report")
		fs.StringVar(&jsonOut, "json", "docs/bench-results.json", "where to write the results as JSON")
		fs.BoolVar(&quick, "quick", false, "a run of a few seconds, to keep the tool working (make test)")
		fs.IntVar(&s.Count, "count", 1500, "transfers per closed-loop run")
		fs.IntVar(&s.Concurrency, "concurrency", 32, "transfers in flight in the closed-loop runs")
		fs.IntVar(&s.Accounts, "accounts", 200, "accounts")
		fs.Float64Var(&s.Rate, "rate", 50, "transfers per second of the fixed-rate run")
		fs.DurationVar(&s.RateFor, "rate-for", 30*time.Second, "length of the fixed-rate run")
		fs.Float64Var(&s.SplitRate, "split-rate", bench.DevSplitRate, "transfers per second of the split run on the dev server (transferd server and transferd worker as two processes)")
		fs.Float64Var(&s.ClusterRate, "cluster-rate", bench.ClusterRate, "transfers per second of the fixed-rate run on the cluster; the split deployment's target is shown only by a run at 50/s for 5 minutes (--cluster-rate 50)")
		fs.DurationVar(&s.SplitFor, "split-for", bench.SplitTargetFor, "length of the split run and of the cluster's fixed-rate run")
		fs.StringVar(&servers, "servers", "dev,cluster", "the Temporal servers to run on: dev (transferd dev's embedded server), cluster (a Temporal cluster on PostgreSQL, with the API and the workers as processes of their own), or both")
		fs.StringVar(&profileDir, "profile-dir", "", "save 30-second CPU profiles of the processes of the split run (dev, API, worker) and of the cluster's fixed-rate run (temporal services, API, worker), taken during each, in this directory; empty for none")
		fs.StringVar(&splitBinary, "split-binary", "", "the transferd binary the split run starts, built with -tags nodev as the image's is; empty to build one with go build from the module in the working directory")
	})
	if err := fs.Parse(args[1:]); err != nil {
		return exitError(2)
	}
	if quick {
		// --quick shortens the split run too, unless --split-for says how long it is.
		splitForSet := false
		fs.Visit(func(f *flag.Flag) { splitForSet = splitForSet || f.Name == "split-for" })
		s = s.Shorten(splitForSet)
	}
	withDev, withCluster := false, false
	for _, name := range strings.Split(servers, ",") {
		switch strings.TrimSpace(name) {
		case bench.ServerDev:
			withDev = true
		case bench.ServerCluster:
			withCluster = true
		default:
			fmt.Fprintf(stderr, "bench suite: --servers: unknown server %q (dev, cluster)\n", name)
			return exitError(2)
		}
	}
	if !withDev {
		// The dev server's part holds the suite's baselines (sql, growth); it always runs.
		fmt.Fprintln(stderr, "bench suite: --servers must include dev, whose runs hold the baselines")
		return exitError(2)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	// The split run's binary first: without it the suite cannot finish.
	split := bench.Binary{Path: splitBinary}
	if splitBinary == "" {
		binDir, err := os.MkdirTemp("", "transferd-bench-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(binDir)
		if split, err = bench.BuildNodev(ctx, binDir); err != nil {
			return err
		}
	}

	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	dev := &bench.DevStack{
		Binary:     self,
		Pprof:      profileDir != "",
		AdminEmail: bootstrapAdminEmail,
		ReadBanner: func(r io.Reader) (string, string, error) {
			b, err := readDevBanner(r)
			return b.API, b.Password, err
		},
		TemporalOptions: func(hostPort string) (client.Options, error) {
			return devTemporalOptions(hostPort, "default", log)
		},
	}
	suite := &bench.Suite{Settings: s, DatabaseURL: c.DatabaseURL, Stack: dev, Split: split, Out: out, JSONOut: jsonOut,
		PrintAudit: printReport, Stdout: stdout, Progress: stderr, ProfileDir: profileDir}
	if withCluster {
		// The cluster's databases are created on the suite's PostgreSQL server, and dropped after.
		suite.Cluster = &bench.ClusterStack{Binary: split.Path, AdminEmail: bootstrapAdminEmail, Pprof: profileDir != "",
			Cluster: bench.ClusterOptions(c.DatabaseURL)}
	}
	if err := suite.Run(ctx); errors.Is(err, bench.ErrViolations) {
		return exitError(1)
	} else if err != nil {
		return err
	}
	return nil
}
