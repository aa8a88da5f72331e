//go:build nodev

package main

import (
	"context"
	"errors"
	"io"
)

// runBench is missing from builds with the nodev tag: the suite runs its own transferd dev.
func runBench(context.Context, []string, io.Writer, io.Writer) error {
	return errors.New("this build has no bench command (it was built with -tags nodev)")
}
