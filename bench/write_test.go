package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReportSplit: the report gives each split process its row, target and verdict, and the JSON
// carries both peaks.
func TestReportSplit(t *testing.T) {
	dir := t.TempDir()
	out, jsonOut := filepath.Join(dir, "benchmarks.md"), filepath.Join(dir, "results.json")
	rep := Report{
		Settings: Settings{Count: 40, Concurrency: 4, Accounts: 8},
		Results: []Result{
			{Target: "saga", Mode: ModeRandom, Concurrency: 4, PeakRSSMiB: map[string]int64{devProcess: 280}},
			splitResult(54, 151, 50, SplitTargetFor.Seconds(), 49.9),
		},
		Split: Binary{Path: "/tmp/transferd", From: "built here"},
	}
	if err := rep.Write(out, jsonOut); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| split | random | 50/s |",
		"api 54 MiB, worker 151 MiB",
		"| dev, split run | peak RSS of the API process (`transferd server`) | 54 MiB | < 150 MB at 50/s for 5 min: met |",
		"| dev, split run | peak RSS of the worker process (`transferd worker`) | 151 MiB | < 150 MB at 50/s for 5 min: **not met** |",
		"| dev | peak RSS of `transferd dev` | 280 MiB |",
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
	var got struct{ Results []Result }
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

// TestReportBinaryFrom: a binary given by path is named by it; one the bench built says so.
func TestReportBinaryFrom(t *testing.T) {
	for _, tc := range []struct {
		b    Binary
		want string
	}{
		{Binary{Path: "/opt/transferd"}, "`/opt/transferd`"},
		{Binary{Path: "/tmp/x/transferd", From: "built by the bench with `-tags nodev`, as the image's is"}, "built by the bench with `-tags nodev`, as the image's is"},
	} {
		if got := tc.b.from(); got != tc.want {
			t.Errorf("from(%+v): got %q, want %q", tc.b, got, tc.want)
		}
	}
}

// TestCheckWebhooks: the webhook run fails on a refused signature, a delivery failed or pending, or
// an event without its delivery, and passes when every event arrived.
func TestCheckWebhooks(t *testing.T) {
	good := WebhookFigures{Transfers: 10, Events: 20, Deliveries: 20, Delivered: 20, Attempts: 20, Received: 36}
	if err := checkWebhooks(&good); err != nil {
		t.Errorf("every event delivered: %v", err)
	}
	for name, mutate := range map[string]func(*WebhookFigures){
		"bad signature":     func(f *WebhookFigures) { f.BadSignatures = 1 },
		"failed":            func(f *WebhookFigures) { f.Failed, f.Delivered = 1, 19 },
		"pending":           func(f *WebhookFigures) { f.Pending, f.Delivered = 1, 19 },
		"event not queued":  func(f *WebhookFigures) { f.Deliveries, f.Delivered = 19, 19 },
		"delivered, unseen": func(f *WebhookFigures) { f.Received = 19 },
	} {
		f := good
		mutate(&f)
		if err := checkWebhooks(&f); err == nil {
			t.Errorf("%s: passed", name)
		}
	}
}
