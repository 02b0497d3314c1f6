//go:build !unix

package crilog

import (
	"errors"
	"io/fs"
)

func inodeOf(fs.FileInfo) (uint64, error) {
	return 0, errors.New("crilog needs inodes to tell rotated files apart; only unix systems have them")
}
