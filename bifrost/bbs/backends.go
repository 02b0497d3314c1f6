package bbs

//go:generate go tool counterfeiter -generate

import (
	"context"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
)

//counterfeiter:generate . DesiredLRPs
//counterfeiter:generate . ActualLRPs
//counterfeiter:generate . Domains
//counterfeiter:generate . Tasks

// DesiredLRPs carries out the desired-LRP routes. It works in BBS's own
// types so this package stays a pure protocol layer; the implementation
// translates them into Iris's front-neutral model. It also publishes the
// desired_lrp_* events (EventHub.Publish): the handlers only decode and
// encode, as bbs's handlers leave the work to its controllers.
//
// Errors travel to the client verbatim when they are a *models.Error
// (models.ErrResourceExists, models.ErrResourceNotFound, an InvalidRequest
// with a message of its own); any other error reaches the client as
// UnknownError with its text, as BBS does, so wrap with care.
type DesiredLRPs interface {
	// DesireLRP creates lrp (already validated); models.ErrResourceExists if
	// its process guid is taken.
	DesireLRP(ctx context.Context, logger lager.Logger, lrp *models.DesiredLRP) error
	// UpdateDesiredLRP applies update (already validated); models.ErrResourceNotFound
	// for an unknown guid.
	UpdateDesiredLRP(ctx context.Context, logger lager.Logger, processGuid string, update *models.DesiredLRPUpdate) error
	// RemoveDesiredLRP removes the LRP and its instances; models.ErrResourceNotFound
	// for an unknown guid.
	RemoveDesiredLRP(ctx context.Context, logger lager.Logger, processGuid string) error
	// DesiredLRPByProcessGuid returns the LRP in its current (V3) form; the
	// handler downgrades it for older routes. models.ErrResourceNotFound for
	// an unknown guid.
	DesiredLRPByProcessGuid(ctx context.Context, logger lager.Logger, processGuid string) (*models.DesiredLRP, error)
	// DesiredLRPs lists LRPs matching filter (empty fields match all).
	DesiredLRPs(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter) ([]*models.DesiredLRP, error)
	// DesiredLRPSchedulingInfos is CC's 30-second sync: the annotation must
	// be returned exactly as CC last sent it. A partial answer makes CC
	// re-desire or delete processes, so fail rather than answer partly.
	DesiredLRPSchedulingInfos(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter) ([]*models.DesiredLRPSchedulingInfo, error)
	// DesiredLRPRoutingInfos lists LRPs reduced to what route-emitter reads
	// (models.DesiredLRP.DesiredLRPRoutingInfo); filter.AppGuids is unused.
	DesiredLRPRoutingInfos(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter) ([]*models.DesiredLRP, error)
}

// EncodedSchedulingInfos is what a DesiredLRPs may also offer for CC's
// 30-second sync: each scheduling info already protobuf-encoded (kept per
// version of the LRP), in the order and with the filter of
// DesiredLRPSchedulingInfos. The handler then copies the list into the
// response instead of encoding 100,000 infos on every call.
type EncodedSchedulingInfos interface {
	EncodedSchedulingInfos(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter) ([][]byte, error)
}

// StreamedDesiredLRPs is what a DesiredLRPs may also offer for the
// whole-LRP list: the LRPs of DesiredLRPs (same filter and order) handed to
// fn one at a time, stopping at fn's first error. The handler encodes each
// and lets it go: 100,000 decoded LRPs held at once and their 120 MB
// encoding in one buffer were most of the list's cost.
type StreamedDesiredLRPs interface {
	EachDesiredLRP(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter, fn func(*models.DesiredLRP) error) error
}

// ActualLRPs carries out the actual-LRP routes; it publishes the
// actual_lrp_instance_* and actual_lrp_crashed events. Errors as for
// DesiredLRPs.
type ActualLRPs interface {
	// ActualLRPs lists instances matching filter (empty fields and a nil
	// Index match all).
	ActualLRPs(ctx context.Context, logger lager.Logger, filter models.ActualLRPFilter) ([]*models.ActualLRP, error)
	// ActualLRPsByProcessGuids lists the instances of every named LRP.
	ActualLRPsByProcessGuids(ctx context.Context, logger lager.Logger, filter models.ActualLRPsByProcessGuidsFilter) ([]*models.ActualLRP, error)
	// RetireActualLRP stops one instance (it is then replaced);
	// models.ErrResourceNotFound if there is no such instance.
	RetireActualLRP(ctx context.Context, logger lager.Logger, key *models.ActualLRPKey) error
}

// Domains keeps BBS's domain freshness: CC upserts cf-apps and cf-tasks
// with a TTL, and route-emitter prunes routes only of fresh domains.
type Domains interface {
	// FreshDomains lists domains whose TTL has not run out.
	FreshDomains(ctx context.Context, logger lager.Logger) ([]string, error)
	// UpsertDomain makes domain fresh for ttlSeconds (0: for ever).
	UpsertDomain(ctx context.Context, logger lager.Logger, domain string, ttlSeconds uint32) error
}

// Tasks carries out the task routes: CC's `cf run-task` (domain cf-tasks)
// and staging (cf-app-staging). A task is PENDING until it has a cell (a
// node), RUNNING there, COMPLETED with its outcome, RESOLVING while its
// completion callback is posted, and gone once the callback was answered,
// as in BBS. Errors as for DesiredLRPs.
type Tasks interface {
	// DesireTask starts a task (request already validated);
	// models.ErrResourceExists if guid is taken.
	DesireTask(ctx context.Context, logger lager.Logger, guid, domain string, def *models.TaskDefinition) error
	// Tasks lists the tasks matching filter (empty fields match all), in
	// their current (V3) form.
	Tasks(ctx context.Context, logger lager.Logger, filter models.TaskFilter) ([]*models.Task, error)
	// TaskByGuid returns one task (V3); models.ErrResourceNotFound for an
	// unknown guid.
	TaskByGuid(ctx context.Context, logger lager.Logger, guid string) (*models.Task, error)
	// CancelTask stops a PENDING or RUNNING task, which then completes
	// failed with "task was cancelled"; models.ErrResourceNotFound for an
	// unknown guid, InvalidStateTransition for a completed one.
	CancelTask(ctx context.Context, logger lager.Logger, guid string) error
}

// requestIDKey keys the X-Vcap-Request-Id of a request in its context.
type requestIDKey struct{}

// RequestID is the X-Vcap-Request-Id the client sent with the request
// whose context ctx is ("" if none). Backends pass it as the trace id of
// the events they publish, as BBS does.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

func withRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}
