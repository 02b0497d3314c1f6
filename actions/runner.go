package actions

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"syscall"
	"time"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	"k8s.io/utils/clock"
)

// DownloadCachedDependenciesFailed is Diego's failure reason when a cached
// dependency (or shared image layer) cannot be fetched (executor
// containerstore storenode.go).
const DownloadCachedDependenciesFailed = "failed to download cached artifacts"

// MaxResultBytes bounds a task's result file (BBS stores it in a column;
// the rep refuses larger results too).
const MaxResultBytes = 10 * 1024

// Config is how the runner runs: where its lines go, how it reaches the
// network and its timings. Zero durations take Diego's defaults.
type Config struct {
	Stdout, Stderr io.Writer
	// HTTPClient downloads and uploads (its TLS config carries the
	// optional client certificate for mTLS).
	HTTPClient *http.Client
	// UploadProxy is the unix socket of the pod's upload proxy (see
	// UploadProxy); "" uploads straight to the destinations with
	// HTTPClient.
	UploadProxy string
	// CacheDir keeps downloads with a cache key; "" disables caching.
	CacheDir string
	// TempDir holds downloads and upload payloads while they are handled.
	TempDir string
	// Env is the processes' base environment (the runner's own, without
	// its settings); the recipe's and each run action's come after it.
	Env []string
	// GracefulShutdownInterval is how long a cancelled process has between
	// SIGTERM and SIGKILL (rep default 10s).
	GracefulShutdownInterval time.Duration
	// HealthyInterval and UnhealthyInterval pace the monitor (rep
	// defaults 30s and 500ms).
	HealthyInterval   time.Duration
	UnhealthyInterval time.Duration
	// MemoryEvents is the cgroup v2 memory.events file whose oom_kill
	// counter tells an OOM-killed process ("" disables the check).
	MemoryEvents string
	// NofileExec is the command that runs ExecWithNofile, e.g. the iris
	// binary with `actions exec-with-nofile`; a run action with
	// resource_limits.nofile fails to start without it.
	NofileExec []string
	// RootFS is the container's root file system, whose etc/passwd and
	// etc/group resolve run actions' users ("" is "/").
	RootFS string
	// DemoteRootTo, when set, is the uid:gid a run action asking for root
	// runs as in a runner that runs as root (a pod built to switch users
	// where root processes are not allowed). See user.go.
	DemoteRootTo *syscall.Credential
	// OnHealthy is called when the monitor first passes.
	OnHealthy func()
	Clock     clock.Clock
	Logger    lager.Logger
}

