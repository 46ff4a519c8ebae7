package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
)

// errorBody is the spec's error response: a message and, in data, one
// entry per problem, each naming what was wrong (a parameter, an id, the
// credentials). Count is how many entries there are in all: data lists at
// most maxErrorData of them.
type errorBody struct {
	Error struct {
		Message string `json:"message"`
		Data    any    `json:"data"`
		Count   int    `json:"count,omitempty"`
	} `json:"error"`
}

// maxErrorData bounds the entries of an error's data: a notification of
// 10,000 wrong files was once answered with 3.4 MB.
const maxErrorData = 100

// writeError answers the spec's error shape. data, if a list, is cut to
// maxErrorData entries and counted; nil or empty, it is the message alone,
// so a client reading data[0] always finds the problem.
func writeError(w http.ResponseWriter, status int, message string, data any) {
	var body errorBody
	body.Error.Message = message
	body.Error.Data = data
	v := reflect.ValueOf(data)
	switch {
	case data == nil || (v.Kind() == reflect.Slice && v.Len() == 0):
		body.Error.Data = []string{message}
	case v.Kind() == reflect.Slice:
		body.Error.Count = v.Len()
		body.Error.Data = v.Slice(0, min(v.Len(), maxErrorData)).Interface()
	}
	writeJSON(w, status, body)
}

// invalid answers 422 with the spec's shape: a message and one entry per
// problem, each naming the parameter.
func invalid(w http.ResponseWriter, message string, problems []string) {
	writeError(w, http.StatusUnprocessableEntity, message, problems)
}

// readBody decodes a request's JSON body into dst, numbers as json.Number.
// A body over limit bytes answers 413; one that is not JSON, or holds a
// value of the wrong type, answers 422 under message, naming where, in the
// request's terms (never a Go type).
func readBody(w http.ResponseWriter, r *http.Request, limit int64, message string, dst any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.UseNumber()
	err := dec.Decode(dst)
	if err == nil {
		return true
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is over %d bytes", tooLarge.Limit),
			[]string{fmt.Sprintf("body: larger than the limit of %d bytes", tooLarge.Limit)})
		return false
	}
	invalid(w, message, []string{bodyProblem(err)})
	return false
}

// bodyProblem says what is wrong with a JSON body in the request's terms.
func bodyProblem(err error) string {
	var syntax *json.SyntaxError
	var wrongType *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return "body: empty; a JSON object is required"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "body: the JSON ends before it is complete"
	case errors.As(err, &syntax):
		return fmt.Sprintf("body: not valid JSON at byte %d: %s", syntax.Offset, syntax.Error())
	case errors.As(err, &wrongType):
		field := wrongType.Field
		if field == "" {
			field = "body"
		}
		return fmt.Sprintf("%s: a JSON %s where %s is expected", field, wrongType.Value, jsonKind(wrongType.Type))
	}
	return "body: not valid JSON"
}

// jsonKind names the JSON a Go type decodes from.
func jsonKind(t reflect.Type) string {
	if t == reflect.TypeFor[json.Number]() {
		return "a number"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	}
	return "an object"
}

// allowedMethods lists the methods the mux serves on r's path, for a 405:
// empty when no route has the path, which is a 404.
func allowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	return allow
}

// bearerToken returns the token of an Authorization header with the
// Bearer scheme, whose name is case-insensitive (RFC 9110, 11.1).
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}
