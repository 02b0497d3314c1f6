// Package logagent is the node agent (`iris log-agent`, a DaemonSet): it
// follows the kubelet's CRI log files of Iris's app, task and staging pods
// on its node and ships every line to Loggregator, resuming after a restart
// exactly where it stopped.
package logagent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"code.cloudfoundry.org/go-loggregator/v9/rpc/loggregator_v2"
	"code.cloudfoundry.org/lager/v3"
	"k8s.io/apimachinery/pkg/types"

	"github.com/iris-cf/iris/logs"
	"github.com/iris-cf/iris/logs/crilog"
)

// Emitter takes envelopes without blocking (logs.Sender).
type Emitter interface {
	Emit(envelopes ...*loggregator_v2.Envelope)
}

// SourceLookup resolves a pod UID to its log source (PodSources).
type SourceLookup interface {
	Lookup(uid types.UID) (logs.Source, bool)
	Prune(now time.Time)
}

// Config of the agent.
type Config struct {
	// PodLogDir is the kubelet's pod log directory (/var/log/pods).
	PodLogDir string
	// CheckpointFile keeps read positions across restarts; it must be on
	// storage that outlives the agent's pod (a hostPath).
	CheckpointFile string
	// Namespaces whose pods are followed.
	Namespaces []string
	// ScanInterval is how often new log files are looked for; the same
	// interval saves positions.
	ScanInterval time.Duration
	Follower     crilog.FollowerConfig
}

// Agent follows log files and ships their lines. It is an ifrit runner.
type Agent struct {
	logger  lager.Logger
	cfg     Config
	sources SourceLookup
	emitter Emitter

	checkpoints *crilog.Checkpoints
	wg          sync.WaitGroup
	mu          sync.Mutex
	following   map[string]context.CancelFunc
	// limits are the log rate limits of the followed pods, by pod UID:
	// one per instance, shared by its files (containers and restarts).
	limits map[types.UID]*logs.RateLimit
}

// New returns an agent; Run starts it.
func New(logger lager.Logger, cfg Config, sources SourceLookup, emitter Emitter) *Agent {
	if cfg.ScanInterval <= 0 {
		cfg.ScanInterval = time.Second
	}
	return &Agent{
		logger:    logger.Session("log-agent"),
		cfg:       cfg,
		sources:   sources,
		emitter:   emitter,
		following: map[string]context.CancelFunc{},
		limits:    map[types.UID]*logs.RateLimit{},
	}
}

// Run follows files until signalled, then stops every follower and saves
// the positions of the lines it handed on.
func (a *Agent) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	checkpoints, err := crilog.OpenCheckpoints(a.cfg.CheckpointFile)
	if err != nil {
		return fmt.Errorf("opening log positions: %w", err)
	}
	a.checkpoints = checkpoints
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	a.scan(ctx)
	close(ready)
	ticker := time.NewTicker(a.cfg.ScanInterval)
	defer ticker.Stop()
	for {
		select {
		case <-signals:
			cancel()
			a.wg.Wait()
			if err := a.checkpoints.Save(); err != nil {
				return fmt.Errorf("saving log positions: %w", err)
			}
			a.logger.Info("stopped")
			return nil
		case now := <-ticker.C:
			a.scan(ctx)
			a.sources.Prune(now)
			a.pruneCheckpoints()
			a.pruneLimits()
			if err := a.checkpoints.Save(); err != nil {
				a.logger.Error("saving-positions-failed", err)
			}
		}
	}
}

// scan starts a follower for every log file of a known pod that is not
// followed yet. Directories are <namespace>_<pod name>_<pod uid>; neither
// namespaces nor pod names may contain '_'.
func (a *Agent) scan(ctx context.Context) {
	podDirs, err := os.ReadDir(a.cfg.PodLogDir)
	if err != nil {
		a.logger.Error("reading-pod-log-dir-failed", err, lager.Data{"dir": a.cfg.PodLogDir})
		return
	}
	for _, podDir := range podDirs {
		parts := strings.SplitN(podDir.Name(), "_", 3)
		if !podDir.IsDir() || len(parts) != 3 || !slices.Contains(a.cfg.Namespaces, parts[0]) {
			continue
		}
		// Unknown pods are not Iris's or not in the cache yet; looked at
		// again on the next scan.
		uid := types.UID(parts[2])
		src, ok := a.sources.Lookup(uid)
		if !ok {
			continue
		}
		files, err := filepath.Glob(filepath.Join(a.cfg.PodLogDir, podDir.Name(), "*", "*.log"))
		if err != nil {
			continue
		}
		for _, file := range files {
			a.follow(ctx, file, uid, src)
		}
		a.stopReplaced(files)
	}
}

