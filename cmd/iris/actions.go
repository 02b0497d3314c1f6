package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"code.cloudfoundry.org/tlsconfig"

	"github.com/iris-cf/iris/actions"
)

// Exit codes of `iris actions`.
const (
	actionsExitFailed   = 1
	actionsExitBadInput = 2
)

// actionsNofileExec is the trampoline subcommand (`iris actions
// exec-with-nofile N path args...`).
const actionsNofileExec = "exec-with-nofile"

// actionsInstall is the subcommand that installs the runner into a pod
// (`iris actions install DESTINATION`).
const actionsInstall = "install"

// actionsHealthy is the readiness probe of recipe pods with a monitor
// (`iris actions healthy FILE`): it succeeds when the runner's healthy file
// exists. The runner checks it, not the stack image, which may have no
// shell or test(1).
const actionsHealthy = "healthy"

// actionsEnvPrefix marks the runner's own settings in its environment;
// they are not passed on to the processes it runs.
const actionsEnvPrefix = "IRIS_ACTIONS_"

// runActions is `iris actions`: it runs one recipe (a pod's setup, action
// and monitor) and exits 0 when it succeeded, 1 when it failed (the
// failure reason is the last, untagged line on stderr and in --report-file), 2 on bad
// input, and 128+signal when it was stopped by SIGTERM or SIGINT.
func runActions(args []string) int {
	// The trampoline of run actions with resource_limits.nofile: it
	// becomes the program (see actions.ExecWithNofile).
	if len(args) > 0 && args[0] == actionsNofileExec {
		err := actions.ExecWithNofile(args[1:], os.Environ())
		fmt.Fprintf(os.Stderr, "iris actions %s: %v\n", actionsNofileExec, err)
		return 127
	}
	// The init container of recipe pods: it copies this binary into the
	// pod's shared emptyDir (see k8s.AddRunner).
	if len(args) > 0 && args[0] == actionsInstall {
		if len(args) != 2 {
			fmt.Fprintf(os.Stderr, "usage: iris actions %s DESTINATION\n", actionsInstall)
			return actionsExitBadInput
		}
		if err := installSelf(args[1]); err != nil {
			fmt.Fprintf(os.Stderr, "iris actions %s: %v\n", actionsInstall, err)
			return actionsExitFailed
		}
		return 0
	}
	if len(args) > 0 && args[0] == actionsUploadProxy {
		return runUploadProxy(args[1:])
	}
	if len(args) > 0 && args[0] == actionsReportStaging {
		return reportStaging(args[1:])
	}
	if len(args) > 0 && args[0] == actionsHealthy {
		if len(args) != 2 {
			fmt.Fprintf(os.Stderr, "usage: iris actions %s FILE\n", actionsHealthy)
			return actionsExitBadInput
		}
		if _, err := os.Stat(args[1]); err != nil {
			fmt.Fprintf(os.Stderr, "not healthy yet: %v\n", err)
			return actionsExitFailed
		}
		return 0
	}
	flags := flag.NewFlagSet("iris actions", flag.ContinueOnError)
	recipePath := flags.String("recipe", os.Getenv(actionsEnvPrefix+"RECIPE_FILE"), "file holding the recipe (default $IRIS_ACTIONS_RECIPE_FILE; else the recipe itself is read from $IRIS_ACTIONS_RECIPE)")
	format := flags.String("format", envOr(actionsEnvPrefix+"FORMAT", actions.FormatJSON), "recipe format: json, desired-lrp-protobuf or task-definition-protobuf (default $IRIS_ACTIONS_FORMAT or json)")
	reportFile := flags.String("report-file", "", "write the outcome as JSON {failed, failure_reason, result} here (e.g. /dev/termination-log)")
	reportMax := flags.Int("report-max-bytes", actions.MaxTerminationMessageBytes, "keep the report within this many bytes (a larger result travels compressed as result_gzip, or fails the run); 0: no limit")
	healthyFile := flags.String("healthy-file", "", "create this file when the monitor first passes (for a readiness probe)")
	cacheDir := flags.String("cache-dir", "", "keep downloads with a cache key here (an emptyDir survives container restarts); empty disables caching")
	tempDir := flags.String("temp-dir", "", "directory for downloads and upload payloads in flight (default: the system's)")
	grace := flags.Duration("graceful-shutdown-interval", 10*time.Second, "time between SIGTERM and SIGKILL for a cancelled process")
	healthy := flags.Duration("healthy-interval", 30*time.Second, "monitor interval once healthy")
	unhealthy := flags.Duration("unhealthy-interval", 500*time.Millisecond, "monitor interval until healthy")
	caFile := flags.String("tls-ca-file", "", "CA bundle for HTTPS downloads and uploads (default: system roots)")
	certFile := flags.String("tls-cert-file", "", "client certificate for mTLS downloads and uploads")
	keyFile := flags.String("tls-key-file", "", "client key for mTLS downloads and uploads")
	uploadProxy := flags.String("upload-proxy", "", "unix socket of the pod's upload proxy (`iris actions upload-proxy`): uploads go through it, which presents the pod's upload identity; empty: uploads go straight to their destinations")
	memoryEvents := flags.String("memory-events-file", actions.DefaultMemoryEvents, "cgroup v2 memory.events of the container; an oom_kill during a process adds \" (out of memory)\" to its exit")
	exitZeroWhenReported := flags.Bool("exit-zero-when-reported", false, "exit 0 once the report is written, even when the recipe failed: the report is the outcome (a staging pod's next container sends it)")
	rootFS := flags.String("rootfs", "/", "root file system whose etc/passwd and etc/group resolve run actions' users, as Garden resolves them")
	demoteRoot := flags.String("demote-root-to", "", "UID:GID a run action asking for root runs as when the runner runs as root (a pod built to switch users where root is not allowed)")
	logLevel := flags.String("log-level", "info", "level of the runner's own logs (JSON on stderr, without the @iris[ prefix)")
	if err := flags.Parse(args); err != nil {
		return actionsExitBadInput
	}

	minLevel, err := lager.LogLevelFromString(*logLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "iris actions: log-level: %v\n", err)
		return actionsExitBadInput
	}
	logger := lager.NewLogger("iris-actions")
	logger.RegisterSink(lager.NewWriterSink(os.Stderr, minLevel))

	demoteRootTo, err := parseCredential(*demoteRoot)
	if err != nil {
		fmt.Fprintf(os.Stderr, "iris actions: demote-root-to: %v\n", err)
		return actionsExitBadInput
	}
	recipe, err := loadRecipe(*recipePath, *format)
	if err != nil {
		fmt.Fprintf(os.Stderr, "iris actions: %v\n", err)
		return actionsExitBadInput
	}
	client, err := actionsHTTPClient(*caFile, *certFile, *keyFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "iris actions: %v\n", err)
		return actionsExitBadInput
	}

	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "iris actions: %v\n", err)
		return actionsExitBadInput
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	var stoppedBy atomic.Int32
	go func() {
		if sig, ok := (<-signals).(syscall.Signal); ok {
			stoppedBy.Store(int32(sig))
			logger.Info("stopping", lager.Data{"signal": sig.String()})
			cancel()
		}
	}()

	var onHealthy func()
	if *healthyFile != "" {
		// The file may be left from this pod's previous container (it
		// lives on a volume): until this run's monitor passes, the
		// instance is not healthy.
		if err := os.Remove(*healthyFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(os.Stderr, "iris actions: removing the last healthy file: %v\n", err)
			return actionsExitBadInput
		}
		onHealthy = func() {
			if err := os.WriteFile(*healthyFile, nil, 0o644); err != nil {
				logger.Error("failed-writing-healthy-file", err)
			}
		}
	}
	result := actions.Run(ctx, recipe, actions.Config{
		Stdout:                   os.Stdout,
		Stderr:                   os.Stderr,
		HTTPClient:               client,
		UploadProxy:              *uploadProxy,
		CacheDir:                 *cacheDir,
		TempDir:                  *tempDir,
		Env:                      processEnv(os.Environ()),
		GracefulShutdownInterval: *grace,
		HealthyInterval:          *healthy,
		UnhealthyInterval:        *unhealthy,
		MemoryEvents:             *memoryEvents,
		NofileExec:               []string{self, "actions", actionsNofileExec},
		RootFS:                   *rootFS,
		DemoteRootTo:             demoteRootTo,
		OnHealthy:                onHealthy,
		Logger:                   logger,
	})
	signal.Stop(signals)

	reported := false
	if *reportFile != "" {
		report := actions.EncodeReport(result, *reportMax)
		if err := os.WriteFile(*reportFile, report, 0o644); err != nil {
			logger.Error("failed-writing-report", err)
		} else {
			reported = true
		}
		// A result too large to report fails the run: exit as failed too.
		if reported, err := actions.DecodeReport(report); err == nil && reported.Failed {
			result.Failed, result.FailureReason = true, reported.FailureReason
		}
	}
	if result.Failed {
		// Untagged: Diego writes no such line to the app's logs; this one is
		// for whoever reads the container's log.
		fmt.Fprintf(os.Stderr, "iris actions: failed: %s\n", result.FailureReason)
	}
	switch {
	case ctx.Err() != nil && stoppedBy.Load() != 0:
		return 128 + int(stoppedBy.Load())
	case result.Failed && reported && *exitZeroWhenReported:
		return 0
	case result.Failed:
		return actionsExitFailed
	}
	return 0
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// loadRecipe reads the recipe from a file (a mounted Secret), else from
// $IRIS_ACTIONS_RECIPE.
func loadRecipe(path, format string) (*actions.Recipe, error) {
	var data []byte
	switch {
	case path != "":
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("reading recipe: %w", err)
		}
	case os.Getenv(actionsEnvPrefix+"RECIPE") != "":
		data = []byte(os.Getenv(actionsEnvPrefix + "RECIPE"))
	default:
		return nil, errors.New("no recipe: pass --recipe or set IRIS_ACTIONS_RECIPE")
	}
	return actions.DecodeRecipe(data, format)
}

