package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/transferd/transferd/worker"
)

// runTemporalSetup prepares a self-hosted Temporal cluster for transferd: it registers the namespace
// with a retention (or sets the retention of one that exists) and transferd's search attributes, and
// nothing else. It is the docker-compose job that the API and the workers wait for; on Temporal
// Cloud the namespace and its attributes are made in Cloud, and workers run with
// --skip-search-attributes.
func runTemporalSetup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	var retention time.Duration
	fs := flag.NewFlagSet("transferd temporal-setup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.temporalFlags(fs)
	fs.DurationVar(&retention, "retention", envDuration("TEMPORAL_RETENTION", worker.DefaultRetention), "how long Temporal keeps closed workflows, more than a day (TRANSFERD_TEMPORAL_RETENTION)")
	if err := fs.Parse(args); err != nil {
		return exitError(2)
	}
	if retention < 24*time.Hour {
		fmt.Fprintf(stderr, "temporal-setup: --retention %s: Temporal takes one day or more\n", retention)
		return exitError(2)
	}
	opts, err := c.temporalOptions()
	if err != nil {
		fmt.Fprintf(stderr, "temporal-setup: %v\n", err)
		return exitError(2)
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	c.print(stderr, fs)
	tel, err := newTelemetry(ctx, "transferd-temporal-setup", log)
	if err != nil {
		return err
	}
	defer tel.close(context.WithoutCancel(ctx))
	tc, err := dialTemporal(ctx, opts, log, tel)
	if err != nil {
		return err
	}
	defer tc.Close()
	setupCtx, cancel := context.WithTimeout(ctx, connectPatience)
	defer cancel()
	did, err := worker.SetupNamespace(setupCtx, tc, c.TemporalNamespace, retention)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "temporal-setup: %s\n", did)
	return nil
}
