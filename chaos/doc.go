// Package chaos holds the fault-injection suite: it runs a load of transfers through the real
// transferd binaries (temporal, server, two or more workers) over PostgreSQL, kills and restarts
// them, cuts and slows their connections to PostgreSQL, and then checks that every accepted
// transfer ended exactly once. `make chaos` runs the full schedule; `make test` runs a small one.
// It has no code outside its tests.
package chaos
