package bench

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestSampleCPU: a process that burns CPU is measured by its pid, the bench's own process is measured
// too, and a process that exits before the end is left out rather than reported as a negative.
func TestSampleCPU(t *testing.T) {
	gone := exec.Command("sleep", "0.1")
	if err := gone.Start(); err != nil {
		t.Fatal(err)
	}
	cpu := sampleCPU(map[string]int{"self": os.Getpid(), "gone": gone.Process.Pid})
	_ = gone.Wait()
	// Burn 300 ms of CPU in this process, as the kernel's own accounting (getrusage) counts it:
	// on a busy machine that takes longer than 300 ms.
	used := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	from := used()
	x := 0
	for used()-from < 300*time.Millisecond {
		for i := range 100_000 {
			x ^= i
		}
	}
	_ = x
	burnt := (used() - from).Seconds()
	got := cpu()
	// Other goroutines of the test binary run too: the sample may be a little above the burn.
	if s := got["self"]; s < burnt-0.05 || s > burnt+1 {
		t.Errorf("self: %.2f CPU seconds, want about %.2f", s, burnt)
	}
	if s := got[cpuBench]; s < burnt-0.05 {
		t.Errorf("bench client: %.2f CPU seconds, want about %.2f", s, burnt)
	}
	if _, ok := got["gone"]; ok {
		t.Errorf("an exited process was reported: %v", got)
	}
	for name, s := range got {
		if s < 0 {
			t.Errorf("%s: %.2f CPU seconds", name, s)
		}
	}
}

// TestParseStat reads a command name with spaces and parentheses, as /proc/<pid>/stat writes it,
// and adds the children's times only when asked.
func TestParseStat(t *testing.T) {
	line := "4242 (postgres: a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 20 10 20 0 1 0 100 0 0"
	comm, ticks, err := parseStat(line, false)
	if err != nil || comm != "postgres: a (b) c" || ticks != 10 {
		t.Errorf("parseStat: %q %d %v, want \"postgres: a (b) c\" 10", comm, ticks, err)
	}
	if _, ticks, _ := parseStat(line, true); ticks != 40 {
		t.Errorf("parseStat with children: %d ticks, want 40", ticks)
	}
	if _, _, err := parseStat("4242 (x) S 1", false); err == nil {
		t.Error("a short line parsed")
	}
}
