package bench

import (
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/transferd/transferd/devtemporal"
)

// process is a transferd subcommand the bench started, with the tail of its stderr. Its peak RSS is
// read, while it runs, by its pid (sampleRSS).
type process struct {
	name   string
	cmd    *exec.Cmd
	stderr tailBuffer
	// exited is closed once the process has exited, with err its exit's error.
	exited chan struct{}
	err    error
}

// startProcess runs binary with args and env; name names it in errors.
func startProcess(binary, name string, env, args []string) (*process, error) {
	p := newProcess(name, exec.Command(binary, args...))
	p.cmd.Env = env
	return p, p.start()
}

// newProcess wraps cmd, not started yet, keeping the tail of its stderr; name names it in errors.
func newProcess(name string, cmd *exec.Cmd) *process {
	p := &process{name: name, cmd: cmd, exited: make(chan struct{})}
	p.cmd.Stderr = &p.stderr
	return p
}

// start starts the process and watches for its exit.
func (p *process) start() error {
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("bench: start transferd %s: %w", p.name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	return nil
}

// pid is the started process's id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// stop ends the process as an orchestrator does, with SIGTERM, and waits for it to exit, killing it
// after 40 seconds. It returns an error unless the process exited cleanly, and may be called again.
func (p *process) stop() error {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(40 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
	if p.err != nil {
		return fmt.Errorf("bench: transferd %s did not stop cleanly (%v); its last words:\n%s", p.name, p.err, p.stderr.String())
	}
	return nil
}

// withPprof returns args with --pprof-addr on a free loopback address outside reserved, which it
// records under name in addrs, when on; else args as they are.
func withPprof(on bool, reserved []int, addrs map[string]string, name string, args []string) ([]string, error) {
	if !on {
		return args, nil
	}
	a, err := devtemporal.FreeAddrOutside(reserved)
	if err != nil {
		return nil, err
	}
	addrs[name] = a
	return append(args, "--pprof-addr", a), nil
}

// tailBuffer keeps the last 4 KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4096 {
		t.buf = t.buf[len(t.buf)-4096:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
