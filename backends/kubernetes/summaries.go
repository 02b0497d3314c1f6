package kubernetes

import (
	"fmt"
	"sync"

	"code.cloudfoundry.org/bbs/models"
	"google.golang.org/protobuf/encoding/protowire"
	"k8s.io/apimachinery/pkg/types"

	"github.com/iris-cf/iris/k8s"
)

// lrpSummaries keeps, per cached StatefulSet, what the sync lists answer
// (CC's scheduling infos every 30 s, route-emitter's routing infos),
// decoded once per resource version of the StatefulSet. Decoding every
// stored LRP on every list cost about 30 µs per LRP: 3 s and more for a
// 100,000-LRP list; with this a list copies what is already decoded.
//
// Most LRPs need no entry: a cached record carries its encoded scheduling
// info (k8s.CachedStatefulSet.SchedulingInfo), which eachSummary reads as it is. The
// entries are for the others: records that do not decode as a DesiredLRP
// or whose info is not the annotation's process guid's.
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

// lrpSummary is what the lists read of one LRP, kept protobuf-encoded
// (the cache's own bytes when the cached record carries them, see
// k8s.CachedStatefulSet.SchedulingInfo):
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
	// record is the StatefulSet's record annotation as cached (the same
	// string, not a copy). A routing info is the scheduling info's key,
	// instances, routes and modification tag with the metric tags, and the
	// routing list (route-emitter's, once a minute) reads the tags from the
	// record: keeping them too cost a third of a kilobyte per LRP.
	record string
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
	raw, err := k8s.DecodeBBSDesiredLRPRecord(s.record, s.processGUID)
	if err != nil {
		return nil, err
	}
	tags, err := metricTags(raw)
	if err != nil {
		return nil, fmt.Errorf("decoding the metric tags of %s: %w", s.processGUID, err)
	}
	info := models.NewDesiredLRPRoutingInfo(scheduling.DesiredLRPKey, scheduling.Instances, &scheduling.Routes, &scheduling.ModificationTag, tags)
	return &info, nil
}

// desiredLRPMetricTags is the field number of DesiredLRP's metric_tags.
const desiredLRPMetricTags protowire.Number = 35

// metricTags decodes only the metric tags of an encoded DesiredLRP: each
// map entry is a field of its own, and those fields alone are a DesiredLRP
// holding only the tags. Decoding the whole record would cost ten times as
// much per LRP and list.
func metricTags(record []byte) (map[string]*models.MetricTagValue, error) {
	var fields []byte
	for b := record; len(b) > 0; {
		number, wireType, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(number, wireType, b[n:])
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		if number == desiredLRPMetricTags {
			fields = append(fields, b[:n+m]...)
		}
		b = b[n+m:]
	}
	if len(fields) == 0 {
		return nil, nil
	}
	tags := &models.DesiredLRP{}
	if err := tags.Unmarshal(fields); err != nil {
		return nil, err
	}
	return tags.MetricTags, nil
}

func newLRPSummaries() *lrpSummaries {
	return &lrpSummaries{entries: map[types.UID]*lrpSummary{}}
}

// begin starts a pass over the cache: the entries it visits are marked,
// so that end can drop those of StatefulSets that are gone.
func (s *lrpSummaries) begin() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pass++
	return s.pass
}

// get returns the summary of sts (a cached BBS StatefulSet), decoding it
// if its resource version is new.
func (s *lrpSummaries) get(sts *k8s.CachedStatefulSet, pass uint64) (*lrpSummary, error) {
	uid, resourceVersion := sts.GetUID(), sts.GetResourceVersion()
	cacheable := uid != "" && resourceVersion != ""
	if cacheable {
		s.mu.Lock()
		entry, ok := s.entries[uid]
		if ok && entry.resourceVersion == resourceVersion {
			entry.seen = max(entry.seen, pass)
			s.mu.Unlock()
			return entry, nil
		}
		s.mu.Unlock()
	}
	record, _ := sts.Annotation(k8s.AnnotationBBSDesiredLRP)
	entry := &lrpSummary{resourceVersion: resourceVersion, seen: pass, record: record}
	var processGUID string
	if encoded, ok := sts.SchedulingInfo(); ok {
		// The cache encoded it with the record (see k8s.CachedStatefulSet.SchedulingInfo):
		// the entry shares its bytes, and only the key is decoded.
		key := &models.DesiredLRPSchedulingInfo{}
		if err := key.Unmarshal(encoded); err != nil {
			return nil, fmt.Errorf("decoding the cached scheduling info of %s/%s: %w", sts.GetNamespace(), sts.GetName(), err)
		}
		entry.schedulingEncoded, processGUID = encoded, key.ProcessGuid
	} else {
		lrp, err := desiredLRPFromRecord(sts)
		if err != nil {
			return nil, err
		}
		scheduling := lrp.DesiredLRPSchedulingInfo()
		if entry.schedulingEncoded, err = scheduling.Marshal(); err != nil {
			return nil, fmt.Errorf("encoding the scheduling info of %s/%s: %w", sts.GetNamespace(), sts.GetName(), err)
		}
		processGUID = lrp.ProcessGuid
	}
	entry.processGUID = processGUID
	if guid, _ := sts.Annotation(k8s.AnnotationProcessGUID); guid == processGUID {
		entry.processGUID = guid // shared with the cache, not a second copy
	}
	if cacheable {
		s.mu.Lock()
		s.entries[uid] = entry
		s.mu.Unlock()
	}
	return entry, nil
}

// mark keeps sts's summary, if any, through the pass without using it
// (a StatefulSet the pass's filter leaves out).
func (s *lrpSummaries) mark(sts *k8s.CachedStatefulSet, pass uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if entry, ok := s.entries[sts.GetUID()]; ok && entry.resourceVersion == sts.GetResourceVersion() {
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
