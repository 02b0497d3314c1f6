// Package diego is the BBS front's backend on a real Diego: it forwards
// each call to Diego's own BBS through the BBS Go client, and relays
// Diego's lrp_instances event stream into Iris's event hub. Beside the
// Kubernetes backend it lets one Iris endpoint serve spaces that still run
// on Diego (backends/spaces routes between the two).
package diego

import (
	"context"
	"fmt"
	"time"

	bbsclient "code.cloudfoundry.org/bbs"
	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"

	"github.com/iris-cf/iris/bifrost/bbs"
)

// Client is the part of the BBS Go client the backend uses.
type Client interface {
	bbsclient.ExternalDesiredLRPClient
	bbsclient.ExternalActualLRPClient
	bbsclient.ExternalDomainClient
	bbsclient.ExternalEventClient
}

// Backend forwards the BBS front's calls to Diego's BBS. Diego's answers,
// errors included, reach the client unchanged: a *models.Error from Diego
// keeps its type and message (wrapped errors keep them too, see
// bifrost/bbs.responseError); a transport failure becomes an UnknownError
// naming Diego, so an operator sees which side failed.
type Backend struct {
	client Client
}

// NewBackend returns a backend over client.
func NewBackend(client Client) *Backend {
	return &Backend{client: client}
}

// wrap names Diego in transport failures and leaves BBS errors as they are.
func wrap(call string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*models.Error); ok {
		return err
	}
	return fmt.Errorf("diego bbs %s: %w", call, err)
}

func (b *Backend) DesireLRP(ctx context.Context, logger lager.Logger, lrp *models.DesiredLRP) error {
	return wrap("desire", b.client.DesireLRP(logger, bbs.RequestID(ctx), lrp))
}

func (b *Backend) UpdateDesiredLRP(ctx context.Context, logger lager.Logger, processGUID string, update *models.DesiredLRPUpdate) error {
	return wrap("update", b.client.UpdateDesiredLRP(logger, bbs.RequestID(ctx), processGUID, update))
}

func (b *Backend) RemoveDesiredLRP(ctx context.Context, logger lager.Logger, processGUID string) error {
	return wrap("remove", b.client.RemoveDesiredLRP(logger, bbs.RequestID(ctx), processGUID))
}

func (b *Backend) DesiredLRPByProcessGuid(ctx context.Context, logger lager.Logger, processGUID string) (*models.DesiredLRP, error) {
	lrp, err := b.client.DesiredLRPByProcessGuid(logger, bbs.RequestID(ctx), processGUID)
	return lrp, wrap("get desired lrp", err)
}

func (b *Backend) DesiredLRPs(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter) ([]*models.DesiredLRP, error) {
	lrps, err := b.client.DesiredLRPs(logger, bbs.RequestID(ctx), filter)
	return lrps, wrap("list desired lrps", err)
}

func (b *Backend) DesiredLRPSchedulingInfos(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter) ([]*models.DesiredLRPSchedulingInfo, error) {
	infos, err := b.client.DesiredLRPSchedulingInfos(logger, bbs.RequestID(ctx), filter)
	return infos, wrap("list scheduling infos", err)
}

func (b *Backend) DesiredLRPRoutingInfos(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter) ([]*models.DesiredLRP, error) {
	lrps, err := b.client.DesiredLRPRoutingInfos(logger, bbs.RequestID(ctx), filter)
	return lrps, wrap("list routing infos", err)
}

func (b *Backend) ActualLRPs(ctx context.Context, logger lager.Logger, filter models.ActualLRPFilter) ([]*models.ActualLRP, error) {
	lrps, err := b.client.ActualLRPs(logger, bbs.RequestID(ctx), filter)
	return lrps, wrap("list actual lrps", err)
}

func (b *Backend) ActualLRPsByProcessGuids(ctx context.Context, logger lager.Logger, filter models.ActualLRPsByProcessGuidsFilter) ([]*models.ActualLRP, error) {
	lrps, err := b.client.ActualLRPsByProcessGuids(logger, bbs.RequestID(ctx), filter.ProcessGuids)
	return lrps, wrap("list actual lrps by process guids", err)
}

func (b *Backend) RetireActualLRP(ctx context.Context, logger lager.Logger, key *models.ActualLRPKey) error {
	return wrap("retire", b.client.RetireActualLRP(logger, bbs.RequestID(ctx), key))
}

func (b *Backend) FreshDomains(ctx context.Context, logger lager.Logger) ([]string, error) {
	domains, err := b.client.Domains(logger, bbs.RequestID(ctx))
	return domains, wrap("list domains", err)
}

func (b *Backend) UpsertDomain(ctx context.Context, logger lager.Logger, domain string, ttlSeconds uint32) error {
	return wrap("upsert domain", b.client.UpsertDomain(logger, bbs.RequestID(ctx), domain, time.Duration(ttlSeconds)*time.Second))
}
