package kubernetes

import (
	"fmt"
	"sync"

	"code.cloudfoundry.org/bbs/models"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/iris-cf/iris/k8s"
)

// lrpSummaries keeps, per cached StatefulSet, what the sync lists answer
// (CC's scheduling infos every 30 s, route-emitter's routing infos),
// decoded once per resource version of the StatefulSet. Decoding every
// stored LRP on every list cost about 30 µs per LRP: 3 s and more for a
// 100,000-LRP list; with this a list copies what is already decoded.
//
// It is purely a cache: an entry is used only while its StatefulSet's UID
// and resource version are unchanged (an object with the same resource
// version has the same content), so a stale or missing entry costs a
// decode, never a wrong answer. Objects without UID or resource version
// (only fakes make those) are decoded every time.
type lrpSummaries struct {
	mu      sync.Mutex
	pass    uint64
	entries map[types.UID]*lrpSummary
}

// lrpSummary is what the lists read of one LRP, kept protobuf-encoded:
// encoding the 100,000 infos of CC's sync on every call cost about half of
// the list, and the encoded infos take a third of the decoded structs'
// heap (a foundation's LRPs are all cached at once). Shared by every list
// that answers from it: read-only.
type lrpSummary struct {
	resourceVersion string
	seen            uint64
	// processGUID is the StatefulSet's annotation (the same string).
	processGUID       string
	schedulingEncoded []byte
	// metricTagsEncoded is a DesiredLRP holding only the metric tags: a
	// routing info is the scheduling info's key, instances, routes and
	// modification tag with them, so the routes are not kept twice.
	metricTagsEncoded []byte
}

// scheduling decodes the scheduling info, for the lists that are not
// written out encoded.
func (s *lrpSummary) scheduling() (*models.DesiredLRPSchedulingInfo, error) {
	info := &models.DesiredLRPSchedulingInfo{}
	if err := info.Unmarshal(s.schedulingEncoded); err != nil {
		return nil, fmt.Errorf("decoding the kept scheduling info of %s: %w", s.processGUID, err)
	}
	return info, nil
}

// routing builds the routing info (route-emitter's sync, once a minute),
// as DesiredLRP.DesiredLRPRoutingInfo does.
func (s *lrpSummary) routing() (*models.DesiredLRP, error) {
	scheduling, err := s.scheduling()
	if err != nil {
		return nil, err
	}
	tags := &models.DesiredLRP{}
	if err := tags.Unmarshal(s.metricTagsEncoded); err != nil {
		return nil, fmt.Errorf("decoding the kept metric tags of %s: %w", s.processGUID, err)
	}
	info := models.NewDesiredLRPRoutingInfo(scheduling.DesiredLRPKey, scheduling.Instances, &scheduling.Routes, &scheduling.ModificationTag, tags.MetricTags)
	return &info, nil
}

func newLRPSummaries() *lrpSummaries {
	return &lrpSummaries{entries: map[types.UID]*lrpSummary{}}
}

// size is the number of kept summaries: about the number of BBS LRPs, for
// sizing a list.
func (s *lrpSummaries) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// begin starts a pass over the cache: the entries it visits are marked,
// so that end can drop those of StatefulSets that are gone.
func (s *lrpSummaries) begin() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pass++
	return s.pass
}

// get returns sts's summary, decoding it if its resource version is new.
func (s *lrpSummaries) get(sts *appsv1.StatefulSet, pass uint64) (*lrpSummary, error) {
	cacheable := sts.UID != "" && sts.ResourceVersion != ""
	if cacheable {
		s.mu.Lock()
		entry, ok := s.entries[sts.UID]
		if ok && entry.resourceVersion == sts.ResourceVersion {
			entry.seen = max(entry.seen, pass)
			s.mu.Unlock()
			return entry, nil
		}
		s.mu.Unlock()
	}
	lrp, err := desiredLRPFromStatefulSet(sts)
	if err != nil {
		return nil, err
	}
	entry := &lrpSummary{
		resourceVersion: sts.ResourceVersion,
		seen:            pass,
		processGUID:     lrp.ProcessGuid,
	}
	if guid := sts.Annotations[k8s.AnnotationProcessGUID]; guid == lrp.ProcessGuid {
		entry.processGUID = guid // shared with the cache, not a second copy
	}
	scheduling := lrp.DesiredLRPSchedulingInfo()
	if entry.schedulingEncoded, err = scheduling.Marshal(); err != nil {
		return nil, fmt.Errorf("encoding the scheduling info of %s/%s: %w", sts.Namespace, sts.Name, err)
	}
	if len(lrp.MetricTags) > 0 {
		tags := &models.DesiredLRP{MetricTags: lrp.MetricTags}
		if entry.metricTagsEncoded, err = tags.Marshal(); err != nil {
			return nil, fmt.Errorf("encoding the metric tags of %s/%s: %w", sts.Namespace, sts.Name, err)
		}
	}
	if cacheable {
		s.mu.Lock()
		s.entries[sts.UID] = entry
		s.mu.Unlock()
	}
	return entry, nil
}

// mark keeps sts's summary, if any, through the pass without using it
// (a StatefulSet the pass's filter leaves out).
func (s *lrpSummaries) mark(sts *appsv1.StatefulSet, pass uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if entry, ok := s.entries[sts.UID]; ok && entry.resourceVersion == sts.ResourceVersion {
		entry.seen = max(entry.seen, pass)
	}
}

// end closes a pass that visited every live BBS StatefulSet: entries no
// pass since this one began has marked belong to deleted StatefulSets.
// Entries a later, overlapping pass marked stay. Sweeping 100,000 entries
// takes about a millisecond, next to the list it follows.
func (s *lrpSummaries) end(pass uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for uid, entry := range s.entries {
		if entry.seen < pass {
			delete(s.entries, uid)
		}
	}
}
