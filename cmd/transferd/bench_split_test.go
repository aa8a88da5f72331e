//go:build !nodev

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transferd/transferd/bench"
	"github.com/transferd/transferd/ledger"
)

// splitResult is a split run's result as runSplit returns it, with the peaks given.
func splitResult(apiMiB, workerMiB int64, rate, duration, completedPerSec float64) bench.Result {
	return bench.Result{Target: "split", Mode: bench.ModeRandom, Rate: rate, Duration: duration, Seconds: duration + 1,
		Completed: int64(completedPerSec * (duration + 1)), CompletedPerSec: completedPerSec,
		PeakRSSMiB: map[string]int64{splitAPI: apiMiB, splitWorker: workerMiB}}
}

// TestRSSVerdict covers each way the split run can stand against its target.
func TestRSSVerdict(t *testing.T) {
	full := splitTargetFor.Seconds()
	tests := []struct {
		name string
		r    bench.Result
		want string
	}{
		{"met", splitResult(60, 50, 50, full, 49.9), "met"},
		// 142 MiB rounded up is 143 MiB, 149.9 MB; 143 MiB rounded up is 151.0 MB.
		{"just under", splitResult(142, 50, 50, full, 49.9), "met"},
		{"just over", splitResult(143, 50, 50, full, 49.9), "**not met**"},
		{"over whatever the run", splitResult(400, 50, 10, 3, 5), "**not met**"},
		{"not measured", splitResult(0, 50, 50, full, 49.9), "not measured"},
		{"short run", splitResult(60, 50, 50, 3, 49.9), "not shown (under the limit, but in a run of 3s at 50/s)"},
		{"slow rate", splitResult(60, 50, 10, full, 10), "not shown (under the limit, but in a run of 5m0s at 10/s)"},
		{"backlog", splitResult(60, 50, 50, full, 30), "not shown (under the limit, but 30.0/s completed)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rssVerdict(tt.r, splitAPI); got != tt.want {
				t.Errorf("rssVerdict: got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestCheckSplit: a split run that measured either process as nothing, or completed nothing, fails
// the suite, so TestBenchQuick fails when the split run breaks.
func TestCheckSplit(t *testing.T) {
	tests := []struct {
		name    string
		r       bench.Result
		wantErr string
	}{
		{"both measured", splitResult(50, 40, 50, 3, 40), ""},
		{"no api", splitResult(0, 40, 50, 3, 40), "no peak RSS of the api process"},
		{"no worker", splitResult(50, 0, 50, 3, 40), "no peak RSS of the worker process"},
		{"nothing completed", splitResult(50, 40, 50, 3, 0), "completed no transfer"},
		{"no peaks at all", bench.Result{Target: "split", Completed: 10}, "no peak RSS of the api process"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkSplit(tt.r)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("checkSplit: got %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("checkSplit: got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestBenchReportSplit: the report gives each split process its row, target and verdict, and the JSON
// carries both peaks.
func TestBenchReportSplit(t *testing.T) {
	dir := t.TempDir()
	out, jsonOut := filepath.Join(dir, "benchmarks.md"), filepath.Join(dir, "results.json")
	results := []bench.Result{
		{Target: "saga", Mode: bench.ModeRandom, Concurrency: 4, PeakRSSMiB: map[string]int64{devRSSName: 280}},
		splitResult(54, 151, 50, splitTargetFor.Seconds(), 49.9),
	}
	if err := writeBenchReport(out, jsonOut, results, ledger.AuditReport{}, nil, false, 40, 4, 8, "built here"); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| split | random | 50/s |",
		"api 54 MiB, worker 151 MiB",
		"| peak RSS of the API process (`transferd server`), split run | 54 MiB | < 150 MB at 50/s for 5 min: met |",
		"| peak RSS of the worker process (`transferd worker`), split run | 151 MiB | < 150 MB at 50/s for 5 min: **not met** |",
		"| peak RSS of `transferd dev` | 280 MiB |",
		"`transferd worker` (built here)",
		"**The split run**",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	raw, err := os.ReadFile(jsonOut)
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Results []bench.Result }
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if n := len(got.Results); n != 2 {
		t.Fatalf("JSON results: got %d, want 2", n)
	}
	if peaks := got.Results[1].PeakRSSMiB; peaks[splitAPI] != 54 || peaks[splitWorker] != 151 {
		t.Errorf("JSON split peaks: got %v, want api 54, worker 151", peaks)
	}
}