// stopReplaced stops followers of a container's earlier log file (N.log of
// an earlier restart) once the kubelet deleted it: a later file exists, so
// that container wrote its last line long ago. Without this every restart
// of an app would leave a follower polling a path that never returns.
func (a *Agent) stopReplaced(files []string) {
	present := map[string]bool{}
	for _, f := range files {
		present[f] = true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for path, cancel := range a.following {
		if present[path] || !strings.HasPrefix(path, a.cfg.PodLogDir) {
			continue
		}
		dir := filepath.Dir(path)
		for _, f := range files {
			if filepath.Dir(f) == dir && restartCount(f) > restartCount(path) {
				cancel()
				delete(a.following, path)
				a.checkpoints.Delete(path)
				break
			}
		}
	}
}

// restartCount reads N from .../<container>/N.log (-1 if not a number).
func restartCount(path string) int {
	n, err := strconv.Atoi(strings.TrimSuffix(filepath.Base(path), ".log"))
	if err != nil {
		return -1
	}
	return n
}

func (a *Agent) follow(ctx context.Context, path string, uid types.UID, src logs.Source) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.following[path] != nil || ctx.Err() != nil {
		return
	}
	limit, known := a.limits[uid]
	if !known {
		limit = logs.NewRateLimit(src.LogRateLimit)
		a.limits[uid] = limit
	}
	followCtx, cancel := context.WithCancel(ctx)
	a.following[path] = cancel
	start, _ := a.checkpoints.Get(path)
	follower := crilog.NewFollower(path, start, a.cfg.Follower)
	logger := a.logger.Session("follow", lager.Data{"path": path, "offset": start.Offset})
	logger.Debug("starting")
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer cancel()
		err := follower.Run(followCtx, func(rec crilog.Record, pos crilog.Position) {
			// Dropped lines count as handed on: their position is saved
			// too, so a restart does not ship what the limit dropped.
			lineSrc, line, ship := src.Line(rec.Line)
			if !ship {
				a.checkpoints.Set(path, pos)
				return
			}
			if ok, report := limit.Admit(rec.Timestamp, len(line)); ok {
				a.emitter.Emit(lineSrc.LogEnvelopes(rec.Timestamp, rec.Stdout, line)...)
			} else if report != "" {
				a.emitter.Emit(src.LogEnvelopes(rec.Timestamp, true, []byte(report))...)
			}
			a.checkpoints.Set(path, pos)
		})
		if err != nil {
			logger.Error("follow-failed", err)
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		// Run ended by itself: the pod's directory is gone and was read to
		// its end, so its position is no longer needed. (A follower
		// stopped by stopReplaced was removed there already.)
		if followCtx.Err() == nil {
			delete(a.following, path)
			if err == nil {
				a.checkpoints.Delete(path)
			}
		}
	}()
}

// pruneLimits forgets the limits of pods none of whose files is followed
// any more.
func (a *Agent) pruneLimits() {
	a.mu.Lock()
	defer a.mu.Unlock()
	followed := map[types.UID]bool{}
	for path := range a.following {
		// .../<namespace>_<pod>_<uid>/<container>/<n>.log
		parts := strings.SplitN(filepath.Base(filepath.Dir(filepath.Dir(path))), "_", 3)
		if len(parts) == 3 {
			followed[types.UID(parts[2])] = true
		}
	}
	for uid := range a.limits {
		if !followed[uid] {
			delete(a.limits, uid)
		}
	}
}

// pruneCheckpoints forgets positions of files that are gone and not
// followed (pods removed while the agent was down, replaced restarts).
func (a *Agent) pruneCheckpoints() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, path := range a.checkpoints.Paths() {
		if a.following[path] != nil {
			continue
		}
		if _, err := os.Stat(path); os.IsNotExist(err) {
			a.checkpoints.Delete(path)
		}
	}
}
