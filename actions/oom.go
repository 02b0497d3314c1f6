package actions

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// DefaultMemoryEvents is cgroup v2's event counters of the container the
// runner is in (its own cgroup is the pod container's).
const DefaultMemoryEvents = "/sys/fs/cgroup/memory.events"

// oomKills reads the oom_kill counter of a cgroup v2 memory.events file; ok
// is false when there is none (cgroup v1, or not in a container).
func oomKills(path string) (uint64, bool) {
	if path == "" {
		return 0, false
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		if value, found := strings.CutPrefix(scanner.Text(), "oom_kill "); found {
			n, err := strconv.ParseUint(strings.TrimSpace(value), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
