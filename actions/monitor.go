package actions

import (
	"context"
	"fmt"
	"strings"
	"time"

	"k8s.io/utils/clock"
)

// Diego's health-monitoring texts (executor steps/health_check_step.go).
const (
	startupFailureMessage   = "Failed after %s: startup health check never passed."
	timeoutCrashReason      = "Instance never healthy after %s: %s"
	healthcheckNowUnhealthy = "Instance became unhealthy: %s"
)

// outputWrapperStep turns a health check's failure into its output: the
// check's own words ("failed to make TCP connection to port 8080...") are
// what the crash reason shows (executor steps/output_wrapper_step.go).
type outputWrapperStep struct {
	step   Step
	output *bufferSink
}

func (s *outputWrapperStep) Run(ctx context.Context) error {
	err := s.step.Run(ctx)
	if err == nil {
		return nil
	}
	msg := "Failed to invoke process: " + err.Error()
	if out := s.output.String(); out != "" {
		msg = strings.TrimSpace(out)
	}
	return NewEmittableError(err, "%s", msg)
}

// monitorStep runs the monitor action until it first succeeds (every
// unhealthy interval, giving up after the start timeout), then every healthy
// interval until it fails (executor steps/monitor_step.go and its
// eventually/consistently-succeeds steps). It never ends successfully.
type monitorStep struct {
	newCheck          func() Step
	streamer          Streamer
	clock             clock.Clock
	startTimeout      time.Duration
	healthyInterval   time.Duration
	unhealthyInterval time.Duration
	// onHealthy is called once, when the startup check passed (the
	// executor's container turns "running" then).
	onHealthy func()
}

func (s *monitorStep) Run(ctx context.Context) error {
	s.streamer.Out("Starting health monitoring of container")
	started := s.clock.Now()
	if err := s.untilHealthy(ctx); err != nil {
		if ctx.Err() != nil {
			return new(CancelledError)
		}
		took := s.clock.Since(started).Round(time.Millisecond)
		s.streamer.Err(err.Error())
		s.streamer.Err(fmt.Sprintf(startupFailureMessage, took))
		return NewEmittableError(err, timeoutCrashReason, took, err.Error())
	}
	s.streamer.Out("Container became healthy")
	if s.onHealthy != nil {
		s.onHealthy()
	}
	err := s.whileHealthy(ctx)
	if ctx.Err() != nil {
		return new(CancelledError)
	}
	s.streamer.Err(err.Error())
	s.streamer.Err("Container became unhealthy")
	return NewEmittableError(err, healthcheckNowUnhealthy, err.Error())
}

// untilHealthy: the first check runs one unhealthy interval after start;
// a failure after the start timeout is final (0 means no timeout).
func (s *monitorStep) untilHealthy(ctx context.Context) error {
	started := s.clock.Now()
	timer := s.clock.NewTimer(s.unhealthyInterval)
	defer timer.Stop()
	for {
		select {
		case <-timer.C():
		case <-ctx.Done():
			return new(CancelledError)
		}
		err := s.newCheck().Run(ctx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		if s.startTimeout > 0 && s.clock.Now().After(started.Add(s.startTimeout)) {
			return err
		}
		timer.Reset(s.unhealthyInterval)
	}
}

func (s *monitorStep) whileHealthy(ctx context.Context) error {
	timer := s.clock.NewTimer(s.healthyInterval)
	defer timer.Stop()
	for {
		select {
		case <-timer.C():
		case <-ctx.Done():
			return new(CancelledError)
		}
		if err := s.newCheck().Run(ctx); err != nil {
			return err
		}
		timer.Reset(s.healthyInterval)
	}
}
