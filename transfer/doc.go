// Package transfer is the domain vocabulary of transferd: money amounts, currencies, transfer
// kinds and statuses, accounts, journal entries and the stable error codes that every layer speaks.
// It imports nothing of the project's and does no I/O.
package transfer
