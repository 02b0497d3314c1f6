// Package spaces routes the BBS front's calls between two backends, Diego
// (the real Diego BBS) and Kubernetes, by the space an LRP belongs to, so
// one BBS endpoint serves a Cloud Foundry whose spaces run on either, and
// operators can move them one at a time without CC noticing.
//
// Where a call goes:
//   - desire: the side the placement names for the LRP's space (CC's
//     metric tags space_id and organization_id), refused with
//     ResourceExists when the other side already runs the guid;
//   - calls that carry only a process guid (update, remove, get, retire,
//     actual LRPs of one guid): the side that has the guid. Kubernetes is
//     asked first, from its informer caches, then Diego; the index is thus
//     kept where the LRPs are and survives restarts without a copy;
//   - lists (scheduling infos, desired and routing infos, actual LRPs,
//     domains): the union of both sides, and an error when either fails.
//     A partial list would make CC's sync re-desire or delete processes.
//     CC's big lists (scheduling infos, whole LRPs) take the BBS front's
//     fast paths where the Kubernetes backend offers them (lists.go).
//
// While a space migrates (Migrator), an LRP runs on both sides under one
// process guid. The router then asks the moves (Owners) which copy is the
// LRP for CC: lists carry each process once, the owner's copy (and only
// the owner's instances); reads and retires go to the owner first; updates
// and removes reach both copies, so what CC asks mid-move holds whichever
// copy survives.
package spaces

import (
	"context"
	"errors"
	"fmt"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"

	"github.com/iris-cf/iris/bifrost/bbs"
)

// Side is where an LRP runs.
type Side string

const (
	Diego      Side = "diego"
	Kubernetes Side = "kubernetes"
)

// ParseSide reads a backend name as operators write it.
func ParseSide(s string) (Side, error) {
	switch Side(s) {
	case Diego, Kubernetes:
		return Side(s), nil
	}
	return "", fmt.Errorf("unknown backend %q: want %q or %q", s, Diego, Kubernetes)
}

// Backend is one side: the desired and actual LRP routes.
type Backend interface {
	bbs.DesiredLRPs
	bbs.ActualLRPs
}

// Placement names the side for a space.
type Placement interface {
	SideFor(orgGUID, spaceGUID string) Side
}

// Owners names the side owning each LRP being moved between the sides.
type Owners interface {
	// Owner is the side whose copy is the LRP for CC; ok is false when
	// processGUID is not being moved.
	Owner(processGUID string) (side Side, ok bool)
}

type noMoves struct{}

func (noMoves) Owner(string) (Side, bool) { return "", false }

// Router implements bifrost/bbs's DesiredLRPs, ActualLRPs and Domains over
// the two sides.
type Router struct {
	sides     map[Side]Backend
	domains   map[Side]bbs.Domains
	placement Placement
	moves     Owners
}

// NewRouter routes between the Kubernetes and Diego backends and domain
// stores by placement.
func NewRouter(kubernetes Backend, kubernetesDomains bbs.Domains, diego Backend, diegoDomains bbs.Domains, placement Placement) *Router {
	return &Router{
		sides:     map[Side]Backend{Kubernetes: kubernetes, Diego: diego},
		domains:   map[Side]bbs.Domains{Kubernetes: kubernetesDomains, Diego: diegoDomains},
		placement: placement,
		moves:     noMoves{},
	}
}

// FollowMoves makes the router route LRPs being moved by owners (set
// before the router serves).
func (r *Router) FollowMoves(owners Owners) { r.moves = owners }

// order is the order sides are asked in: Kubernetes answers from its
// caches, so it goes first.
var order = [...]Side{Kubernetes, Diego}

func other(side Side) Side {
	if side == Kubernetes {
		return Diego
	}
	return Kubernetes
}

// sideOf finds the side that has processGUID: Kubernetes if its caches
// know it, otherwise Diego (which answers ResourceNotFound itself when it
// does not know it either).
func (r *Router) sideOf(ctx context.Context, logger lager.Logger, processGUID string) (Side, error) {
	if owner, moving := r.moves.Owner(processGUID); moving {
		return owner, nil
	}
	if !r.cachedOnKubernetes(processGUID) {
		// Most likely Diego's: one call to its BBS is cheaper than the API
		// server lookup the Kubernetes backend makes on a cache miss. Only
		// a guid Diego does not know either (an LRP desired on Kubernetes
		// moments ago) is looked up there.
		_, err := r.sides[Diego].DesiredLRPByProcessGuid(ctx, logger, processGUID)
		switch {
		case err == nil:
			return Diego, nil
		case !isNotFound(err):
			return "", err
		}
	}
	_, err := r.sides[Kubernetes].DesiredLRPByProcessGuid(ctx, logger, processGUID)
	switch {
	case err == nil:
		return Kubernetes, nil
	case isNotFound(err):
		return Diego, nil
	}
	return "", err
}

