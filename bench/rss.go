package bench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// sampleRSS returns a function that reports, per named process, its peak resident set in MiB so far:
// the kernel's VmHWM, which covers the whole life of the process.
func sampleRSS(pids map[string]int) func() map[string]int64 {
	return func() map[string]int64 {
		if len(pids) == 0 {
			return nil
		}
		out := map[string]int64{}
		for name, pid := range pids {
			if kib, err := peakRSSKiB(pid); err == nil {
				out[name] = kib / 1024
			}
		}
		return out
	}
}

// peakRSSKiB reads VmHWM from /proc/<pid>/status.
func peakRSSKiB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmHWM for process %d", pid)
}
