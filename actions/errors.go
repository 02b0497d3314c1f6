package actions

import (
	"errors"
	"fmt"
)

// EmittableError is an error whose text is fit for the app's log stream and
// for a failure reason (executor steps.EmittableError). Steps that wrap
// another step's failure (timeout, emit_progress) add its text only when it
// is emittable, as Diego does, so a raw error (which may contain a URL with
// credentials) is never echoed twice.
type EmittableError struct {
	msg     string
	wrapped error
}

// NewEmittableError formats msg like fmt.Sprintf when args are given.
func NewEmittableError(wrapped error, msg string, args ...any) *EmittableError {
	if len(args) > 0 {
		msg = fmt.Sprintf(msg, args...)
	}
	return &EmittableError{msg: msg, wrapped: wrapped}
}

func (e *EmittableError) Error() string { return e.msg }

// Unwrap gives the cause, for errors.Is/As.
func (e *EmittableError) Unwrap() error { return e.wrapped }

// displayable errors are the ones an aggregated failure reason shows.
type displayable interface{ IsDisplayable() bool }

// CancelledError is what a step returns when it was stopped from outside
// before it finished by itself (executor steps.CancelledError).
type CancelledError struct{}

func (*CancelledError) Error() string       { return "cancelled" }
func (*CancelledError) IsDisplayable() bool { return false }

// ExceededGracefulShutdownIntervalError: a cancelled process ignored SIGTERM
// for the whole grace period and was killed.
type ExceededGracefulShutdownIntervalError struct{}

func (*ExceededGracefulShutdownIntervalError) Error() string {
	return "exceeded graceful shutdown interval"
}
func (*ExceededGracefulShutdownIntervalError) IsDisplayable() bool { return false }

// ExitTimeoutError: a killed process still did not exit.
type ExitTimeoutError struct{}

func (*ExitTimeoutError) Error() string { return "process did not exit" }

// ErrCodependentStepExited is a codependent member that exited successfully:
// for a long-running process that is a failure.
var ErrCodependentStepExited = errors.New("Codependent step exited") //nolint:staticcheck // Diego's exact text

// AggregateError is the failures of parallel or codependent members, in the
// order they ended. Its text joins the displayable ones with "; " as Diego's
// multierror format does; cancellations are left out, so the reason names
// the member that actually failed.
type AggregateError struct {
	Errors []error
}

func (a *AggregateError) Error() string {
	// A direct type check, not errors.As: a timeout's message wrapping a
	// cancellation is displayable.
	text := ""
	for _, err := range a.Errors {
		if d, ok := err.(displayable); ok && !d.IsDisplayable() {
			continue
		}
		switch msg := err.Error(); {
		case text == "":
			text = msg
		case msg != "":
			text = text + "; " + msg
		}
	}
	return text
}

// Unwrap gives the members' errors, for errors.Is/As.
func (a *AggregateError) Unwrap() []error { return a.Errors }

func aggregate(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return &AggregateError{Errors: errs}
}
