package actions

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	"k8s.io/utils/clock"
)

// ExitTimeout is how long a killed process may take to be reaped before the
// step gives up on it (executor steps.ExitTimeout).
const ExitTimeout = time.Second

// runStep runs one process (executor steps/run_step.go). On cancel the
// process gets SIGTERM and, after the graceful shutdown interval, its
// process group SIGKILL. A non-zero exit is an emittable "<source>: Exited with status N";
// "Exit status N" is written to the step's stdout either way, unless
// suppress_log_output.
type runStep struct {
	model *models.RunAction
	// baseEnv is the container's environment, recipeEnv the recipe's
	// variables; the action's own come last.
	baseEnv, recipeEnv []string
	streamer           Streamer
	clock              clock.Clock
	gracePeriod        time.Duration
	suppressExit       bool
	logger             lager.Logger
	// users resolves the action's user (see user.go).
	users userResolver
	// memoryEvents is the container's cgroup memory.events: an OOM kill
	// while the process ran adds Diego's " (out of memory)" to its exit.
	memoryEvents string
	// nofileExec is the command that runs ExecWithNofile (the runner's
	// own binary); needed for resource_limits.nofile.
	nofileExec []string
}

func (s *runStep) Run(ctx context.Context) error {
	logger := s.logger.Session("run-step", lager.Data{"path": s.model.Path})
	if ctx.Err() != nil {
		logger.Info("cancelled-before-creating-process")
		return new(CancelledError)
	}
	// Garden resolves the user when it creates the process: an unknown
	// user fails the process's creation.
	identity, err := s.users.identityFor(s.model.User)
	if err != nil {
		return s.failedToCreate(logger, err)
	}
	if identity.notSwitched != "" {
		logger.Info("user-not-switched", lager.Data{"requested_user": s.model.User, "reason": identity.notSwitched})
	}
	if identity.credential != nil {
		logger.Info("switching-user", lager.Data{"user": s.model.User, "uid": identity.credential.Uid, "gid": identity.credential.Gid})
	}

	// A switched process's HOME and USER are its user's unless the recipe
	// or the action sets them (later entries win).
	env := make([]string, 0, len(s.baseEnv)+len(identity.env)+len(s.recipeEnv)+len(s.model.Env))
	env = append(append(append(append(env, s.baseEnv...), identity.env...), s.recipeEnv...), convertEnv(s.model.Env)...)
	path, err := lookPath(s.model.Path, env)
	if err != nil {
		return s.failedToCreate(logger, err)
	}
	cmd := exec.Command(s.model.Path, s.model.Args...)
	cmd.Path = path
	if nofile := s.nofile(); nofile != nil {
		if len(s.nofileExec) == 0 {
			return s.failedToCreate(logger, errors.New("resource_limits.nofile needs the runner's exec trampoline"))
		}
		// The limit must hold from the program's first instruction (a
		// JVM sizes itself by it), so a trampoline sets it and then
		// execs the program in place: same pid, same signals.
		cmd = exec.Command(s.nofileExec[0], append(append(append([]string{}, s.nofileExec[1:]...), strconv.FormatUint(*nofile, 10), path), s.model.Args...)...)
	}
	cmd.Env = env
	cmd.Dir = s.model.Dir
	if cmd.Dir == "" {
		cmd.Dir = workingDir(env)
	}
	// Its own process group, so a kill reaches what a shell wrapper
	// started and leaves nothing behind holding the log pipes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: identity.credential}
	// Bounds how long the output copy may outlive the process (a daemon it
	// forked keeps the pipe open).
	cmd.WaitDelay = ExitTimeout
	var stdout, stderr io.WriteCloser
	if !s.model.SuppressLogOutput {
		stdout, stderr = s.streamer.Stdout(), s.streamer.Stderr()
		cmd.Stdout, cmd.Stderr = stdout, stderr
	}

	oomBefore, _ := oomKills(s.memoryEvents)
	if err := cmd.Start(); err != nil {
		return s.failedToCreate(logger, err)
	}
	logger.Info("process-started", lager.Data{"pid": cmd.Process.Pid})

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	done := ctx.Done()
	var killSwitch, exitTimeout <-chan time.Time
	cancelled, killed := false, false
	for {
		select {
		case waitErr := <-exited:
			if stdout != nil {
				_ = stdout.Close()
				_ = stderr.Close()
			}
			status, err := exitStatus(cmd, waitErr)
			if err != nil {
				logger.Error("running-error", err)
				return err
			}
			logger.Info("process-exit", lager.Data{"exit_status": status, "cancelled": cancelled})
			oomAfter, _ := oomKills(s.memoryEvents)
			return s.exited(status, cancelled, killed, oomAfter > oomBefore)

		case <-done:
			logger.Debug("signalling-terminate")
			// SIGTERM to the process alone, as Garden does: the launcher
			// passes it on to the app, and wrappers decide for their children.
			signalProcess(logger, cmd.Process.Pid, syscall.SIGTERM)
			cancelled, done = true, nil
			timer := s.clock.NewTimer(s.gracePeriod)
			defer timer.Stop()
			killSwitch = timer.C()

		case <-killSwitch:
			logger.Info("graceful-shutdown-timeout-exceeded")
			// SIGKILL to the whole group, so nothing is left holding the
			// process's resources, as a destroyed container would.
			signalProcess(logger, -cmd.Process.Pid, syscall.SIGKILL)
			killed, killSwitch = true, nil
			timer := s.clock.NewTimer(ExitTimeout)
			defer timer.Stop()
			exitTimeout = timer.C()

		case <-exitTimeout:
			logger.Error("process-did-not-exit", nil, lager.Data{"timeout": ExitTimeout.String()})
			return new(ExitTimeoutError)
		}
	}
}

