// Package chaos holds the fault-injection suite: it runs a load of transfers through the real
// transferd binaries (temporal, server, two or more workers) over PostgreSQL, kills and restarts
// them (some right after a debit commits), cuts, slows and stalls their connections to PostgreSQL,
// freezes accounts while their transfers run, and cancels and terminates workflows through the
// Temporal API as an operator in the Web UI would; then it checks that every accepted transfer
// ended exactly once, that every workflow's result is its ledger row, and that every fault it
// scheduled happened and hit something. `make chaos` runs the full schedule; `make test` runs a
// small one. It has no code outside its tests.
package chaos
