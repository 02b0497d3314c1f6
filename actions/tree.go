package actions

import (
	"errors"
	"net/http"
	"time"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	"k8s.io/utils/clock"
)

// treeBuilder turns a models.Action into steps the way the executor's
// transformer does (executor depot/transformer/transformer.go stepFor),
// including which streams (source types) each member writes to.
type treeBuilder struct {
	fetcher     *Fetcher
	client      *http.Client
	uploadProxy *http.Client
	clock       clock.Clock
	logger      lager.Logger
	// baseEnv is the container's environment, recipeEnv the recipe's
	// environment_variables (they come after it).
	baseEnv, recipeEnv []string
	users              userResolver
	tempDir            string
	gracePeriod        time.Duration
	memoryEvents       string
	nofileExec         []string
}

func (b *treeBuilder) build(action *models.Action, streamer Streamer, suppressExit, monitorOutputWrapper bool) (Step, error) {
	if action == nil {
		return nil, errors.New("empty action")
	}
	switch a := action.GetValue().(type) {
	case *models.RunAction:
		return &runStep{
			model:        a,
			baseEnv:      b.baseEnv,
			recipeEnv:    b.recipeEnv,
			streamer:     streamer.WithSource(a.LogSource),
			clock:        b.clock,
			gracePeriod:  b.gracePeriod,
			suppressExit: suppressExit,
			logger:       b.logger,
			users:        b.users,
			memoryEvents: b.memoryEvents,
			nofileExec:   b.nofileExec,
		}, nil
	case *models.DownloadAction:
		return &downloadStep{model: a, fetcher: b.fetcher, streamer: streamer.WithSource(a.LogSource), logger: b.logger, baseDir: workingDir(b.env()), users: b.users}, nil
	case *models.UploadAction:
		return &uploadStep{model: a, client: b.client, proxy: b.uploadProxy, tempDir: b.tempDir, streamer: streamer.WithSource(a.LogSource), logger: b.logger, baseDir: workingDir(b.env())}, nil
	case *models.EmitProgressAction:
		// The member writes to the parent's stream; only the progress
		// messages take this action's source.
		member, err := b.build(a.Action, streamer, suppressExit, monitorOutputWrapper)
		if err != nil {
			return nil, err
		}
		return &emitProgressStep{
			step:           member,
			streamer:       streamer.WithSource(a.LogSource),
			startMessage:   a.StartMessage,
			successMessage: a.SuccessMessage,
			failurePrefix:  a.FailureMessagePrefix,
		}, nil
	case *models.TimeoutAction:
		member, err := b.build(a.Action, streamer.WithSource(a.LogSource), suppressExit, monitorOutputWrapper)
		if err != nil {
			return nil, err
		}
		timeout := time.Duration(a.TimeoutMs) * time.Millisecond
		if a.TimeoutMs == 0 {
			timeout = time.Duration(a.DeprecatedTimeoutNs) //nolint:staticcheck // still honoured by Diego's models
		}
		return &timeoutStep{step: member, timeout: timeout, clock: b.clock, logger: b.logger.Session("timeout-step")}, nil
	case *models.TryAction:
		member, err := b.build(a.Action, streamer.WithSource(a.LogSource), suppressExit, monitorOutputWrapper)
		if err != nil {
			return nil, err
		}
		return &tryStep{step: member, logger: b.logger.Session("try-step")}, nil
	case *models.ParallelAction:
		members, err := b.members(a.Actions, streamer.WithSource(a.LogSource), suppressExit, monitorOutputWrapper)
		if err != nil {
			return nil, err
		}
		return &parallelStep{steps: members}, nil
	case *models.CodependentAction:
		members, err := b.members(a.Actions, streamer.WithSource(a.LogSource), suppressExit, monitorOutputWrapper)
		if err != nil {
			return nil, err
		}
		return &codependentStep{steps: members, errorOnExit: true}, nil
	case *models.SerialAction:
		members := make([]Step, 0, len(a.Actions))
		for _, member := range a.Actions {
			step, err := b.build(member, streamer, suppressExit, monitorOutputWrapper)
			if err != nil {
				return nil, err
			}
			members = append(members, step)
		}
		return &serialStep{steps: members}, nil
	}
	return nil, errors.New("unknown action")
}

// env is the environment downloads and uploads resolve relative paths
// with (the runner's own user's HOME).
func (b *treeBuilder) env() []string {
	return append(append([]string{}, b.baseEnv...), b.recipeEnv...)
}

// members of a parallel or codependent action; under the monitor each
// member's output is collected to become its failure message.
func (b *treeBuilder) members(actions []*models.Action, streamer Streamer, suppressExit, monitorOutputWrapper bool) ([]Step, error) {
	members := make([]Step, 0, len(actions))
	for _, action := range actions {
		memberStreamer := streamer
		var output *bufferSink
		if monitorOutputWrapper {
			memberStreamer, output = bufferStreamer(streamer.Source())
		}
		step, err := b.build(action, memberStreamer, suppressExit, monitorOutputWrapper)
		if err != nil {
			return nil, err
		}
		if output != nil {
			step = &outputWrapperStep{step: step, output: output}
		}
		members = append(members, step)
	}
	return members, nil
}

// showMonitorOutput: a health check's output must reach the buffer that
// becomes its failure message, so suppress_log_output is ignored under the
// monitor (executor transformer overrideSuppressLogOutput).
func showMonitorOutput(action *models.Action) {
	if action == nil {
		return
	}
	switch a := action.GetValue().(type) {
	case *models.RunAction:
		a.SuppressLogOutput = false
	case *models.TryAction:
		showMonitorOutput(a.Action)
	case *models.EmitProgressAction:
		showMonitorOutput(a.Action)
	case *models.TimeoutAction:
		showMonitorOutput(a.Action)
	case *models.ParallelAction:
		for _, m := range a.Actions {
			showMonitorOutput(m)
		}
	case *models.SerialAction:
		for _, m := range a.Actions {
			showMonitorOutput(m)
		}
	case *models.CodependentAction:
		for _, m := range a.Actions {
			showMonitorOutput(m)
		}
	}
}
