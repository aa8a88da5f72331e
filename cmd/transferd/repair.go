package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/transferd/transferd/service"
)

// runRepair gives accepted transfers that are not final a running workflow: the operator's side of
// the reconciler, for the runbook. With transfer ids it repairs those; with --all it asks Temporal
// about every transfer in flight (one describe each, for rows stranded longer than visibility's
// retention); otherwise it runs one reconcile sweep, as every worker does each --reconcile-every.
func runRepair(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	var all bool
	fs := c.flagSet("repair", stderr, func(fs *flag.FlagSet) {
		c.temporalFlags(fs)
		fs.BoolVar(&all, "all", false, "look at every transfer that is not final, not only lost starts and workflows closed recently")
	})
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: transferd repair [flags] [transfer-id ...]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitError(2)
	}
	var ids []uuid.UUID
	for _, a := range fs.Args() {
		id, err := uuid.Parse(a)
		if err != nil {
			fmt.Fprintf(stderr, "repair: %q is not a transfer id\n", a)
			return exitError(2)
		}
		ids = append(ids, id)
	}
	opts, err := c.temporalOptions()
	if err != nil {
		return err
	}
	opts.Logger = tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))
	c.print(stderr, fs)
	store, err := openStore(ctx, &c)
	if err != nil {
		return err
	}
	defer store.Close()
	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	tc, err := client.DialContext(dialCtx, opts)
	cancel()
	if err != nil {
		return fmt.Errorf("cannot reach Temporal at %s: %w", c.TemporalAddress, err)
	}
	defer tc.Close()
	log := slog.New(slog.NewTextHandler(stderr, nil))
	svc := service.New(store, tc, c.TaskQueue, log).WithOptions(service.Options{Namespace: c.TemporalNamespace})
	var r service.ReconcileReport
	switch {
	case len(ids) > 0:
		for _, id := range ids {
			r.Looked++
			started, err := svc.Repair(ctx, id)
			switch {
			case err != nil:
				r.Failed++
				fmt.Fprintf(stdout, "repair: %s: %v\n", id, err)
			case started:
				r.Repaired++
				fmt.Fprintf(stdout, "repair: %s: started a new workflow run\n", id)
			default:
				fmt.Fprintf(stdout, "repair: %s: nothing to do (final, or its workflow runs)\n", id)
			}
		}
	case all:
		r, err = svc.RepairAll(ctx)
	default:
		r, err = svc.Reconcile(ctx, 0)
	}
	fmt.Fprintf(stdout, "repair: looked at %d transfers, started %d workflow runs, %d failed\n", r.Looked, r.Repaired, r.Failed)
	if err != nil || r.Failed > 0 {
		if err != nil {
			fmt.Fprintf(stderr, "repair: %v\n", err)
		}
		return exitError(1)
	}
	return nil
}
