package actions

import (
	"context"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"k8s.io/utils/clock"
)

// Step is one node of the action tree. Run returns when the step finished
// by itself or, after ctx is cancelled, when it has stopped; a step that
// was stopped returns *CancelledError unless its own semantics say
// otherwise (try swallows it).
type Step interface {
	Run(ctx context.Context) error
}

// stepFunc adapts a function to Step.
type stepFunc func(ctx context.Context) error

func (f stepFunc) Run(ctx context.Context) error { return f(ctx) }

// serialStep runs its members one after another and stops at the first
// failure (executor steps/serial_step.go). Once cancelled it does not start
// the next member and returns what the stopped member returned.
type serialStep struct {
	steps []Step
}

func (s *serialStep) Run(ctx context.Context) error {
	for _, step := range s.steps {
		if err := step.Run(ctx); err != nil || ctx.Err() != nil {
			return err
		}
	}
	return nil
}

// parallelStep runs all members at once and waits for all of them; the
// failures are aggregated (executor steps/parallel_step.go). One failure
// does not stop the others.
type parallelStep struct {
	steps []Step
}

func (s *parallelStep) Run(ctx context.Context) error {
	results := make([]error, len(s.steps))
	done := make(chan struct{})
	for i, step := range s.steps {
		go func() {
			results[i] = step.Run(ctx)
			done <- struct{}{}
		}()
	}
	for range s.steps {
		<-done
	}
	var errs []error
	for _, err := range results {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return aggregate(errs)
}

// codependentStep runs all members at once; the first member to fail stops
// the others (executor steps/codependent_step.go). With errorOnExit, a
// member that exits successfully counts as a failure (CC's app action:
// launcher, sshd and sidecars must all keep running); with
// cancelOthersOnExit, a successful exit also stops the others.
type codependentStep struct {
	steps              []Step
	errorOnExit        bool
	cancelOthersOnExit bool
}

func (s *codependentStep) Run(ctx context.Context) error {
	memberCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan error, len(s.steps))
	for _, step := range s.steps {
		go func() { results <- step.Run(memberCtx) }()
	}
	var errs []error
	for range s.steps {
		err := <-results
		if s.errorOnExit && err == nil {
			err = ErrCodependentStepExited
		}
		if err != nil {
			errs = append(errs, err)
			cancel()
		} else if s.cancelOthersOnExit {
			cancel()
		}
	}
	return aggregate(errs)
}

// tryStep runs its member and swallows its failure (executor
// steps/try_step.go).
type tryStep struct {
	step   Step
	logger lager.Logger
}

func (s *tryStep) Run(ctx context.Context) error {
	if err := s.step.Run(ctx); err != nil {
		s.logger.Info("failed", lager.Data{"error": err.Error()})
	}
	return nil
}

// timeoutStep stops its member when the time is up and fails with
// "exceeded <duration> timeout", followed by the member's own message when
// that is emittable (executor steps/timeout_step.go).
type timeoutStep struct {
	step    Step
	timeout time.Duration
	clock   clock.Clock
	logger  lager.Logger
}

func (s *timeoutStep) Run(ctx context.Context) error {
	memberCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	timer := s.clock.NewTimer(s.timeout)
	defer timer.Stop()
	result := make(chan error, 1)
	go func() { result <- s.step.Run(memberCtx) }()
	select {
	case err := <-result:
		return err
	case <-timer.C():
		s.logger.Error("timed-out", nil, lager.Data{"timeout": s.timeout.String()})
		cancel()
		err := <-result
		msg := "exceeded " + s.timeout.String() + " timeout"
		if emittable, ok := err.(*EmittableError); ok {
			msg += "; " + emittable.Error()
		}
		return NewEmittableError(err, "%s", msg)
	}
}

// emitProgressStep writes start, success and failure messages around its
// member (executor steps/emit_progress_step.go). A failure line carries the
// member's message after ": " only when that message is emittable.
type emitProgressStep struct {
	step           Step
	streamer       Streamer
	startMessage   string
	successMessage string
	failurePrefix  string
}

func (s *emitProgressStep) Run(ctx context.Context) error {
	if s.startMessage != "" {
		s.streamer.Out(s.startMessage)
	}
	err := s.step.Run(ctx)
	switch {
	case err != nil && s.failurePrefix != "":
		msg := s.failurePrefix
		if emittable, ok := err.(*EmittableError); ok {
			msg += ": " + emittable.Error()
		}
		s.streamer.Err(msg)
	case err == nil && s.successMessage != "":
		s.streamer.Out(s.successMessage)
	}
	return err
}
