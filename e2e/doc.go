// Package e2e holds the end-to-end tests of the transfer saga: a real Temporal server in-process
// (go.temporal.io/server/temporaltest), a real worker, the service, and the ledger on a real
// PostgreSQL database of the test's own. It has no code outside its tests.
package e2e
