package docker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// StagingErrorID is the error id CC gets for every docker staging failure:
// CC has no more specific id for docker, so Failure.Message carries the
// distinction.
const StagingErrorID = "StagingError"

// Reason classifies a staging failure.
type Reason string

// Reasons a docker image cannot be staged.
const (
	ReasonInvalidReference Reason = "invalid-reference"
	ReasonNotFound         Reason = "not-found"
	ReasonUnauthorized     Reason = "unauthorized"
	ReasonUnreachable      Reason = "unreachable"
	ReasonFailed           Reason = "failed"
)

// Error is a classified staging failure. Its message is meant for the app
// developer (CC shows it as "Failed to stage droplet: <message>").
type Error struct {
	Reason   Reason
	Image    string // as given to Stage
	Registry string // registry host, when the reference parsed
	Err      error
}

func (e *Error) Error() string {
	switch e.Reason {
	case ReasonInvalidReference:
		return fmt.Sprintf("invalid docker image reference %q: %v", e.Image, e.Err)
	case ReasonNotFound:
		return fmt.Sprintf("docker image not found: %s: %v", e.Image, e.Err)
	case ReasonUnauthorized:
		return fmt.Sprintf("unauthorized to read docker image %s: check registry_username/registry_password (%v)", e.Image, e.Err)
	case ReasonUnreachable:
		return fmt.Sprintf("docker registry unreachable: %s: %v", e.Registry, e.Err)
	default:
		return fmt.Sprintf("failed to read docker image %s: %v", e.Image, e.Err)
	}
}

func (e *Error) Unwrap() error { return e.Err }

// Failure is the "error" object of CC's failed staging callback; the body
// CC expects is {"error": Failure}.
type Failure struct {
	ID      string `json:"id"`
	Message string `json:"message"`
}

// FailureFor turns any error from Stage into CC's failure object.
func FailureFor(err error) Failure {
	return Failure{ID: StagingErrorID, Message: err.Error()}
}

// classify wraps err from reading image in an *Error with its Reason.
func classify(image, registry string, err error) *Error {
	return &Error{Reason: reasonFor(err), Image: image, Registry: registry, Err: err}
}

func reasonFor(err error) Reason {
	var badName *name.ErrBadName
	if errors.As(err, &badName) {
		return ReasonInvalidReference
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		return registryReason(terr)
	}
	// Everything that failed before an HTTP answer: DNS, refused or reset
	// connections, TLS, the timeout, and plain HTTP refused by httpGuard.
	// http.Client wraps all round-trip errors in *url.Error.
	var (
		urlErr *url.Error
		netErr net.Error
	)
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &urlErr) || errors.As(err, &netErr) {
		return ReasonUnreachable
	}
	return ReasonFailed
}

// registryReason reads the registry's error codes first, then the status:
// Docker Hub, for example, answers 401 for a repository that does not exist.
func registryReason(terr *transport.Error) Reason {
	for _, d := range terr.Errors {
		switch d.Code {
		case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
			return ReasonNotFound
		case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
			return ReasonUnauthorized
		}
	}
	switch terr.StatusCode {
	case http.StatusNotFound:
		return ReasonNotFound
	case http.StatusUnauthorized, http.StatusForbidden:
		return ReasonUnauthorized
	}
	return ReasonFailed
}
