//go:build !nodev

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/transferd/transferd/devtemporal"
	"github.com/transferd/transferd/worker"
)

// runTemporal runs only the Temporal dev server of `transferd dev`, with its Web UI and SQLite under
// --data-dir, for a stack of separate processes on one machine: `transferd server` and any number of
// `transferd worker` dial it. A restart over the same data dir resumes every workflow. It is what the
// chaos suite kills and restarts; it is not a production Temporal.
func runTemporal(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var addr, uiAddr, dataDir, namespace string
	fs := flag.NewFlagSet("transferd temporal", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&addr, "addr", env("DEV_TEMPORAL_ADDRESS", "127.0.0.1:7233"), "address of the frontend that workers and the API dial (TRANSFERD_DEV_TEMPORAL_ADDRESS)")
	fs.StringVar(&uiAddr, "ui-addr", env("UI_ADDR", "127.0.0.1:8233"), "address of the Temporal Web UI; empty for none (TRANSFERD_UI_ADDR)")
	fs.StringVar(&dataDir, "data-dir", env("DATA_DIR", ".data"), "where the server keeps its SQLite database (TRANSFERD_DATA_DIR)")
	fs.StringVar(&namespace, "namespace", env("TEMPORAL_NAMESPACE", "default"), "namespace to create, with transferd's search attributes (TRANSFERD_TEMPORAL_NAMESPACE)")
	if err := fs.Parse(args); err != nil {
		return exitError(2)
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	srv, err := startDevTemporal(ctx, addr, uiAddr, dataDir, namespace, log)
	if err != nil {
		return err
	}
	defer srv.Stop()
	fmt.Fprintf(stdout, "transferd temporal\n")
	fmt.Fprintf(stdout, "  Temporal     %s   namespace %s\n", srv.HostPort(), namespace)
	if srv.UIURL() != "" {
		fmt.Fprintf(stdout, "  Web UI       %s\n", srv.UIURL())
	}
	fmt.Fprintf(stdout, "  Data         %s\n", dataDir)
	fmt.Fprintf(stdout, "ready: press Ctrl-C to stop\n")
	<-ctx.Done()
	log.Info("stopping")
	return nil
}

// startDevTemporal starts the embedded Temporal dev server of dev and temporal: its frontend on
// addr, its Web UI on uiAddr (none when empty), its SQLite file in dataDir, and the namespace with
// transferd's search attributes.
func startDevTemporal(ctx context.Context, addr, uiAddr, dataDir, namespace string, log *slog.Logger) (*devtemporal.Server, error) {
	ip, port, err := splitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("temporal address: %w", err)
	}
	uiPort := -1
	if uiAddr != "" {
		if _, uiPort, err = splitHostPort(uiAddr); err != nil {
			return nil, fmt.Errorf("UI address: %w", err)
		}
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	return devtemporal.Start(ctx, devtemporal.Options{
		DatabaseFile: filepath.Join(dataDir, "temporal.db"), IP: ip, FrontendPort: port, UIPort: uiPort,
		Namespace: namespace, SearchAttributes: worker.SearchAttributes, Log: log,
	})
}