func (s *runStep) exited(status int, cancelled, killed, outOfMemory bool) error {
	var exitMessage, emittableMessage string
	if !s.suppressExit {
		exitMessage = fmt.Sprintf("Exit status %d", status)
		emittableMessage = fmt.Sprintf("%s: Exited with status %d", s.streamer.Source(), status)
	}
	if killed {
		exitMessage = fmt.Sprintf("%s (exceeded %s graceful shutdown interval)", exitMessage, s.gracePeriod)
	}
	if status != 0 && outOfMemory {
		exitMessage += " (out of memory)"
		emittableMessage += " (out of memory)"
	}
	s.writeToStdout(exitMessage)
	switch {
	case killed:
		return new(ExceededGracefulShutdownIntervalError)
	case cancelled:
		return new(CancelledError)
	case status != 0:
		return NewEmittableError(nil, "%s", emittableMessage)
	}
	return nil
}

// failedToCreate is Garden refusing to start the process: Diego writes
// "failed-creating-process: <err>" and fails with the raw error.
func (s *runStep) failedToCreate(logger lager.Logger, err error) error {
	logger.Error("failed-creating-process", err)
	s.writeToStdout("failed-creating-process: " + err.Error())
	return err
}

func (s *runStep) writeToStdout(msg string) {
	if msg != "" && !s.model.SuppressLogOutput {
		s.streamer.Out(msg)
	}
}

func (s *runStep) nofile() *uint64 {
	if s.model.ResourceLimits == nil {
		return nil
	}
	return s.model.ResourceLimits.GetNofilePtr()
}

// signalProcess signals pid (a negative pid is a process group).
func signalProcess(logger lager.Logger, pid int, sig syscall.Signal) {
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		logger.Error("signalling-failed", err, lager.Data{"signal": sig.String()})
	}
}

// exitStatus is the process's exit status as Garden reports it: a process
// ended by a signal has 128+signal, as a shell would show.
func exitStatus(cmd *exec.Cmd, waitErr error) (int, error) {
	state := cmd.ProcessState
	if state == nil {
		return 0, waitErr
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	var exitErr *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &exitErr) && !errors.Is(waitErr, exec.ErrWaitDelay) {
		return 0, waitErr
	}
	return state.ExitCode(), nil
}

func convertEnv(vars []*models.EnvironmentVariable) []string {
	out := make([]string, 0, len(vars))
	for _, v := range vars {
		out = append(out, v.Name+"="+v.Value)
	}
	return out
}

// envValue is the last value of name in env (later entries win, as for the
// process itself).
func envValue(env []string, name string) string {
	value := ""
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			value = v
		}
	}
	return value
}

// lookPath resolves a bare command name with the PATH the process will
// have, as Garden does inside the container, not the runner's own PATH.
func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	for _, dir := range filepath.SplitList(envValue(env, "PATH")) {
		if dir == "" {
			dir = "."
		}
		candidate := filepath.Join(dir, file)
		if info, err := os.Stat(candidate); err == nil && !info.IsDir() && info.Mode()&0o111 != 0 {
			return candidate, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", file)
}

// workingDir is where a process without `dir` starts: Garden starts it in
// the user's home directory.
func workingDir(env []string) string {
	if home := envValue(env, "HOME"); home != "" {
		if info, err := os.Stat(home); err == nil && info.IsDir() {
			return home
		}
	}
	return ""
}
