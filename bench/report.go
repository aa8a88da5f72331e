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

// writeWebhooks renders what events and deliveries cost: the saga's closed-loop run with an endpoint
// subscribed to every event (wh) beside the same run without (saga).
func writeWebhooks(w io.Writer, saga, wh Result) {
	f := wh.Webhooks
	per := func(n int64) float64 { return ratio(float64(n), float64(f.Transfers)) }
	fmt.Fprintf(w, "\n## Events and webhooks\n\n"+
		"Every transfer's status changes are recorded as events by the ledger in the statement that makes them, in every run above. "+
		"The `%s` run is the `saga` closed-loop run again (%s, %d transfers) with one admin's endpoint subscribed to every event, "+
		"on a receiver in the bench's process that verifies each delivery with the Standard Webhooks Go library and answers 204; "+
		"each delivery is a `WebhookDelivery` workflow on dev's Temporal server, run by the worker in dev's process. "+
		"The run ends when its transfers have ended; the bench then waits until no delivery of its events is pending (the drain).\n\n", webhooksTarget, load(wh), wh.Accepted)
	fmt.Fprintf(w, "| figure | without endpoint (`saga`) | with endpoint (`%s`) |\n|---|---:|---:|\n", webhooksTarget)
	fmt.Fprintf(w, "| completed per second | %.1f | %.1f |\n", saga.CompletedPerSec, wh.CompletedPerSec)
	fmt.Fprintf(w, "| final p50 / p99, ms | %.1f / %.1f | %.1f / %.1f |\n", saga.Final.P50, saga.Final.P99, wh.Final.P50, wh.Final.P99)
	cpuTotal := func(m map[string]float64) float64 {
		t := 0.0
		for _, v := range m {
			t += v
		}
		return t
	}
	for _, name := range slices.Sorted(maps.Keys(f.CPUPerTransfer)) {
		fmt.Fprintf(w, "| CPU ms per transfer, %s | %.2f | %.2f |\n", name, saga.CPUPerTransfer[name], f.CPUPerTransfer[name])
	}
	fmt.Fprintf(w, "| CPU ms per transfer, total | %.2f | %.2f |\n\n", cpuTotal(saga.CPUPerTransfer), cpuTotal(f.CPUPerTransfer))
	fmt.Fprintf(w, "The CPU of the run with an endpoint covers the drain of its deliveries as well.\n\n")
	fmt.Fprintf(w, "| deliveries of the run | value |\n|---|---:|\n")
	fmt.Fprintf(w, "| transfers accepted | %d |\n", f.Transfers)
	fmt.Fprintf(w, "| events recorded (per transfer) | %d (%.2f) |\n", f.Events, per(f.Events))
	fmt.Fprintf(w, "| deliveries (per transfer) | %d (%.2f) |\n", f.Deliveries, per(f.Deliveries))
	fmt.Fprintf(w, "| delivered / failed / pending | %d / %d / %d |\n", f.Delivered, f.Failed, f.Pending)
	fmt.Fprintf(w, "| attempts per delivery | %.2f |\n", ratio(float64(f.Attempts), float64(f.Deliveries)))
	fmt.Fprintf(w, "| distinct events verified by the receiver (its setup's deposits included) / duplicates / bad signatures | %d / %d / %d |\n", f.Received, f.Duplicates, f.BadSignatures)
	fmt.Fprintf(w, "| event recorded to 2xx recorded, p50 / p90 / p99 / max, ms | %.0f / %.0f / %.0f / %.0f |\n", f.Delivery.P50, f.Delivery.P90, f.Delivery.P99, f.Delivery.Max)
	fmt.Fprintf(w, "| drain after the last transfer ended, s | %.1f |\n", f.DrainSeconds)
}
