package spaces

import (
	"context"
	"fmt"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"

	"github.com/iris-cf/iris/bifrost/bbs"
	"github.com/iris-cf/iris/internal/bbswire"
)

// The BBS front's fast paths for CC's big lists (bbs.EncodedSchedulingInfos,
// bbs.StreamedDesiredLRPs), offered over both sides. union/once hold every
// item of both sides decoded and index every guid of both in maps: at
// 100,000 LRPs on Kubernetes that undid what the Kubernetes backend's
// fast paths save. The lists here are the same (each process from one
// side, chosen as once chooses, Kubernetes's items first in its order,
// then Diego's in its order; an error on either side fails the whole
// list, naming the side), but only Diego's guids are indexed: a
// Kubernetes item is dropped only for a guid Diego lists too.

// join chooses, for each guid listed on both sides, the one side whose
// items are listed.
type join struct {
	moves Owners
	// onDiego is every guid Diego lists.
	onDiego map[string]bool
	// chosen is the side chosen for each guid on both sides, decided once
	// (the moves may change mid-list; once asking for each item could then
	// list a guid twice or not at all).
	chosen map[string]Side
}

func (r *Router) newJoin(diegoGUIDs int) *join {
	return &join{moves: r.moves, onDiego: make(map[string]bool, diegoGUIDs), chosen: map[string]Side{}}
}

// listedOnKubernetes is whether Kubernetes's item of guid is listed: unless
// Diego lists guid too and owns it while it is moved (as once keeps it).
func (j *join) listedOnKubernetes(guid string) bool {
	if !j.onDiego[guid] {
		return true
	}
	return j.choose(guid) == Kubernetes
}

// encodedListedOnKubernetes is listedOnKubernetes for a guid read from an
// encoding, converted to a string only when Diego lists it too.
func (j *join) encodedListedOnKubernetes(guid []byte) bool {
	if !j.onDiego[string(guid)] { // a map index converts without allocating
		return true
	}
	return j.choose(string(guid)) == Kubernetes
}

func (j *join) choose(guid string) Side {
	side, ok := j.chosen[guid]
	if !ok {
		side = Kubernetes
		if owner, moving := j.moves.Owner(guid); moving && owner == Diego {
			side = Diego
		}
		j.chosen[guid] = side
	}
	return side
}

// listedOnDiego is whether Diego's item of guid is listed (after every
// Kubernetes item was seen): unless Kubernetes listed guid too and it was
// not chosen Diego's.
func (j *join) listedOnDiego(guid string) bool {
	side, both := j.chosen[guid]
	return !both || side == Diego
}

// EncodedSchedulingInfos is DesiredLRPSchedulingInfos with each info
// protobuf-encoded: Kubernetes's as its backend keeps them (when it offers
// them), Diego's encoded here, never decoded again to be deduplicated.
func (r *Router) EncodedSchedulingInfos(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter) ([][]byte, error) {
	kube, err := r.encodedSchedulingInfos(ctx, logger, Kubernetes, filter)
	if err != nil {
		return nil, err
	}
	diego, err := r.encodedSchedulingInfos(ctx, logger, Diego, filter)
	if err != nil {
		return nil, err
	}
	j := r.newJoin(len(diego))
	diegoGUIDs := make([]string, len(diego))
	for i, info := range diego {
		guid, err := bbswire.SchedulingInfoProcessGUID(info)
		if err != nil {
			return nil, fmt.Errorf("listing on %s: reading the process guid of scheduling info %d: %w", Diego, i, err)
		}
		diegoGUIDs[i] = string(guid)
		j.onDiego[diegoGUIDs[i]] = true
	}
	out := make([][]byte, 0, len(kube)+len(diego))
	for i, info := range kube {
		guid, err := bbswire.SchedulingInfoProcessGUID(info)
		if err != nil {
			return nil, fmt.Errorf("listing on %s: reading the process guid of scheduling info %d: %w", Kubernetes, i, err)
		}
		if j.encodedListedOnKubernetes(guid) {
			out = append(out, info)
		}
	}
	for i, info := range diego {
		if j.listedOnDiego(diegoGUIDs[i]) {
			out = append(out, info)
		}
	}
	return out, nil
}

// encodedSchedulingInfos lists side's scheduling infos encoded, as it
// keeps them or encoded here.
func (r *Router) encodedSchedulingInfos(ctx context.Context, logger lager.Logger, side Side, filter models.DesiredLRPFilter) ([][]byte, error) {
	if encoder, ok := r.sides[side].(bbs.EncodedSchedulingInfos); ok {
		infos, err := encoder.EncodedSchedulingInfos(ctx, logger, filter)
		if err != nil {
			return nil, fmt.Errorf("listing on %s: %w", side, err)
		}
		return infos, nil
	}
	infos, err := r.sides[side].DesiredLRPSchedulingInfos(ctx, logger, filter)
	if err != nil {
		return nil, fmt.Errorf("listing on %s: %w", side, err)
	}
	encoded := make([][]byte, len(infos))
	for i, info := range infos {
		if encoded[i], err = info.Marshal(); err != nil {
			return nil, fmt.Errorf("listing on %s: encoding the scheduling info of %s: %w", side, info.ProcessGuid, err)
		}
	}
	return encoded, nil
}

// EachDesiredLRP hands fn the LRPs DesiredLRPs lists, in its order:
// Kubernetes's as its backend streams them (when it does), then Diego's.
// Diego's list is read first: whether a Kubernetes LRP is listed depends
// on it, and Kubernetes's go out as they come. So when both sides fail,
// the error names Diego; a Kubernetes failure after part of the list went
// out still fails the call (bifrost/bbs ends the list with the error).
func (r *Router) EachDesiredLRP(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter, fn func(*models.DesiredLRP) error) error {
	streamer, ok := r.sides[Kubernetes].(bbs.StreamedDesiredLRPs)
	if !ok {
		lrps, err := r.DesiredLRPs(ctx, logger, filter)
		if err != nil {
			return err
		}
		for _, lrp := range lrps {
			if err := fn(lrp); err != nil {
				return err
			}
		}
		return nil
	}
	diego, err := r.sides[Diego].DesiredLRPs(ctx, logger, filter)
	if err != nil {
		return fmt.Errorf("listing on %s: %w", Diego, err)
	}
	j := r.newJoin(len(diego))
	for _, lrp := range diego {
		j.onDiego[lrp.ProcessGuid] = true
	}
	// fn's own error (the client went away) is passed on as it is, not
	// as Kubernetes's.
	var fnErr error
	err = streamer.EachDesiredLRP(ctx, logger, filter, func(lrp *models.DesiredLRP) error {
		if !j.listedOnKubernetes(lrp.ProcessGuid) {
			return nil
		}
		fnErr = fn(lrp)
		return fnErr
	})
	switch {
	case fnErr != nil:
		return fnErr
	case err != nil:
		return fmt.Errorf("listing on %s: %w", Kubernetes, err)
	}
	for _, lrp := range diego {
		if !j.listedOnDiego(lrp.ProcessGuid) {
			continue
		}
		if err := fn(lrp); err != nil {
			return err
		}
	}
	return nil
}

var (
	_ bbs.EncodedSchedulingInfos = (*Router)(nil)
	_ bbs.StreamedDesiredLRPs    = (*Router)(nil)
)
