package workload

// Instance states, as Diego names them.
const (
	InstanceUnclaimed = "UNCLAIMED"
	InstanceClaimed   = "CLAIMED"
	InstanceRunning   = "RUNNING"
	InstanceCrashed   = "CRASHED"
	InstanceUnknown   = "UNKNOWN"
)

// Instance is one running (or trying to run) copy of a DesiredLRP, as read
// back from Kubernetes: both fronts report it in their own wire form.
type Instance struct {
	ProcessGUID string
	Index       int32
	// InstanceGUID identifies this incarnation (the pod's uid).
	InstanceGUID string
	// CellID is where it was placed (the node); empty until scheduled.
	CellID string
	// Address is the instance's IP (the pod IP); Ports its container ports.
	Address string
	Ports   []int32
	State   string
	// Since is when the instance entered its state, in Unix nanoseconds.
	Since          int64
	CrashCount     int32
	CrashReason    string
	PlacementError string
	// Routable is true while the instance passes its readiness check.
	Routable bool
}

// Task is a one-off process (run-task or staging). It is a placeholder for
// the follow-up issue that moves tasks onto this model; the OPI task path
// still builds from its wire type.
type Task struct {
	TaskGUID string
}
