package worker

import (
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/uber-go/tally/v4"
	tallyprom "github.com/uber-go/tally/v4/prometheus"
	"go.temporal.io/sdk/client"
	sdktally "go.temporal.io/sdk/contrib/tally"
)

// NewMetricsHandler returns a Temporal SDK metrics handler that reports to reg in the Prometheus
// format: the SDK's own series (temporal_workflow_completed, temporal_activity_execution_latency,
// ...) and the saga's (transferd_transfers_finished_total, transferd_saga_step_duration_seconds,
// transferd_compensations_total). Give it to client.Options.MetricsHandler; close the closer at exit.
func NewMetricsHandler(reg prometheus.Registerer, onError func(error)) (client.MetricsHandler, io.Closer) {
	reporter := tallyprom.NewReporter(tallyprom.Options{
		Registerer:              reg,
		DefaultTimerType:        tallyprom.HistogramTimerType,
		DefaultHistogramBuckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		OnRegisterError:         onError,
	})
	scope, closer := tally.NewRootScope(tally.ScopeOptions{
		CachedReporter:  reporter,
		Separator:       tallyprom.DefaultSeparator,
		SanitizeOptions: &tallyprom.DefaultSanitizerOpts,
	}, time.Second)
	return sdktally.NewMetricsHandler(scope), closer
}
