package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/transferd/transferd/transfer"
)

// maxBodyBytes bounds a request body; a larger one is a 413.
const maxBodyBytes = 64 << 10

// decodeJSON decodes the request body into dst strictly: the content type must be JSON, unknown
// fields and trailing data are rejected, and the body must be valid UTF-8 of at most maxBodyBytes.
// It answers the problem itself and returns false when the body is not acceptable.
func decodeJSON(c *gin.Context, dst any) bool {
	if ct := c.GetHeader("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			abortWithProblem(c, codeUnsupportedMediaType, "send the body as application/json")
			return false
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			abortWithProblem(c, codePayloadTooLarge, fmt.Sprintf("the body must be at most %d bytes", maxBodyBytes))
			return false
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The server's read timeout cut a body that was arriving too slowly.
			abortWithProblem(c, codeRequestTimeout, "the body did not arrive in time")
			return false
		}
		abortWithProblem(c, codeMalformedJSON, "the body could not be read")
		return false
	}
	if err := strictUnmarshal(body, dst); err != nil {
		abortWithProblem(c, codeMalformedJSON, err.Error())
		return false
	}
	return true
}

// strictUnmarshal decodes one JSON value into dst, rejecting invalid UTF-8, unknown fields (matched
// exactly, not in encoding/json's case-insensitive way), duplicate keys, deep nesting and anything
// after the value. Its errors are safe to show to clients.
func strictUnmarshal(body []byte, dst any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return errors.New("the body is empty; send a JSON object")
	}
	if !utf8.Valid(body) {
		return errors.New("the body is not valid UTF-8")
	}
	if err := checkJSONShape(body, fieldNames(dst)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return describeJSONError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("the body has data after its JSON value")
	}
	return nil
}

// maxJSONDepth bounds the nesting of a body: no request of the API nests deeper than 3.
const maxJSONDepth = 8

// checkJSONShape walks every token of body once. It rejects a top-level key that is not exactly one
// of fields (when fields is not nil), a key repeated in any object (encoding/json would silently keep
// the last, so two readers of one body could disagree on the amount), and nesting deeper than
// maxJSONDepth. Syntax errors are left to the decoder that follows. NUL characters are each field's
// validation's to refuse, so that a NUL in an email is an invalid email, not malformed JSON.
func checkJSONShape(body []byte, fields map[string]bool) error {
	type frame struct {
		object    bool
		expectKey bool
		keys      map[string]bool
	}
	var stack []*frame
	value := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].expectKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if err != nil {
			// io.EOF at the end, or a syntax error that the decoder reports better.
			return nil
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				value()
				if len(stack) >= maxJSONDepth {
					return fmt.Errorf("the body nests deeper than %d levels", maxJSONDepth)
				}
				stack = append(stack, &frame{object: v == '{', expectKey: v == '{', keys: map[string]bool{}})
			default:
				stack = stack[:len(stack)-1]
			}
		case string:
			if top := len(stack) - 1; top >= 0 && stack[top].object && stack[top].expectKey {
				f := stack[top]
				if f.keys[v] {
					return fmt.Errorf("field %q appears more than once", v)
				}
				f.keys[v] = true
				f.expectKey = false
				if top == 0 && fields != nil && !fields[v] {
					return fmt.Errorf("unknown field %q", v)
				}
				continue
			}
			value()
		default:
			value()
		}
	}
}

// fieldNames returns the JSON names of the fields of the struct dst points to, or nil when dst is not
// a pointer to a struct.
func fieldNames(dst any) map[string]bool {
	t := reflect.TypeOf(dst)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil
	}
	names := map[string]bool{}
	for f := range t.Elem().Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		names[name] = true
	}
	return names
}

// describeJSONError turns a decoding error into a message for the client.
func describeJSONError(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Errorf("the body is not valid JSON (at byte %d)", syntax.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Errorf("field %q must be %s, not a JSON %s", typ.Field, jsonKind(typ.Type), typ.Value)
		}
		return fmt.Errorf("the body must be a JSON object, not a JSON %s", typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("the body ends in the middle of its JSON value")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return errors.New("the body is not valid JSON")
}

// jsonKind names the JSON kind that a Go type decodes from.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	}
	return "another type"
}

// jsonAmount is an amount as it arrives in JSON: it must be an integer literal from 1 to 2^53-1,
// so 1.5, "100", 1e3, 0, negatives and larger numbers are rejected. Nothing is parsed as a float.
type jsonAmount struct {
	value int64
	set   bool
	err   string
}

// UnmarshalJSON keeps the literal's verdict for validation, so that a bad amount is a field error
// rather than a decoding failure.
func (a *jsonAmount) UnmarshalJSON(b []byte) error {
	a.set = true
	s := string(b)
	switch {
	case s == "null":
		a.set = false
	case strings.HasPrefix(s, `"`):
		a.err = "must be a JSON integer, not a string"
	case strings.ContainsAny(s, ".eE"):
		a.err = "must be a whole number of minor units, without a fraction or exponent"
	default:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 || n > transfer.MaxAmount {
			a.err = fmt.Sprintf("must be an integer from 1 to %d", transfer.MaxAmount)
			break
		}
		a.value = n
	}
	return nil
}

// check records the amount's problem, if any, under field.
func (a jsonAmount) check(fe *fieldErrors, field string) transfer.Amount {
	switch {
	case !a.set:
		fe.add(field, "is required")
	case a.err != "":
		fe.add(field, a.err)
	}
	return transfer.Amount(a.value)
}