func (c *Config) defaults() {
	if c.GracefulShutdownInterval == 0 {
		c.GracefulShutdownInterval = 10 * time.Second
	}
	if c.HealthyInterval == 0 {
		c.HealthyInterval = 30 * time.Second
	}
	if c.UnhealthyInterval == 0 {
		c.UnhealthyInterval = 500 * time.Millisecond
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.Logger == nil {
		c.Logger = lager.NewLogger("actions")
	}
	if c.HTTPClient == nil {
		c.HTTPClient = http.DefaultClient
	}
	if c.Stdout == nil {
		c.Stdout = io.Discard
	}
	if c.Stderr == nil {
		c.Stderr = io.Discard
	}
	if c.RootFS == "" {
		c.RootFS = "/"
	}
}

// Result is how a run ended, in BBS's terms.
type Result struct {
	Failed        bool   `json:"failed"`
	FailureReason string `json:"failure_reason"`
	// Result is the content of the recipe's result file after a success.
	Result string `json:"result"`
}

// Run fetches the recipe's cached dependencies and shared image layers,
// then runs setup (after the exclusive image layers' downloads) and the
// action, with the monitor beside it when there is one, until they end or
// ctx is cancelled. The failure reason is the failing step's error text,
// as the executor completes a container.
func Run(ctx context.Context, recipe *Recipe, cfg Config) Result {
	cfg.defaults()
	logger := cfg.Logger.Session("run")
	streamer := NewStreamer(cfg.Stdout, cfg.Stderr, recipe.LogSource)
	fetcher := NewFetcher(logger, cfg.HTTPClient, cfg.CacheDir, cfg.TempDir, cfg.Clock)

	// Image layers as BBS downgrades them for a cell: shared layers are
	// cached dependencies, exclusive ones parallel downloads before setup.
	layers := models.ImageLayers(recipe.ImageLayers)
	dependencies := append(append([]*models.CachedDependency{}, recipe.CachedDependencies...), layers.ToCachedDependencies()...)
	setup := layers.ToDownloadActions(recipe.LegacyDownloadUser, recipe.Setup)

	if err := fetchCachedDependencies(ctx, logger, fetcher, streamer, dependencies); err != nil {
		logger.Error("cached-dependencies-failed", err)
		return Result{Failed: true, FailureReason: DownloadCachedDependenciesFailed}
	}

	var uploadProxy *http.Client
	if cfg.UploadProxy != "" {
		uploadProxy = UploadProxyClient(cfg.UploadProxy)
	}
	builder := &treeBuilder{
		fetcher:      fetcher,
		client:       cfg.HTTPClient,
		uploadProxy:  uploadProxy,
		clock:        cfg.Clock,
		logger:       logger,
		baseEnv:      cfg.Env,
		recipeEnv:    convertEnv(recipe.EnvironmentVariables),
		users:        userResolver{root: cfg.RootFS, uid: os.Getuid(), demoteRoot: cfg.DemoteRootTo},
		tempDir:      cfg.TempDir,
		gracePeriod:  cfg.GracefulShutdownInterval,
		memoryEvents: cfg.MemoryEvents,
		nofileExec:   cfg.NofileExec,
	}
	step, err := buildSteps(builder, streamer, setup, recipe, cfg)
	if err != nil {
		return Result{Failed: true, FailureReason: err.Error()}
	}

	err = step.Run(ctx)
	if err != nil && err.Error() != "" {
		logger.Info("failed", lager.Data{"failure_reason": err.Error()})
		return Result{Failed: true, FailureReason: err.Error()}
	}
	if recipe.ResultFile == "" {
		return Result{}
	}
	result, err := readResult(recipe.ResultFile)
	if err != nil {
		logger.Error("failed-reading-result", err)
		return Result{Failed: true, FailureReason: "failed to read result file: " + err.Error()}
	}
	return Result{Result: result}
}

// buildSteps composes the container's steps as the executor's transformer
// does (StepsRunner): serial(setup, codependent(action, monitor)), where
// neither member's successful exit stops the other.
func buildSteps(b *treeBuilder, streamer Streamer, setup *models.Action, recipe *Recipe, cfg Config) (Step, error) {
	action, err := b.build(recipe.Action, streamer, false, false)
	if err != nil {
		return nil, fmt.Errorf("action: %w", err)
	}
	longLived := action
	if recipe.Monitor != nil {
		showMonitorOutput(recipe.Monitor)
		if _, err := b.build(recipe.Monitor, streamer, true, true); err != nil {
			return nil, fmt.Errorf("monitor: %w", err)
		}
		monitor := &monitorStep{
			newCheck: func() Step {
				// Built and checked above; each check is a fresh tree.
				check, _ := b.build(recipe.Monitor, streamer, true, true)
				return check
			},
			streamer:          streamer,
			clock:             cfg.Clock,
			startTimeout:      time.Duration(recipe.StartTimeoutMs) * time.Millisecond,
			healthyInterval:   cfg.HealthyInterval,
			unhealthyInterval: cfg.UnhealthyInterval,
			onHealthy:         cfg.OnHealthy,
		}
		longLived = &codependentStep{steps: []Step{action, monitor}}
	}
	if setup == nil {
		return longLived, nil
	}
	setupStep, err := b.build(setup, streamer, false, false)
	if err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	return &serialStep{steps: []Step{setupStep, longLived}}, nil
}

func readResult(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxResultBytes+1))
	if err != nil {
		return "", err
	}
	if len(data) > MaxResultBytes {
		return "", fmt.Errorf("larger than %d bytes", MaxResultBytes)
	}
	return string(data), nil
}

// fetchCachedDependencies fetches all at once; the first failure stops the
// others (executor containerstore dependencymanager.go). Their messages
// name the dependency and go to stdout under its log source.
func fetchCachedDependencies(ctx context.Context, logger lager.Logger, fetcher *Fetcher, streamer Streamer, deps []*models.CachedDependency) error {
	if len(deps) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan error, len(deps))
	for _, dep := range deps {
		go func() {
			out := streamer.WithSource(dep.LogSource)
			say := func(format string, args ...any) {
				if dep.Name != "" {
					out.Out(fmt.Sprintf(format, args...))
				}
			}
			say("Downloading %s...", dep.Name)
			err := fetchAndExtract(ctx, fetcher, dep.From, dep.To, dep.CacheKey, dep.ChecksumAlgorithm, dep.ChecksumValue, nil, func(size int64) {
				if size != 0 {
					say("Downloaded %s (%s)", dep.Name, byteSize(uint64(size)))
				} else {
					say("Downloaded %s", dep.Name)
				}
			})
			if err != nil {
				logger.Error("failed-fetching-cached-dependency", err, lager.Data{"cache_key": dep.CacheKey, "to": dep.To})
				say("Downloading %s failed", dep.Name)
			}
			results <- err
		}()
	}
	var first error
	for range deps {
		if err := <-results; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}
