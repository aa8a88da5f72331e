package server

import (
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

// Limits on free-form fields, from the API contract.
const (
	maxLabels          = 32
	maxLabelKey        = 64
	maxLabelValue      = 256
	maxDescription     = 1000
	maxExternalID      = 255
	maxIdempotencyKey  = 255
	maxName            = 200
	maxEmail           = 254
	minPassword        = 8
	maxPasswordBytes   = 72 // bcrypt reads no further
	maxCancelReasonLen = 500
)

// parseID parses a required UUID field in canonical form.
func parseID(fe *fieldErrors, field, s string) uuid.UUID {
	if s == "" {
		fe.add(field, "is required")
		return uuid.Nil
	}
	return parseOptionalID(fe, field, s)
}

// parseOptionalID parses a UUID field that may be empty.
func parseOptionalID(fe *fieldErrors, field, s string) uuid.UUID {
	if s == "" {
		return uuid.Nil
	}
	id, err := uuid.Parse(s)
	// uuid.Parse also takes braces, urn: prefixes and no dashes; the API speaks canonical form only.
	if err != nil || len(s) != 36 || id == uuid.Nil {
		fe.add(field, "must be a UUID in canonical form, such as 3f2b8c1e-5d4a-4c2b-9e1f-0a1b2c3d4e5f")
		return uuid.Nil
	}
	return id
}

// parseCurrency parses a required ISO 4217 code. An unsupported but well-formed code is answered
// as 422 unsupported_currency by returning its error; a malformed one is a field error.
func parseCurrency(fe *fieldErrors, field, s string) (transfer.Currency, error) {
	if s == "" {
		fe.add(field, "is required")
		return "", nil
	}
	cur, err := transfer.ParseCurrency(s)
	if transfer.IsCode(err, transfer.CodeUnsupportedCurrency) {
		return "", err
	}
	if err != nil {
		fe.add(field, "must be a three-letter ISO 4217 code such as USD")
	}
	return cur, nil
}

// checkLabels validates a labels map against the contract's limits.
func checkLabels(fe *fieldErrors, field string, labels map[string]string) {
	if len(labels) > maxLabels {
		fe.add(field, "has more than 32 pairs")
	}
	for k, v := range labels {
		switch {
		case k == "":
			fe.add(field, "keys must not be empty")
		case utf8.RuneCountInString(k) > maxLabelKey:
			fe.add(field+"."+k, "key is longer than 64 characters")
		case utf8.RuneCountInString(v) > maxLabelValue:
			fe.add(field+"."+k, "value is longer than 256 characters")
		case strings.ContainsRune(k, 0) || strings.ContainsRune(v, 0):
			fe.add(field+"."+k, "must not contain NUL characters")
		}
	}
}

// checkText validates an optional free-text field.
func checkText(fe *fieldErrors, field, s string, max int) {
	if utf8.RuneCountInString(s) > max {
		fe.add(field, "is too long")
	}
	if strings.ContainsRune(s, 0) {
		fe.add(field, "must not contain NUL characters")
	}
}

// checkQueryText validates a free-text query parameter: query strings are not checked for UTF-8 or
// NUL by anything before this, and PostgreSQL text accepts neither.
func checkQueryText(fe *fieldErrors, field, s string, max int) {
	if !utf8.ValidString(s) {
		fe.add(field, "must be valid UTF-8")
		return
	}
	checkText(fe, field, s, max)
}
