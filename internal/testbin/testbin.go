// Package testbin builds the transferd binary for the tests that run it as a subprocess (the
// subcommand tests of cmd/transferd, the chaos suite): once per test process, into a directory that
// Main removes when the tests are done.
package testbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// pkg is the command the tests run.
const pkg = "github.com/transferd/transferd/cmd/transferd"

var built struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// Transferd returns the path of cmd/transferd built for this test process, building it on first use
// (Go's build cache makes that cheap after the first time), or fails the test if it does not build.
func Transferd(t testing.TB) string {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "transferd-test-bin-")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "transferd")
		built.out, built.err = exec.Command("go", "build", "-o", built.path, pkg).CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, built.err, built.out)
	}
	return built.path
}

// Main runs the tests and then removes the binary; a package's TestMain calls os.Exit(Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if built.path != "" {
		_ = os.RemoveAll(filepath.Dir(built.path))
	}
	return code
}
