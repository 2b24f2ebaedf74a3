package usage

import "bytes"

// Job is what a Responses API response object or a Batch object says about
// work that may finish after its HTTP response: a background response
// ("background": true) or a batch. The gateway reads it when the work is
// created and each time it polls, and settles the work's cost once
// [Job.Terminal] reports it done, from OpenAI's own record: the response's
// usage, or the batch's output file ([ReadBatchOutput]).
type Job struct {
	// ID is the object's "id" ("resp_…", "batch_…"); never empty.
	ID string
	// Object is the object's "object": "response" or "batch".
	Object string
	// Status is the object's "status", "" if absent: for a response one of
	// queued, in_progress, completed, failed, cancelled, incomplete; for a
	// batch one of validating, in_progress, finalizing, completed, failed,
	// expired, cancelling, cancelled.
	Status string
	// Model is the object's "model", "" if absent: the model snapshot that
	// served a response ("gpt-4o-2024-08-06"), or the model of a batch when
	// OpenAI reports one.
	Model string
	// OutputFileID is a batch's "output_file_id", "" until it has one: the
	// JSONL file of its successful requests.
	OutputFileID string
	// ErrorFileID is a batch's "error_file_id", "" unless it has one: the
	// JSONL file of its failed requests, which cost nothing.
	ErrorFileID string
	// Usage is the object's "usage" when HasUsage: a finished response's
	// token usage; for a batch, the total over its requests that newer
	// batches carry (the output file breaks it down per model).
	Usage Usage
	// HasUsage reports whether the object carried a valid usage object (see
	// [ParseUsage] for what that is).
	HasUsage bool
}

// ParseJob reads a Responses API response object (the body of a create
// request with "background": true, of a retrieve or cancel request) or a
// Batch object (create, retrieve, cancel). ok is false when the body is not
// valid JSON, not an object, its "object" is neither "response" nor "batch",
// its "id" is not a non-empty string, or another string member that Job holds
// is neither a string nor null. A usage object that is not valid leaves
// HasUsage false without failing the job. Keys match case-sensitively; a
// repeated key takes its last value.
func ParseJob(body []byte) (Job, bool) {
	if !validJSON(body) {
		return Job{}, false
	}
	r := reader{b: body}
	if !r.openObject() {
		return Job{}, false
	}
	var j Job
	var usage usageResult
	strs := [...]struct {
		key string
		dst *string
	}{
		{"id", &j.ID},
		{"object", &j.Object},
		{"status", &j.Status},
		{"model", &j.Model},
		{"output_file_id", &j.OutputFileID},
		{"error_file_id", &j.ErrorFileID},
	}
	var bad [len(strs)]bool // each string member as its last occurrence left it
	for key, more := r.nextKey(); more; key, more = r.nextKey() {
		if string(key) == "usage" {
			usage = readUsageValue(&r)
			continue
		}
		k := 0
		for k < len(strs) && strs[k].key != string(key) {
			k++
		}
		if k == len(strs) {
			r.skip()
			continue
		}
		*strs[k].dst, bad[k] = jobString(&r)
	}
	if r.err || bad != [len(strs)]bool{} || j.ID == "" || j.Object != "response" && j.Object != "batch" {
		return Job{}, false
	}
	j.Usage, j.HasUsage = usage.u, usage.ok
	return j, true
}

// jobString reads a string in full, or null as ""; bad is true for any other
// value, which is skipped.
func jobString(r *reader) (s string, bad bool) {
	if r.null() {
		return "", false
	}
	if r.peek() != '"' {
		r.skip()
		return "", true
	}
	start := r.i
	r.skipString()
	if r.err {
		return "", true
	}
	if raw := r.b[start+1 : r.i-1]; bytes.IndexByte(raw, '\\') < 0 {
		return string(raw), false
	}
	b, _ := (&reader{b: r.b, i: start}).str(nil, r.i-start)
	return string(b), false
}

// Terminal reports whether the job's work is over and its cost can be
// settled: a response that is completed, failed, cancelled or incomplete, or
// a batch that is completed, failed, expired or cancelled. A batch that
// expired or was cancelled may still have an output file with the requests
// it finished, which OpenAI bills.
func (j Job) Terminal() bool {
	switch j.Object {
	case "response":
		switch j.Status {
		case "completed", "failed", "cancelled", "incomplete":
			return true
		}
	case "batch":
		switch j.Status {
		case "completed", "failed", "expired", "cancelled":
			return true
		}
	}
	return false
}
