package bench

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// WriteTable prints results as an aligned table.
func WriteTable(w io.Writer, results []Result) {
	fmt.Fprintf(w, "%-18s %-6s %-9s %6s %9s %10s %10s %8s %8s %8s %8s %8s %8s %8s  %s\n",
		"server", "target", "mode", "load", "completed", "accepted/s", "complete/s",
		"acc p50", "acc p99", "fin p50", "fin p90", "fin p99", "fin max", "peakRSS", "errors")
	for _, r := range results {
		fmt.Fprintf(w, "%-18s %-6s %-9s %6s %9d %10.1f %10.1f %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f %8s  %s\n",
			server(r), r.Target, r.Mode, load(r), r.Completed, r.AcceptedPerSec, r.CompletedPerSec,
			r.Accept.P50, r.Accept.P99, r.Final.P50, r.Final.P90, r.Final.P99, r.Final.Max, rss(r), errorsText(r))
	}
}

// WriteMarkdown renders results as a Markdown table, latencies in milliseconds.
func WriteMarkdown(w io.Writer, results []Result) {
	fmt.Fprintln(w, "| server | target | mode | load | completed | accepted/s | completed/s | accept p50 | accept p90 | accept p99 | accept max | final p50 | final p90 | final p99 | final max | peak RSS | errors |")
	fmt.Fprintln(w, "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
	for _, r := range results {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %s | %s |\n",
			server(r), r.Target, r.Mode, load(r), r.Completed, r.AcceptedPerSec, r.CompletedPerSec,
			r.Accept.P50, r.Accept.P90, r.Accept.P99, r.Accept.Max, r.Final.P50, r.Final.P90, r.Final.P99, r.Final.Max,
			rss(r), errorsText(r))
	}
}

// WriteCPUMarkdown renders the CPU milliseconds per transfer of each process of results, a row per
// result and a column per process.
func WriteCPUMarkdown(w io.Writer, results []Result) {
	names := map[string]bool{}
	for _, r := range results {
		for name := range r.CPUPerTransfer {
			names[name] = true
		}
	}
	cols := slices.Sorted(maps.Keys(names))
	fmt.Fprintf(w, "| server | target | load | ended |")
	for _, c := range cols {
		fmt.Fprintf(w, " %s |", c)
	}
	fmt.Fprintf(w, " total |\n|---|---|---|---:|%s---:|\n", strings.Repeat("---:|", len(cols)))
	for _, r := range results {
		fmt.Fprintf(w, "| %s | %s | %s | %d |", server(r), r.Target, load(r), r.Completed+r.Failed)
		total := 0.0
		for _, c := range cols {
			if v, ok := r.CPUPerTransfer[c]; ok {
				fmt.Fprintf(w, " %.2f |", v)
				total += v
			} else {
				fmt.Fprintf(w, " - |")
			}
		}
		fmt.Fprintf(w, " %.2f |\n", total)
	}
}

// WriteLedgerMarkdown renders the ledger's view of the results that have one.
func WriteLedgerMarkdown(w io.Writer, results []Result) {
	fmt.Fprintln(w, "| server | target | mode | load | accepted | ended | completed | ended in run | ended in run/s | p50 | p90 | p99 | max |")
	fmt.Fprintln(w, "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		l := r.Ledger
		if l == nil {
			continue
		}
		inRun, perSec := "-", "-"
		if r.Duration > 0 {
			inRun, perSec = fmt.Sprint(l.InRun), fmt.Sprintf("%.1f", l.InRunPerSec)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %d | %d | %d | %s | %s | %.1f | %.1f | %.1f | %.1f |\n", server(r), r.Target, r.Mode, load(r),
			r.Accepted, l.Ended, l.Completed, inRun, perSec, l.Latency.P50, l.Latency.P90, l.Latency.P99, l.Latency.Max)
	}
}

// server names the server and worker processes a result ran on.
func server(r Result) string {
	s := cmp.Or(r.Server, ServerDev)
	switch r.Workers {
	case 0:
		return s
	case 1:
		return s + ", 1 worker"
	}
	return fmt.Sprintf("%s, %d workers", s, r.Workers)
}

func load(r Result) string {
	if r.Rate > 0 {
		return fmt.Sprintf("%.0f/s", r.Rate)
	}
	return fmt.Sprintf("c=%d", r.Concurrency)
}

func rss(r Result) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(r.PeakRSSMiB)) {
		parts = append(parts, fmt.Sprintf("%s %d MiB", name, r.PeakRSSMiB[name]))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func errorsText(r Result) string {
	if len(r.Errors) == 0 {
		return "none"
	}
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(r.Errors)) {
		parts = append(parts, fmt.Sprintf("%s %d", code, r.Errors[code]))
	}
	return strings.Join(parts, ", ")
}
