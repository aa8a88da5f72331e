//go:build nodev

package main

import (
	"context"
	"errors"
	"io"
)

// runDev is missing from builds with the nodev tag, such as the container image: they carry no
// embedded Temporal server or Web UI.
func runDev(context.Context, []string, io.Writer, io.Writer) error {
	return errors.New("this build has no dev command (it was built with -tags nodev); use server and worker against a Temporal cluster")
}

// runTemporal is missing from nodev builds for the same reason.
func runTemporal(context.Context, []string, io.Writer, io.Writer) error {
	return errors.New("this build has no temporal command (it was built with -tags nodev); run a Temporal cluster or the temporal CLI's dev server")
}
