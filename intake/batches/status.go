package batches

import (
	"time"

	"github.com/flatfiler/flatfiler/intake/jobs"
	"github.com/flatfiler/flatfiler/stages"
)

// ErrorJSON is one entry of a batch's errors, as the spec's "Get Batch
// Status" prints it; the message ends with where in the batch it is.
type ErrorJSON struct {
	Context    string `json:"context"`
	Identifier string `json:"identifier"`
	Message    string `json:"message"`
}

// CallbackJSON is the callback's delivery, for operators and partners.
type CallbackJSON struct {
	State         string     `json:"state"`
	Attempts      int        `json:"attempts"`
	LastError     string     `json:"last_error,omitempty"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
}

// StatusJSON is the spec's "Get Batch Status" payload, and the callback's.
type StatusJSON struct {
	BatchID  string        `json:"batch_id"`
	Status   string        `json:"status"`
	Totals   stages.Totals `json:"totals"`
	Errors   []ErrorJSON   `json:"errors,omitempty"`
	Callback *CallbackJSON `json:"callback,omitempty"`
}

// status is the spec's batch status of a job: new, processing, success,
// partial-success or error.
func status(j jobs.Job) string {
	switch j.Status {
	case jobs.Queued:
		return "new"
	case jobs.Processing:
		return "processing"
	}
	return j.Status
}

// Status is a batch's status payload.
func Status(j jobs.Job) StatusJSON {
	out := StatusJSON{BatchID: j.ID, Status: status(j), Totals: j.Totals, Errors: []ErrorJSON{}}
	// A batch not applied at all, or waiting for a retry, says why first.
	if j.Message != "" {
		out.Errors = append(out.Errors, ErrorJSON{Context: "batch", Identifier: j.ID, Message: j.Message})
	}
	for _, r := range j.Errors {
		out.Errors = append(out.Errors, errorJSON(r))
	}
	if d := j.Batch.Delivery; d != nil {
		out.Callback = &CallbackJSON{State: d.State, Attempts: d.Attempts, LastError: d.LastError, NextAttemptAt: d.NextAttemptAt}
	} else if j.Batch.Callback != "" {
		out.Callback = &CallbackJSON{State: jobs.DeliveryPending}
	} else {
		out.Callback = &CallbackJSON{State: jobs.DeliveryNone}
	}
	return out
}

func errorJSON(r stages.Rejection) ErrorJSON {
	msg := r.Message
	if r.Path != "" {
		msg += " (" + r.Path + ")"
	}
	return ErrorJSON{Context: r.Context, Identifier: r.Identifier, Message: msg}
}
