package models

// TaskRequest is the body of POST /tasks/{task_guid}.
type TaskRequest struct {
	GUID               string                `json:"guid"`
	Name               string                `json:"name"`
	AppGUID            string                `json:"app_guid"`
	AppName            string                `json:"app_name"`
	OrgGUID            string                `json:"org_guid"`
	OrgName            string                `json:"org_name"`
	SpaceGUID          string                `json:"space_guid"`
	SpaceName          string                `json:"space_name"`
	Namespace          string                `json:"namespace"`
	CompletionCallback string                `json:"completion_callback"`
	Environment        []EnvironmentVariable `json:"environment"`
	Lifecycle          Lifecycle             `json:"lifecycle"`
	// Command, when set, is what the task runs; otherwise the lifecycle's
	// command (docker) or start_command (buildpack).
	Command   string `json:"command"`
	MemoryMB  int64  `json:"memory_mb"`
	DiskMB    int64  `json:"disk_mb"`
	CPUWeight int64  `json:"cpu_weight"`
	// IsolationSegment is where the task runs ("": the shared nodes). CC's
	// OPI body carries none, so Iris fills it from the app's LRPs
	// (k8s.IsolationSegmentOfApp); a BBS task definition's placement tag.
	IsolationSegment string `json:"-"`
}

// EnvironmentVariable is one entry of CC's environment lists.
type EnvironmentVariable struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Task states Iris reports beside the guid CC reads.
const (
	TaskRunning   = "RUNNING"
	TaskSucceeded = "SUCCEEDED"
	TaskFailed    = "FAILED"
	TaskCancelled = "CANCELLED"
)

// TaskResponse is one task in GET /tasks and GET /tasks/{guid}.
type TaskResponse struct {
	GUID  string `json:"guid"`
	State string `json:"state,omitempty"`
}

// TaskCompletedRequest is the body Iris posts to a task's completion
// callback (CC: /internal/v4/tasks/{guid}/completed). FailureReason is
// always present, empty on success.
type TaskCompletedRequest struct {
	TaskGUID      string `json:"task_guid"`
	Failed        bool   `json:"failed"`
	FailureReason string `json:"failure_reason"`
}
