package models

// AppCrashedRequest is the body of CC's
// POST /internal/v4/apps/{process_guid}/crashed.
type AppCrashedRequest struct {
	Instance   string `json:"instance"`
	Index      int    `json:"index"`
	CellID     string `json:"cell_id"`
	Reason     string `json:"reason"`
	ExitStatus int    `json:"exit_status"`
	// ExitDescription must never be empty: CC fails with 500 on nil.
	ExitDescription string `json:"exit_description"`
	CrashCount      int    `json:"crash_count"`
	// CrashTimestamp is in Unix nanoseconds, as Diego's tps sends it.
	CrashTimestamp int64 `json:"crash_timestamp"`
}
