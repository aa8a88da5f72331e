package tcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// serverModule is the Temporal server module whose commands the cluster runs, at the version this
// project's go.mod requires.
const serverModule = "go.temporal.io/server"

// Binaries are the official Temporal executables built from serverModule, and the module's
// directory, where its SQL schemas are.
type Binaries struct {
	// Server is temporal-server (go.temporal.io/server/cmd/server).
	Server string
	// SQLTool is temporal-sql-tool (go.temporal.io/server/cmd/tools/sql).
	SQLTool string
	// ModuleDir is the module's source directory, for schema/postgresql/v12/....
	ModuleDir string
	// Version is the module's version, v1.32.1 for example.
	Version string
}

var built struct {
	once sync.Once
	bin  Binaries
	err  error
}

// Build returns the Temporal executables, building them on the first call of the process. They are
// kept in a directory named after the module's version, the Go version and the platform (under
// TRANSFERD_TEMPORAL_BIN_DIR, else the user's cache directory), so a later process, or a later CI
// step on the same machine, finds them there and builds nothing. It runs the go command of PATH in
// the current directory, which must be inside this module.
func Build(ctx context.Context) (Binaries, error) {
	built.once.Do(func() { built.bin, built.err = build(ctx) })
	return built.bin, built.err
}

func build(ctx context.Context) (Binaries, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-json", serverModule).Output()
	if err != nil {
		return Binaries{}, fmt.Errorf("tcluster: go list -m %s: %w%s", serverModule, err, stderrOf(err))
	}
	var mod struct{ Version, Dir string }
	if err := json.Unmarshal(out, &mod); err != nil {
		return Binaries{}, fmt.Errorf("tcluster: go list -m %s: %w", serverModule, err)
	}
	if mod.Dir == "" {
		// The module is required but not downloaded yet; go build below downloads it.
		if out, err := exec.CommandContext(ctx, "go", "mod", "download", serverModule).CombinedOutput(); err != nil {
			return Binaries{}, fmt.Errorf("tcluster: go mod download %s: %w\n%s", serverModule, err, out)
		}
		if out, err = exec.CommandContext(ctx, "go", "list", "-m", "-json", serverModule).Output(); err != nil {
			return Binaries{}, fmt.Errorf("tcluster: go list -m %s: %w", serverModule, err)
		}
		if err := json.Unmarshal(out, &mod); err != nil {
			return Binaries{}, fmt.Errorf("tcluster: go list -m %s: %w", serverModule, err)
		}
	}
	dir, err := binDir(mod.Version)
	if err != nil {
		return Binaries{}, err
	}
	b := Binaries{
		Server:    filepath.Join(dir, "temporal-server"),
		SQLTool:   filepath.Join(dir, "temporal-sql-tool"),
		ModuleDir: mod.Dir,
		Version:   mod.Version,
	}
	for path, pkg := range map[string]string{
		b.Server:  serverModule + "/cmd/server",
		b.SQLTool: serverModule + "/cmd/tools/sql",
	} {
		if err := buildOnce(ctx, path, pkg); err != nil {
			return Binaries{}, err
		}
	}
	return b, nil
}

// binDir is the directory of the executables of one module version.
func binDir(version string) (string, error) {
	root := os.Getenv("TRANSFERD_TEMPORAL_BIN_DIR")
	if root == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		root = filepath.Join(cache, "transferd", "temporal")
	}
	dir := filepath.Join(root, strings.Join([]string{version, runtime.Version(), runtime.GOOS, runtime.GOARCH}, "-"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("tcluster: %w", err)
	}
	return dir, nil
}

// buildOnce builds pkg into path unless path exists. Processes that build at once each write a
// file of their own and rename it into place, so none runs a half-written executable.
func buildOnce(ctx context.Context, path, pkg string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	defer os.Remove(tmp)
	cmd := exec.CommandContext(ctx, "go", "build", "-ldflags=-s -w", "-o", tmp, pkg)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("tcluster: go build %s: %w\n%s", pkg, err, out)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("tcluster: %w", err)
	}
	return nil
}

func stderrOf(err error) string {
	var exit *exec.ExitError
	if errors.As(err, &exit) && len(exit.Stderr) > 0 {
		return "\n" + string(exit.Stderr)
	}
	return ""
}