// CacheReader is what the Kubernetes backend offers besides the BBS
// calls: whether its caches hold an LRP, without asking the API server.
type CacheReader interface {
	HasCached(processGUID string) bool
}

// cachedOnKubernetes is true when the Kubernetes backend's caches hold
// processGUID, or when it cannot tell (then it is asked as before).
func (r *Router) cachedOnKubernetes(processGUID string) bool {
	c, ok := r.sides[Kubernetes].(CacheReader)
	return !ok || c.HasCached(processGUID)
}

func isNotFound(err error) bool {
	var bbsErr *models.Error
	return errors.As(err, &bbsErr) && bbsErr.Type == models.Error_ResourceNotFound
}

// spaceOf reads the org and space CC tags every LRP with.
func spaceOf(lrp *models.DesiredLRP) (org, space string) {
	return spaceOfTags(lrp.MetricTags)
}

// spaceOfTags reads the org and space from CC's metric tags of an LRP or
// a task (organization_id; org_id in older CCs).
func spaceOfTags(tags map[string]*models.MetricTagValue) (org, space string) {
	tag := func(key string) string {
		if v := tags[key]; v != nil {
			return v.Static
		}
		return ""
	}
	org = tag("organization_id")
	if org == "" {
		org = tag("org_id")
	}
	return org, tag("space_id")
}

func (r *Router) DesireLRP(ctx context.Context, logger lager.Logger, lrp *models.DesiredLRP) error {
	side := r.placement.SideFor(spaceOf(lrp))
	// The same guid on both sides would run the app twice while CC sees it
	// once: refuse as BBS refuses a taken guid.
	_, err := r.sides[other(side)].DesiredLRPByProcessGuid(ctx, logger, lrp.ProcessGuid)
	switch {
	case err == nil:
		return models.ErrResourceExists
	case !isNotFound(err):
		return fmt.Errorf("checking that %s does not run the process already: %w", other(side), err)
	}
	logger.Info("desire", lager.Data{"backend": side, "process_guid": lrp.ProcessGuid})
	return r.sides[side].DesireLRP(ctx, logger, lrp)
}

func (r *Router) UpdateDesiredLRP(ctx context.Context, logger lager.Logger, processGUID string, update *models.DesiredLRPUpdate) error {
	if owner, moving := r.moves.Owner(processGUID); moving {
		return r.onBoth(owner, func(b Backend) error { return b.UpdateDesiredLRP(ctx, logger, processGUID, update) })
	}
	side, err := r.sideOf(ctx, logger, processGUID)
	if err != nil {
		return err
	}
	return r.sides[side].UpdateDesiredLRP(ctx, logger, processGUID, update)
}

func (r *Router) RemoveDesiredLRP(ctx context.Context, logger lager.Logger, processGUID string) error {
	if owner, moving := r.moves.Owner(processGUID); moving {
		return r.onBoth(owner, func(b Backend) error { return b.RemoveDesiredLRP(ctx, logger, processGUID) })
	}
	side, err := r.sideOf(ctx, logger, processGUID)
	if err != nil {
		return err
	}
	return r.sides[side].RemoveDesiredLRP(ctx, logger, processGUID)
}

func (r *Router) DesiredLRPByProcessGuid(ctx context.Context, logger lager.Logger, processGUID string) (*models.DesiredLRP, error) {
	first := Kubernetes
	if owner, moving := r.moves.Owner(processGUID); moving {
		first = owner
	} else if !r.cachedOnKubernetes(processGUID) {
		first = Diego
	}
	lrp, err := r.sides[first].DesiredLRPByProcessGuid(ctx, logger, processGUID)
	if err == nil || !isNotFound(err) {
		return lrp, err
	}
	return r.sides[other(first)].DesiredLRPByProcessGuid(ctx, logger, processGUID)
}

// onBoth calls call on the owner's copy, then on the other one (which may
// already be gone, or not yet made); NotFound only when neither has it.
func (r *Router) onBoth(owner Side, call func(Backend) error) error {
	ownerErr := call(r.sides[owner])
	if ownerErr != nil && !isNotFound(ownerErr) {
		return ownerErr
	}
	otherErr := call(r.sides[other(owner)])
	switch {
	case otherErr == nil:
		return nil
	case !isNotFound(otherErr):
		return fmt.Errorf("on %s's copy: %w", other(owner), otherErr)
	}
	return ownerErr
}