// parseCredential reads UID:GID ("" is none); neither may be 0.
func parseCredential(value string) (*syscall.Credential, error) {
	if value == "" {
		return nil, nil
	}
	uidText, gidText, ok := strings.Cut(value, ":")
	if !ok {
		return nil, fmt.Errorf("%q is not UID:GID", value)
	}
	uid, err := strconv.ParseUint(uidText, 10, 31)
	if err != nil || uid == 0 {
		return nil, fmt.Errorf("%q: the uid must be a number above 0", value)
	}
	gid, err := strconv.ParseUint(gidText, 10, 31)
	if err != nil || gid == 0 {
		return nil, fmt.Errorf("%q: the gid must be a number above 0", value)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// processEnv is the runner's environment without its own settings (the
// recipe may be among them).
func processEnv(environ []string) []string {
	env := make([]string, 0, len(environ))
	for _, kv := range environ {
		if !strings.HasPrefix(kv, actionsEnvPrefix) {
			env = append(env, kv)
		}
	}
	return env
}

// actionsHTTPClient trusts caFile (or the system roots) and presents the
// client certificate when one is given, as Diego's cells do towards the
// file server, blobstore and cc-uploader.
func actionsHTTPClient(caFile, certFile, keyFile string) (*http.Client, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("--tls-cert-file and --tls-key-file go together")
	}
	var tlsConfig *tls.Config
	if caFile != "" || certFile != "" {
		var identity []tlsconfig.TLSOption
		if certFile != "" {
			identity = append(identity, tlsconfig.WithIdentityFromFile(certFile, keyFile))
		}
		var authority []tlsconfig.ClientOption
		if caFile != "" {
			authority = append(authority, tlsconfig.WithAuthorityFromFile(caFile))
		}
		var err error
		tlsConfig, err = tlsconfig.Build(append([]tlsconfig.TLSOption{tlsconfig.WithInternalServiceDefaults()}, identity...)...).Client(authority...)
		if err != nil {
			return nil, fmt.Errorf("TLS config: %w", err)
		}
	}
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		TLSClientConfig:     tlsConfig,
	}
	return &http.Client{Transport: transport}, nil
}

// installSelf copies the running binary to destination, executable by
// anyone (the app container may run as another user than the init
// container). It writes a temporary file and renames it, so a restarted
// init container never leaves a half-written runner behind.
func installSelf(destination string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding own binary: %w", err)
	}
	src, err := os.Open(self)
	if err != nil {
		return fmt.Errorf("opening own binary: %w", err)
	}
	defer src.Close()
	tmp, err := os.CreateTemp(filepath.Dir(destination), ".iris-install-*")
	if err != nil {
		return fmt.Errorf("creating runner: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, a no-op
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return fmt.Errorf("copying runner: %w", err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return fmt.Errorf("making runner executable: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing runner: %w", err)
	}
	if err := os.Rename(tmp.Name(), destination); err != nil {
		return fmt.Errorf("installing runner: %w", err)
	}
	return nil
}
