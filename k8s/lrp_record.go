package k8s

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"unsafe"

	"code.cloudfoundry.org/bbs/models"
	"github.com/klauspost/compress/s2"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/internal/bbswire"
	"github.com/iris-cf/iris/workload"
)

// AnnotationBBSDesiredLRP holds, on a BBS StatefulSet only, the DesiredLRP
// as last desired or updated: protobuf, base64-encoded on the API server.
const AnnotationBBSDesiredLRP = "cloudfoundry.org/bbs_desired_lrp"

// The app informers keep a record in one of two compact forms, each marked
// by a first byte base64 text never starts with. The record is unique per
// StatefulSet and the largest thing cached of an LRP (1.6 KB of base64 for
// CC's docker LRP).
//
//   - schedulingRecordPrefix: the LRP's encoded scheduling info (CC's sync
//     list writes it out as it is, see CachedStatefulSet.SchedulingInfo), then the
//     record compressed with the scheduling info as its dictionary, since
//     the record holds all that the info does (routes, guids, resources).
//     Together 1.0 KB for CC's docker LRP, where the record compressed
//     alone and the info kept beside it took 1.45 KB.
//   - compactRecordPrefix: the record compressed alone, for a record that
//     does not decode as a DesiredLRP (its readers then report the error).
const (
	compactRecordPrefix    = "\x00"
	schedulingRecordPrefix = "\x01"
)

// compactRecord is the cached form of a base64 record of a StatefulSet of
// replicas instances, or the record as it is when it is not base64
// (DecodeBBSDesiredLRPRecord then reports the error).
func compactRecord(encoded string, replicas *int32) string {
	raw, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return encoded
	}
	if compact, ok := schedulingRecord(raw, replicas); ok {
		return compact
	}
	return compactRecordPrefix + string(s2.Encode(nil, raw))
}

// schedulingRecord is the scheduling form of raw. The scheduling info is
// the BBS backend's (its instances are the StatefulSet's replicas, the
// source of truth for scaling), encoded once per version of the
// StatefulSet as the backend's summaries did before.
func schedulingRecord(raw []byte, replicas *int32) (string, bool) {
	lrp := &models.DesiredLRP{}
	if err := lrp.Unmarshal(raw); err != nil {
		return "", false
	}
	lrp.Instances = ptr.Deref(replicas, lrp.Instances)
	info := lrp.DesiredLRPSchedulingInfo()
	scheduling, err := info.Marshal()
	if err != nil {
		return "", false
	}
	dict := schedulingDict(scheduling)
	if dict == nil {
		return "", false
	}
	compressed := dict.Encode(nil, raw)
	var b strings.Builder
	b.Grow(len(schedulingRecordPrefix) + binary.MaxVarintLen64 + len(scheduling) + len(compressed))
	b.WriteString(schedulingRecordPrefix)
	b.Write(binary.AppendUvarint(nil, uint64(len(scheduling))))
	b.Write(scheduling)
	b.Write(compressed)
	return b.String(), true
}

// schedulingDict is the dictionary a scheduling record is compressed with;
// nil for an info too short or too long to be one (the record is then
// compressed alone).
func schedulingDict(scheduling []byte) *s2.Dict {
	if len(scheduling) < s2.MinDictSize || len(scheduling) > s2.MaxDictSize {
		return nil
	}
	return s2.MakeDictManual(scheduling, 0)
}

// splitSchedulingRecord returns the scheduling info and the compressed
// record of a scheduling form (without its prefix).
func splitSchedulingRecord(compact string) (scheduling, compressed string, err error) {
	header := compact[:min(len(compact), binary.MaxVarintLen64)]
	n, k := binary.Uvarint([]byte(header))
	if k <= 0 || n > uint64(len(compact)-k) {
		return "", "", fmt.Errorf("truncated")
	}
	return compact[k : k+int(n)], compact[k+int(n):], nil
}

// SchedulingInfo is the encoded scheduling info the record carries, false
// if it carries none (the record then has to be decoded). The bytes are
// the cache's own, not a copy: callers must not modify them.
func (c *CachedStatefulSet) SchedulingInfo() ([]byte, bool) {
	record, _ := c.Annotation(AnnotationBBSDesiredLRP)
	return cachedSchedulingInfo(record)
}

func cachedSchedulingInfo(record string) ([]byte, bool) {
	compact, ok := strings.CutPrefix(record, schedulingRecordPrefix)
	if !ok {
		return nil, false
	}
	scheduling, _, err := splitSchedulingRecord(compact)
	if err != nil || scheduling == "" {
		return nil, false
	}
	// A view of the string's bytes: a copy would cost as much as the
	// scheduling form saves.
	return unsafe.Slice(unsafe.StringData(scheduling), len(scheduling)), true
}

// recordRoutes is the routes annotation Iris writes for the LRP whose
// record, in its scheduling form, is compact (the builder's, of the routes
// as the BBS backend translates them), false if compact carries no
// scheduling info. A cached StatefulSet whose annotation is this keeps
// it only in its record (CachedStatefulSet.routesFromRecord).
func recordRoutes(compact string) (string, bool) {
	encoded, ok := cachedSchedulingInfo(compact)
	if !ok {
		return "", false
	}
	// The routes alone: decoding the whole info took 4 times as long.
	infoRoutes, err := bbswire.SchedulingInfoRoutes(encoded)
	if err != nil {
		return "", false
	}
	routes := workload.Routes{}
	for router, entries := range infoRoutes {
		if entries != nil {
			routes[router] = append(json.RawMessage(nil), *entries...)
		}
	}
	// workload.MarshalRoutes without its validation, which parses every
	// route (a third of the time): what matters is that the transform
	// found this to be the annotation, byte for byte.
	annotation, err := json.Marshal(routes)
	return string(annotation), err == nil
}

// DecodeBBSDesiredLRPRecord is the protobuf DesiredLRP a BBS StatefulSet's
// record annotation holds, cached (compact) or as read from the API
// (base64); owner names it in errors.
func DecodeBBSDesiredLRPRecord(value, owner string) ([]byte, error) {
	if compact, ok := strings.CutPrefix(value, schedulingRecordPrefix); ok {
		scheduling, compressed, err := splitSchedulingRecord(compact)
		var dict *s2.Dict
		if err == nil {
			if dict = schedulingDict([]byte(scheduling)); dict == nil {
				err = fmt.Errorf("no dictionary")
			}
		}
		var raw []byte
		if err == nil {
			raw, err = dict.Decode(nil, []byte(compressed))
		}
		if err != nil {
			return nil, fmt.Errorf("decompressing %s of %s: %w", AnnotationBBSDesiredLRP, owner, err)
		}
		return raw, nil
	}
	if compact, ok := strings.CutPrefix(value, compactRecordPrefix); ok {
		raw, err := s2.Decode(nil, []byte(compact))
		if err != nil {
			return nil, fmt.Errorf("decompressing %s of %s: %w", AnnotationBBSDesiredLRP, owner, err)
		}
		return raw, nil
	}
	raw, err := base64.StdEncoding.DecodeString(value)
	if err != nil {
		return nil, fmt.Errorf("decoding %s of %s: %w", AnnotationBBSDesiredLRP, owner, err)
	}
	return raw, nil
}
