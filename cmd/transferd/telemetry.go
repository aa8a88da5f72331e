package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.temporal.io/sdk/client"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
	"go.temporal.io/sdk/interceptor"

	"github.com/transferd/transferd/worker"
)

// telemetry is one process's metrics and tracing: a Prometheus registry with the Go runtime's, the
// process's and the Temporal SDK's series, and, when OTEL_EXPORTER_OTLP_ENDPOINT is set, OpenTelemetry
// tracing from HTTP requests through workflows and activities.
type telemetry struct {
	registry     *prometheus.Registry
	metrics      client.MetricsHandler
	interceptors []interceptor.ClientInterceptor
	tracing      bool
	closers      []func(context.Context) error
}

// newTelemetry sets up the process's telemetry; service names it in traces.
func newTelemetry(ctx context.Context, service string, log *slog.Logger) (*telemetry, error) {
	t := &telemetry{registry: prometheus.NewRegistry()}
	t.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	handler, closer := worker.NewMetricsHandler(t.registry, func(err error) {
		log.Warn("metric registration failed", "err", err)
	})
	t.metrics = handler
	t.closers = append(t.closers, func(context.Context) error { return closer.Close() })
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return t, nil
	}
	exporter, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	if err := t.enableTracing(service, sdktrace.WithBatcher(exporter)); err != nil {
		return nil, err
	}
	log.Info("tracing enabled", "exporter", "otlp/grpc")
	return t, nil
}

// enableTracing installs a tracer provider that exports through opt, the W3C propagators, and the
// Temporal SDK's tracing interceptor.
func (t *telemetry) enableTracing(service string, opt sdktrace.TracerProviderOption) error {
	name := os.Getenv("OTEL_SERVICE_NAME")
	if name == "" {
		name = service
	}
	tp := sdktrace.NewTracerProvider(opt, sdktrace.WithResource(resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(name))))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	tracer, err := temporalotel.NewTracingInterceptor(temporalotel.TracerOptions{Tracer: tp.Tracer("transferd")})
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	t.interceptors = append(t.interceptors, tracer)
	t.tracing = true
	t.closers = append(t.closers, tp.Shutdown)
	return nil
}

// clientOptions adds the telemetry to Temporal client options.
func (t *telemetry) clientOptions(o client.Options) client.Options {
	o.MetricsHandler = t.metrics
	o.Interceptors = append(o.Interceptors, t.interceptors...)
	return o
}

// wrapHTTP traces an HTTP handler when tracing is on; the API names each span after its route.
func (t *telemetry) wrapHTTP(h http.Handler) http.Handler {
	if !t.tracing {
		return h
	}
	return otelhttp.NewHandler(h, "http")
}

// serveMetrics serves the registry's /metrics on addr until ctx ends.
func (t *telemetry) serveMetrics(ctx context.Context, addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{}))
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	log.Info("metrics listening", "addr", addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("metrics server stopped", "err", err)
	}
}

// close flushes traces and stops the metrics reporter.
func (t *telemetry) close(ctx context.Context) {
	for _, c := range t.closers {
		_ = c(ctx)
	}
}
