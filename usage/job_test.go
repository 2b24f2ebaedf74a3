package usage

import "testing"

// Real-shaped Responses API and Batch objects, as OpenAI's API reference
// shows them.
const (
	backgroundQueued = `{"id":"resp_68c1f2a6","object":"response","created_at":1741476542,"status":"queued","background":true,
		"error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":null,"model":"o3-2025-04-16","output":[],
		"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":"high","summary":null},"store":true,
		"temperature":1.0,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled",
		"usage":null,"user":null,"metadata":{}}`
	backgroundCompleted = `{"id":"resp_68c1f2a6","object":"response","created_at":1741476542,"status":"completed","background":true,
		"error":null,"incomplete_details":null,"model":"o3-2025-04-16",
		"output":[{"type":"reasoning","id":"rs_1","summary":[]},{"type":"message","id":"msg_1","status":"completed","role":"assistant",
		  "content":[{"type":"output_text","text":"In a peaceful grove beneath a silver moon...","annotations":[]}]}],
		"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":1187,
		  "output_tokens_details":{"reasoning_tokens":1024},"total_tokens":1223},"metadata":{}}`
	batchInProgress = `{"id":"batch_abc123","object":"batch","endpoint":"/v1/chat/completions","errors":null,"input_file_id":"file-abc123",
		"completion_window":"24h","status":"in_progress","output_file_id":null,"error_file_id":null,"created_at":1711471533,
		"in_progress_at":1711471538,"expires_at":1711557933,"finalizing_at":null,"completed_at":null,"failed_at":null,
		"expired_at":null,"cancelling_at":null,"cancelled_at":null,"request_counts":{"total":100,"completed":40,"failed":0},
		"metadata":{"customer_id":"user_123456789","batch_description":"Nightly eval job"}}`
	batchCompleted = `{"id":"batch_abc123","object":"batch","endpoint":"/v1/chat/completions","errors":null,"input_file_id":"file-abc123",
		"completion_window":"24h","status":"completed","output_file_id":"file-cvaTdG","error_file_id":"file-HOWS94",
		"created_at":1711471533,"in_progress_at":1711471538,"expires_at":1711557933,"finalizing_at":1711493133,
		"completed_at":1711493163,"failed_at":null,"expired_at":null,"cancelling_at":null,"cancelled_at":null,
		"request_counts":{"total":100,"completed":95,"failed":5},"model":"gpt-4o-mini-2024-07-18",
		"usage":{"input_tokens":1500,"input_tokens_details":{"cached_tokens":1024},"output_tokens":500,
		  "output_tokens_details":{"reasoning_tokens":0},"total_tokens":2000},
		"metadata":{"customer_id":"user_123456789","batch_description":"Nightly eval job"}}`
)

