package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The CPU a run reports besides its processes': every PostgreSQL process of the machine's server
// (the ledger's and, on a cluster, Temporal's persistence), and the bench's own client.
const (
	cpuPostgres = "postgres"
	cpuBench    = "bench client"
)

// clockTicks is the unit of /proc/<pid>/stat's times: USER_HZ, 100 on every Linux Go supports.
const clockTicks = 100

// sampleCPU returns a function that reports the CPU seconds (user and system) that each named
// process, all of PostgreSQL's processes together, and the bench's own process have used since
// sampleCPU was called. A process that is gone by then is left out. PostgreSQL forks a process per
// connection: its figure counts the living ones and, through the postmaster's children's times,
// those that exited.
func sampleCPU(pids map[string]int) func() map[string]float64 {
	read := func() map[string]float64 {
		out := map[string]float64{}
		for name, pid := range pids {
			if s, err := procCPU(pid, false); err == nil {
				out[name] = s
			}
		}
		if s, ok := postgresCPU(); ok {
			out[cpuPostgres] = s
		}
		if s, err := procCPU(os.Getpid(), false); err == nil {
			out[cpuBench] = s
		}
		return out
	}
	before := read()
	return func() map[string]float64 {
		after := read()
		for name, s := range after {
			b, ok := before[name]
			if !ok {
				delete(after, name)
				continue
			}
			after[name] = s - b
		}
		return after
	}
}

// procCPU reads a process's user and system time from /proc/<pid>/stat, in seconds, with its waited-
// for children's when children.
func procCPU(pid int, children bool) (float64, error) {
	_, ticks, err := readStat(pid, children)
	return float64(ticks) / clockTicks, err
}

// readStat returns a process's command name and its CPU time in clock ticks.
func readStat(pid int, children bool) (string, int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, err
	}
	comm, ticks, err := parseStat(string(b), children)
	if err != nil {
		return "", 0, fmt.Errorf("bench: /proc/%d/stat: %w", pid, err)
	}
	return comm, ticks, nil
}

// parseStat reads the command name and the CPU time in clock ticks from a /proc/<pid>/stat line.
func parseStat(s string, children bool) (string, int64, error) {
	// The command name is in parentheses and may hold spaces; the fields follow its last ')'.
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "", 0, errors.New("unexpected format")
	}
	comm := s[open+1 : end]
	f := strings.Fields(s[end+1:])
	// f[0] is the state (field 3): utime, stime, cutime and cstime are fields 14 to 17.
	if len(f) < 15 {
		return "", 0, errors.New("too few fields")
	}
	last := 13
	if children {
		last = 15
	}
	var ticks int64
	for i := 11; i < last; i++ {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return "", 0, err
		}
		ticks += n
	}
	return comm, ticks, nil
}

// postgresCPU is the CPU seconds of every process named postgres, their exited children's included.
func postgresCPU() (float64, bool) {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var ticks int64
	found := false
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		comm, t, err := readStat(pid, true)
		if err != nil || comm != "postgres" {
			continue
		}
		ticks += t
		found = true
	}
	return float64(ticks) / clockTicks, found
}
