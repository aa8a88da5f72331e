package bench

import (
	"strings"
	"testing"
)

// splitResult is a split run's result as runSplit returns it, with the peaks given.
func splitResult(apiMiB, workerMiB int64, rate, duration, completedPerSec float64) Result {
	return Result{Target: "split", Mode: ModeRandom, Rate: rate, Duration: duration, Seconds: duration + 1,
		Completed: int64(completedPerSec * (duration + 1)), CompletedPerSec: completedPerSec,
		PeakRSSMiB: map[string]int64{splitAPI: apiMiB, splitWorker: workerMiB}}
}

// TestRSSVerdict covers each way the split run can stand against its target.
func TestRSSVerdict(t *testing.T) {
	full := SplitTargetFor.Seconds()
	tests := []struct {
		name string
		r    Result
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
		{"backlog", splitResult(60, 50, 50, full, 30), "not shown (under the limit, but 30.0/s sustained)"},
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
// the suite, so TestBenchQuick (cmd/transferd) fails when the split run breaks.
func TestCheckSplit(t *testing.T) {
	tests := []struct {
		name    string
		r       Result
		wantErr string
	}{
		{"both measured", splitResult(50, 40, 50, 3, 40), ""},
		{"no api", splitResult(0, 40, 50, 3, 40), "no peak RSS of the api process"},
		{"no worker", splitResult(50, 0, 50, 3, 40), "no peak RSS of the worker process"},
		{"nothing completed", splitResult(50, 40, 50, 3, 0), "completed no transfer"},
		{"no peaks at all", Result{Target: "split", Completed: 10}, "no peak RSS of the api process"},
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

// TestWithoutTemporalEnv: the split processes get the shell's environment without its Temporal
// connection.
func TestWithoutTemporalEnv(t *testing.T) {
	env := []string{"PATH=/bin", "TEMPORAL_ADDRESS=prod:7233", "TRANSFERD_TEMPORAL_API_KEY=k", "TRANSFERD_ADDR=:8080", "MY_TEMPORAL_X=1"}
	got := withoutTemporalEnv(env)
	want := []string{"PATH=/bin", "TRANSFERD_ADDR=:8080", "MY_TEMPORAL_X=1"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("withoutTemporalEnv: got %q, want %q", got, want)
	}
	if len(env) != 5 {
		t.Errorf("withoutTemporalEnv changed its argument: %q", env)
	}
}