// once keeps each process's items from one side only: the owner's while
// it is moved and listed there, otherwise the first side listing it (a
// copy on the other side is a move this replica has not seen yet).
func once[T any](r *Router, listed map[Side][]T, guidOf func(T) string) []T {
	has := map[Side]map[string]bool{}
	for _, side := range order {
		has[side] = map[string]bool{}
		for _, item := range listed[side] {
			has[side][guidOf(item)] = true
		}
	}
	keep := func(guid string) Side {
		if owner, moving := r.moves.Owner(guid); moving && has[owner][guid] {
			return owner
		}
		for _, side := range order {
			if has[side][guid] {
				return side
			}
		}
		return ""
	}
	var out []T
	for _, side := range order {
		for _, item := range listed[side] {
			if keep(guidOf(item)) == side {
				out = append(out, item)
			}
		}
	}
	return out
}

// union calls list on both sides and joins the answers, each process
// from one side (once), or fails with the first side's error, naming it.
func union[T any](r *Router, list func(Backend) ([]T, error), guidOf func(T) string) ([]T, error) {
	listed := map[Side][]T{}
	for _, side := range order {
		items, err := list(r.sides[side])
		if err != nil {
			return nil, fmt.Errorf("listing on %s: %w", side, err)
		}
		listed[side] = items
	}
	return once(r, listed, guidOf), nil
}

func desiredGUID(lrp *models.DesiredLRP) string                   { return lrp.ProcessGuid }
func schedulingGUID(info *models.DesiredLRPSchedulingInfo) string { return info.ProcessGuid }
func actualGUID(lrp *models.ActualLRP) string                     { return lrp.ProcessGuid }

func (r *Router) DesiredLRPs(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter) ([]*models.DesiredLRP, error) {
	return union(r, func(b Backend) ([]*models.DesiredLRP, error) { return b.DesiredLRPs(ctx, logger, filter) }, desiredGUID)
}

func (r *Router) DesiredLRPSchedulingInfos(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter) ([]*models.DesiredLRPSchedulingInfo, error) {
	return union(r, func(b Backend) ([]*models.DesiredLRPSchedulingInfo, error) {
		return b.DesiredLRPSchedulingInfos(ctx, logger, filter)
	}, schedulingGUID)
}

func (r *Router) DesiredLRPRoutingInfos(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter) ([]*models.DesiredLRP, error) {
	return union(r, func(b Backend) ([]*models.DesiredLRP, error) { return b.DesiredLRPRoutingInfos(ctx, logger, filter) }, desiredGUID)
}

func (r *Router) ActualLRPs(ctx context.Context, logger lager.Logger, filter models.ActualLRPFilter) ([]*models.ActualLRP, error) {
	if filter.ProcessGuid != "" {
		side, err := r.sideOf(ctx, logger, filter.ProcessGuid)
		if err != nil {
			return nil, err
		}
		return r.sides[side].ActualLRPs(ctx, logger, filter)
	}
	return union(r, func(b Backend) ([]*models.ActualLRP, error) { return b.ActualLRPs(ctx, logger, filter) }, actualGUID)
}

func (r *Router) ActualLRPsByProcessGuids(ctx context.Context, logger lager.Logger, filter models.ActualLRPsByProcessGuidsFilter) ([]*models.ActualLRP, error) {
	return union(r, func(b Backend) ([]*models.ActualLRP, error) { return b.ActualLRPsByProcessGuids(ctx, logger, filter) }, actualGUID)
}

func (r *Router) RetireActualLRP(ctx context.Context, logger lager.Logger, key *models.ActualLRPKey) error {
	side, err := r.sideOf(ctx, logger, key.ProcessGuid)
	if err != nil {
		return err
	}
	err = r.sides[side].RetireActualLRP(ctx, logger, key)
	if _, moving := r.moves.Owner(key.ProcessGuid); moving && isNotFound(err) {
		// The owner changed since this replica read the moves.
		return r.sides[other(side)].RetireActualLRP(ctx, logger, key)
	}
	return err
}

// UpsertDomain makes the domain fresh on both sides: Diego's convergence
// and route pruning stop for a domain that goes stale there.
func (r *Router) UpsertDomain(ctx context.Context, logger lager.Logger, domain string, ttlSeconds uint32) error {
	for _, side := range order {
		if err := r.domains[side].UpsertDomain(ctx, logger, domain, ttlSeconds); err != nil {
			return fmt.Errorf("upserting domain on %s: %w", side, err)
		}
	}
	return nil
}

// FreshDomains is every domain fresh on either side, each once.
func (r *Router) FreshDomains(ctx context.Context, logger lager.Logger) ([]string, error) {
	seen := map[string]bool{}
	var fresh []string
	for _, side := range order {
		domains, err := r.domains[side].FreshDomains(ctx, logger)
		if err != nil {
			return nil, fmt.Errorf("listing domains on %s: %w", side, err)
		}
		for _, d := range domains {
			if !seen[d] {
				seen[d] = true
				fresh = append(fresh, d)
			}
		}
	}
	return fresh, nil
}
