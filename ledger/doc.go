// Package ledger is the double-entry ledger on PostgreSQL, through GORM. It is the only package that
// imports gorm. It owns the schema (versioned SQL migrations embedded in the binary), the saga steps
// (each one short transaction keyed by transfer id and step, so running one twice has the effect of
// running it once), the reads behind the API with cursor pagination, and the audit of every invariant
// in the spec's ledger.md. Database errors leave this package as *transfer.Error for business outcomes
// and as wrapped errors for everything transient.
package ledger
