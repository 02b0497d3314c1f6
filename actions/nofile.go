package actions

import (
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// ExecWithNofile is the runner's exec trampoline for run actions with
// resource_limits.nofile: args are the limit, the program's path and its
// arguments. It sets RLIMIT_NOFILE (soft and hard, as Garden does) on
// itself and replaces itself with the program, so the limit holds from the
// program's start. Without privilege the hard limit cannot be raised; both
// are then capped at the current hard limit. It returns only on failure.
func ExecWithNofile(args, env []string) error {
	if len(args) < 2 {
		return errors.New("usage: <nofile> <path> [args...]")
	}
	nofile, err := strconv.ParseUint(args[0], 10, 64)
	if err != nil {
		return fmt.Errorf("nofile %q: %w", args[0], err)
	}
	if err := setOwnNofile(nofile); err != nil {
		return fmt.Errorf("setting nofile %d: %w", nofile, err)
	}
	path := args[1]
	return unix.Exec(path, append([]string{path}, args[2:]...), env)
}

func setOwnNofile(nofile uint64) error {
	limit := unix.Rlimit{Cur: nofile, Max: nofile}
	err := unix.Setrlimit(unix.RLIMIT_NOFILE, &limit)
	if !errors.Is(err, unix.EPERM) {
		return err
	}
	var current unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &current); err != nil {
		return err
	}
	capped := min(nofile, current.Max)
	return unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: capped, Max: capped})
}
