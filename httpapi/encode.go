package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/agentmarket/agentmarket/market"
)

// encode writes v as the JSON body of a response with status.
func encode[T any](w http.ResponseWriter, status int, v T) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %T: %w", v, err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err = w.Write(append(b, '\n'))
	return err
}

// decode reads a request's JSON body into a T. The body must be
// application/json, hold exactly one JSON value, name only the fields T
// has, fit every number in its field, and hold no negative amount (a
// field whose name ends in _microcredits). An empty body decodes as T's
// zero value. Each failure is an Invalid (or Unsupported) market error
// with its own code.
func decode[T any](r *http.Request) (T, error) {
	var v T
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return v, readError(err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return v, nil
	}
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		return v, err
	}
	return decodeJSON[T](body)
}

// decodeJSON decodes one strict JSON value; see decode.
func decodeJSON[T any](body []byte) (T, error) {
	var v T
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return v, problem(market.Invalid, "trailing_data", "the body holds more than one JSON value")
	}
	if err := checkAmounts(reflect.ValueOf(&v).Elem(), ""); err != nil {
		return v, err
	}
	return v, nil
}

// checkContentType accepts application/json with any parameters.
func checkContentType(ct string) error {
	if ct == "" {
		return problem(market.Unsupported, "unsupported_media_type", "a request body must be sent as Content-Type: application/json")
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return problem(market.Unsupported, "unsupported_media_type", fmt.Sprintf("Content-Type %q is not supported; send application/json", truncate(ct, 64)))
	}
	return nil
}

// readError maps a failure to read the body.
func readError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return problem(market.TooLarge, "body_too_large", fmt.Sprintf("the request body exceeds %d bytes", mbe.Limit))
	}
	return market.E(market.Transient, market.Code("body_unreadable"), "the request body could not be read", err)
}

// jsonError turns an encoding/json failure into a precise Invalid error.
func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return problem(market.Invalid, "malformed_json", fmt.Sprintf("the body is not valid JSON at byte %d: %s", syn.Offset, syn.Error()))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return problem(market.Invalid, "malformed_json", "the body ends in the middle of a JSON value")
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "the body"
		}
		if lit, ok := strings.CutPrefix(typ.Value, "number "); ok && outOfRange(lit, typ.Type) {
			return problem(market.Invalid, "number_out_of_range", fmt.Sprintf("%s: %s does not fit in a %s", field, truncate(lit, 40), typ.Type))
		}
		return problem(market.Invalid, "invalid_field_type", fmt.Sprintf("%s: want %s, got %s", field, jsonTypeName(typ.Type), typ.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		return problem(market.Invalid, "unknown_field", fmt.Sprintf("the body has an unknown field %s", truncate(name, 80)))
	}
	return problem(market.Invalid, "invalid_field", truncate(err.Error(), 200))
}

// outOfRange reports whether a JSON number literal failed to decode into
// t because of its size rather than its form: an integral value too big
// for an integer field, or any value beyond a float64.
func outOfRange(lit string, t reflect.Type) bool {
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil {
		return errors.Is(err, strconv.ErrRange)
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return f == math.Trunc(f) && !strings.ContainsAny(lit, ".")
	}
	return false
}

func jsonTypeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return t.String()
}

// checkAmounts rejects a negative value in any integer field whose JSON
// name ends in _microcredits, however deeply it is nested.
func checkAmounts(v reflect.Value, path string) error {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			return checkAmounts(v.Elem(), path)
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return nil
		}
		for i := 0; i < v.Len(); i++ {
			if err := checkAmounts(v.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name := jsonName(f)
			if name == "-" {
				continue
			}
			p := name
			if path != "" && !f.Anonymous {
				p = path + "." + name
			} else if f.Anonymous {
				p = path
			}
			fv := v.Field(i)
			if strings.HasSuffix(name, "_microcredits") && fv.CanInt() && fv.Int() < 0 {
				return problem(market.Invalid, "negative_amount", fmt.Sprintf("%s must not be negative", p))
			}
			if err := checkAmounts(fv, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// jsonName returns a struct field's JSON name.
func jsonName(f reflect.StructField) string {
	tag := f.Tag.Get("json")
	name, _, _ := strings.Cut(tag, ",")
	if name == "" {
		return f.Name
	}
	return name
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
