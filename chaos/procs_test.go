//go:build linux

package chaos_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/testbin"
)

// TestMain removes the transferd binary the suite built.
func TestMain(m *testing.M) { os.Exit(testbin.Main(m)) }

// proc is one transferd process that the suite starts, kills and restarts. Every run appends its
// stdout and stderr to the same log file, which the test prints the end of when it fails.
type proc struct {
	t    *testing.T
	name string
	// bin is the transferd binary it runs: the one built from this checkout when empty, or a
	// previous release's (the upgrade test).
	bin  string
	args []string
	env  []string
	log  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	starts int
	// crashes counts the kills that found the process already gone: it had exited by itself.
	crashes int
	// ready, when set, waits until a started process serves; launch calls it.
	ready func(ctx context.Context) error
}

func newProc(t *testing.T, dir, name string, env []string, args ...string) *proc {
	p := &proc{t: t, name: name, args: args, env: env, log: filepath.Join(dir, name+".log")}
	t.Cleanup(func() {
		p.kill(syscall.SIGKILL)
		if t.Failed() {
			p.printTail(40)
		}
	})
	return p
}

// launch starts the process and waits, for at most restartTimeout, until it is ready.
func (p *proc) launch(ctx context.Context) {
	p.t.Helper()
	p.start()
	p.waitReady(ctx)
}

// waitReady waits, for at most restartTimeout, until the started process is ready.
func (p *proc) waitReady(ctx context.Context) {
	p.t.Helper()
	if p.ready == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, restartTimeout)
	defer cancel()
	if err := p.ready(ctx); err != nil {
		p.t.Fatal(err)
	}
}

// restart kills the process with SIGKILL, waits pause, and launches it again.
func (p *proc) restart(ctx context.Context, pause time.Duration) {
	p.t.Helper()
	p.kill(syscall.SIGKILL)
	time.Sleep(pause)
	p.launch(ctx)
}

// start starts the process; it must not be running.
func (p *proc) start() {
	p.t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatalf("%s: log: %v", p.name, err)
	}
	defer f.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starts++
	fmt.Fprintf(f, "=== start %d of %s at %s\n", p.starts, p.name, time.Now().Format(time.RFC3339Nano))
	bin := p.bin
	if bin == "" {
		bin = testbin.Transferd(p.t)
	}
	cmd := exec.Command(bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	// The process dies with the test, whatever ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("%s: start: %v", p.name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
}

// kill sends sig and waits for the process to exit; a process that is not running is left alone.
func (p *proc) kill(sig syscall.Signal) {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	if cmd != nil {
		select {
		case <-exited:
			p.crashes++
		default:
		}
	}
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// running reports whether the process is still up; a process that exited by itself is a failure
// the test reports.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// waitLog waits until the log holds want after the process's latest start.
func (p *proc) waitLog(ctx context.Context, want string) error {
	for {
		b, err := os.ReadFile(p.log)
		if err == nil {
			marker := fmt.Sprintf("=== start %d of", p.starts)
			if i := strings.LastIndex(string(b), marker); i >= 0 && strings.Contains(string(b[i:]), want) {
				return nil
			}
		}
		if !p.running() {
			return fmt.Errorf("%s exited before printing %q", p.name, want)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not print %q: %w", p.name, want, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// countLines counts the lines of the log, over every start, that contain any of subs, in any case.
func (p *proc) countLines(subs ...string) int {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return 0
	}
	n := 0
	for line := range strings.Lines(strings.ToLower(string(b))) {
		if slices.ContainsFunc(subs, func(sub string) bool { return strings.Contains(line, strings.ToLower(sub)) }) {
			n++
		}
	}
	return n
}

// printTail logs the last n lines of the process's log.
func (p *proc) printTail(n int) {
	f, err := os.Open(p.log)
	if err != nil {
		return
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		lines = append(lines, s.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	p.t.Logf("--- last %d lines of %s ---\n%s", len(lines), p.name, strings.Join(lines, "\n"))
}
