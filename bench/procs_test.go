package bench

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
)

// TestProcessStop: a process that exits on SIGTERM stops cleanly, and again; one that fails says so
// with its last words.
func TestProcessStop(t *testing.T) {
	// The script touches started once its trap is set, and ends its sleep when it exits, so that
	// nothing holds its stderr open.
	started := filepath.Join(t.TempDir(), "started")
	p, err := startProcess("/bin/sh", "clean", nil, []string{"-c", `trap 'kill $!; exit 0' TERM; sleep 30 & touch "$0"; wait`, started})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(started); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the script did not start")
		}
	}
	if err := p.stop(); err != nil {
		t.Errorf("stop: got %v, want nil", err)
	}
	if err := p.stop(); err != nil {
		t.Errorf("stop again: got %v, want nil", err)
	}

	p, err = startProcess("/bin/sh", "failing", nil, []string{"-c", `echo last words >&2; exit 3`})
	if err != nil {
		t.Fatal(err)
	}
	<-p.exited
	if err := p.stop(); err == nil || !strings.Contains(err.Error(), "transferd failing did not stop cleanly") || !strings.Contains(err.Error(), "last words") {
		t.Errorf("stop of a failed process: got %v, want its exit and last words", err)
	}
}

// fakeDev is a script that stands for `transferd dev`: it writes its arguments to args.<n> in its
// directory, prints a banner (the admin's password on the first start only) and serves until SIGTERM.
const fakeDev = `#!/bin/sh
dir=$(dirname "$0")
n=$(ls "$dir" | grep -c '^args')
echo "$@" > "$dir/args.$n"
sleep 30 &
trap 'kill $!; exit 0' TERM
echo "  API          http://127.0.0.1:1"
[ "$n" = 0 ] && echo "  Admin        admin@test / secret$n"
echo "ready"
wait
`

// TestDevStack: a restart runs dev on the same data directory and addresses, with the saga variant,
// and keeps the first start's password; Close stops dev and removes the directory.
func TestDevStack(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "transferd")
	if err := os.WriteFile(bin, []byte(fakeDev), 0o755); err != nil {
		t.Fatal(err)
	}
	readBanner := func(r io.Reader) (api, password string, err error) {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) >= 2 && f[0] == "API":
				api = f[1]
			case len(f) >= 4 && f[0] == "Admin":
				password = f[3]
			case len(f) > 0 && f[0] == "ready":
				go io.Copy(io.Discard, r)
				return api, password, nil
			}
		}
		return "", "", errors.New("no ready line")
	}
	d := &DevStack{Binary: bin, AdminEmail: "admin@test", ReadBanner: readBanner,
		TemporalOptions: func(hostPort string) (client.Options, error) {
			return client.Options{HostPort: hostPort, Namespace: "default"}, nil
		}}
	ctx := context.Background()
	first, err := d.Start(ctx, StackStart{Database: "postgres://db"})
	if err != nil {
		t.Fatal(err)
	}
	dataDir := d.dataDir
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	second, err := d.Start(ctx, StackStart{Database: "postgres://db", SagaVariant: "naive"})
	if err != nil {
		t.Fatal(err)
	}
	if first.AdminPassword != "secret0" || second.AdminPassword != "secret0" {
		t.Errorf("passwords: got %q then %q, want the first start's both times", first.AdminPassword, second.AdminPassword)
	}
	if first.Temporal.HostPort != second.Temporal.HostPort || !slices.Equal(first.Reserved, second.Reserved) || d.dataDir != dataDir {
		t.Errorf("the restart moved: Temporal %s then %s, data %s then %s", first.Temporal.HostPort, second.Temporal.HostPort, dataDir, d.dataDir)
	}
	if second.API != "http://127.0.0.1:1" || second.TaskQueue != "transfers" || second.Processes[devProcess] == 0 {
		t.Errorf("deployment: got %+v", second)
	}
	args, err := os.ReadFile(filepath.Join(dir, "args.1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"dev --database-url postgres://db --data-dir " + dataDir, "--temporal-address " + first.Temporal.HostPort, "--saga-variant naive"} {
		if !strings.Contains(string(args), want) {
			t.Errorf("second start's arguments %q lack %q", args, want)
		}
	}
	if err := d.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("data directory after Close: %v, want it removed", err)
	}
}
