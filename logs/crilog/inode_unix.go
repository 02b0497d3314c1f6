//go:build unix

package crilog

import (
	"fmt"
	"io/fs"
	"syscall"
)

// inodeOf is a file's identity: it survives the kubelet's rename on rotation
// and changes when the runtime opens a new file under the old name.
func inodeOf(fi fs.FileInfo) (uint64, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("no inode for %s", fi.Name())
	}
	return uint64(st.Ino), nil //nolint:unconvert // not uint64 on every unix
}
