package devtemporal

import (
	"context"
	"log/slog"
	"sync/atomic"

	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
)

// slogLogger passes the Temporal server's warnings and errors to a slog.Logger; its chatter at
// debug and info level is dropped, so `transferd dev` stays readable, and so is everything while the
// server starts and stops (quiet), when its services complain about each other not being there.
type slogLogger struct {
	l     *slog.Logger
	quiet *atomic.Bool
}

var _ log.Logger = slogLogger{}

func (s slogLogger) log(level slog.Level, msg string, tags []tag.Tag) {
	if level < slog.LevelWarn || s.quiet.Load() || !s.l.Enabled(context.Background(), level) {
		return
	}
	attrs := make([]any, 0, 2*len(tags)+2)
	attrs = append(attrs, "component", "temporal")
	for _, t := range tags {
		attrs = append(attrs, t.Key(), t.Value())
	}
	s.l.Log(context.Background(), level, msg, attrs...)
}

func (s slogLogger) Debug(msg string, tags ...tag.Tag)  { s.log(slog.LevelDebug, msg, tags) }
func (s slogLogger) Info(msg string, tags ...tag.Tag)   { s.log(slog.LevelInfo, msg, tags) }
func (s slogLogger) Warn(msg string, tags ...tag.Tag)   { s.log(slog.LevelWarn, msg, tags) }
func (s slogLogger) Error(msg string, tags ...tag.Tag)  { s.log(slog.LevelError, msg, tags) }
func (s slogLogger) DPanic(msg string, tags ...tag.Tag) { s.log(slog.LevelError, msg, tags) }
func (s slogLogger) Panic(msg string, tags ...tag.Tag) {
	s.log(slog.LevelError, msg, tags)
	panic(msg)
}
func (s slogLogger) Fatal(msg string, tags ...tag.Tag) {
	s.log(slog.LevelError, msg, tags)
	panic(msg)
}

// noSDKLog silences the SDK client used for the readiness probe.
type noSDKLog struct{}

func (noSDKLog) Debug(string, ...any) {}
func (noSDKLog) Info(string, ...any)  {}
func (noSDKLog) Warn(string, ...any)  {}
func (noSDKLog) Error(string, ...any) {}