func TestParseJob(t *testing.T) {
	for _, tc := range []struct {
		name     string
		body     string
		want     Job
		wantOK   bool
		terminal bool
	}{
		{"background response queued", backgroundQueued,
			Job{ID: "resp_68c1f2a6", Object: "response", Status: "queued", Model: "o3-2025-04-16"}, true, false},
		{"background response completed", backgroundCompleted,
			Job{ID: "resp_68c1f2a6", Object: "response", Status: "completed", Model: "o3-2025-04-16",
				Usage: Usage{PromptTokens: 36, CompletionTokens: 1187, ReasoningTokens: 1024, TotalTokens: 1223}, HasUsage: true}, true, true},
		{"response in progress", `{"id":"resp_1","object":"response","status":"in_progress","usage":null}`,
			Job{ID: "resp_1", Object: "response", Status: "in_progress"}, true, false},
		{"response incomplete", `{"id":"resp_1","object":"response","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"usage":{"input_tokens":5,"output_tokens":100,"total_tokens":105}}`,
			Job{ID: "resp_1", Object: "response", Status: "incomplete", Usage: Usage{PromptTokens: 5, CompletionTokens: 100, TotalTokens: 105}, HasUsage: true}, true, true},
		{"response failed", `{"id":"resp_1","object":"response","status":"failed","error":{"code":"server_error","message":"x"},"usage":null}`,
			Job{ID: "resp_1", Object: "response", Status: "failed"}, true, true},
		{"response cancelled", `{"id":"resp_1","object":"response","status":"cancelled"}`,
			Job{ID: "resp_1", Object: "response", Status: "cancelled"}, true, true},
		{"batch in progress", batchInProgress,
			Job{ID: "batch_abc123", Object: "batch", Status: "in_progress"}, true, false},
		{"batch completed", batchCompleted,
			Job{ID: "batch_abc123", Object: "batch", Status: "completed", Model: "gpt-4o-mini-2024-07-18", OutputFileID: "file-cvaTdG", ErrorFileID: "file-HOWS94",
				Usage: Usage{PromptTokens: 1500, CachedTokens: 1024, CompletionTokens: 500, TotalTokens: 2000}, HasUsage: true}, true, true},
		{"batch finalizing", `{"id":"batch_1","object":"batch","status":"finalizing"}`, Job{ID: "batch_1", Object: "batch", Status: "finalizing"}, true, false},
		{"batch cancelling", `{"id":"batch_1","object":"batch","status":"cancelling"}`, Job{ID: "batch_1", Object: "batch", Status: "cancelling"}, true, false},
		{"batch expired", `{"id":"batch_1","object":"batch","status":"expired","output_file_id":"file-1"}`,
			Job{ID: "batch_1", Object: "batch", Status: "expired", OutputFileID: "file-1"}, true, true},
		{"batch failed", `{"id":"batch_1","object":"batch","status":"failed","errors":{"object":"list","data":[{"code":"invalid_json","line":1}]}}`,
			Job{ID: "batch_1", Object: "batch", Status: "failed"}, true, true},
		{"batch cancelled", `{"id":"batch_1","object":"batch","status":"cancelled"}`, Job{ID: "batch_1", Object: "batch", Status: "cancelled"}, true, true},
		{"response statuses are not batch statuses", `{"id":"resp_1","object":"response","status":"expired"}`,
			Job{ID: "resp_1", Object: "response", Status: "expired"}, true, false},
		{"no status", `{"id":"batch_1","object":"batch"}`, Job{ID: "batch_1", Object: "batch"}, true, false},
		{"escaped strings", `{"id":"resp_\u0031","object":"resp\u006fnse","status":"completed"}`,
			Job{ID: "resp_1", Object: "response", Status: "completed"}, true, true},
		{"invalid usage is no usage", `{"id":"resp_1","object":"response","status":"completed","usage":{"input_tokens":"5"}}`,
			Job{ID: "resp_1", Object: "response", Status: "completed"}, true, true},
		{"last key wins", `{"id":"x","id":"resp_2","object":"batch","object":"response","status":7,"status":"queued"}`,
			Job{ID: "resp_2", Object: "response", Status: "queued"}, true, false},

		{"not a job object", `{"id":"chatcmpl-1","object":"chat.completion","usage":{"prompt_tokens":1}}`, Job{}, false, false},
		{"response event", `{"type":"response.completed","response":{"id":"resp_1","object":"response","status":"completed"}}`, Job{}, false, false},
		{"no id", `{"object":"response","status":"queued"}`, Job{}, false, false},
		{"empty id", `{"id":"","object":"batch"}`, Job{}, false, false},
		{"id a number", `{"id":1,"object":"batch"}`, Job{}, false, false},
		{"status an object", `{"id":"b","object":"batch","status":{}}`, Job{}, false, false},
		{"output_file_id a number", `{"id":"b","object":"batch","output_file_id":5}`, Job{}, false, false},
		{"model an array", `{"id":"r","object":"response","model":["o3"]}`, Job{}, false, false},
		{"error body", `{"error":{"message":"No batch found with id 'batch_x'.","type":"invalid_request_error","param":null,"code":null}}`, Job{}, false, false},
		{"invalid JSON", `{"id":"b","object":"batch"`, Job{}, false, false},
		{"not an object", `[{"id":"b","object":"batch"}]`, Job{}, false, false},
		{"empty", ``, Job{}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseJob([]byte(tc.body))
			if ok != tc.wantOK || got != tc.want {
				t.Fatalf("ParseJob = %+v, %v; want %+v, %v", got, ok, tc.want, tc.wantOK)
			}
			if got.Terminal() != tc.terminal {
				t.Errorf("Terminal = %v, want %v", got.Terminal(), tc.terminal)
			}
		})
	}
}
