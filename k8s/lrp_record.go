package k8s

import (
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/klauspost/compress/s2"
	appsv1 "k8s.io/api/apps/v1"
)

// AnnotationBBSDesiredLRP holds, on a BBS StatefulSet only, the DesiredLRP
// as last desired or updated: protobuf, base64-encoded on the API server.
const AnnotationBBSDesiredLRP = "cloudfoundry.org/bbs_desired_lrp"

// compactRecordPrefix marks a record the app informers keep compressed:
// base64 text never starts with a NUL byte. The record is unique per
// StatefulSet and the largest thing cached of an LRP (1.6 KB of base64 for
// CC's docker LRP, 0.9 KB compressed); readers decode it once per version
// of the StatefulSet (the BBS summaries) or on a get.
const compactRecordPrefix = "\x00"

// compactRecord is the cached form of a base64 record, or the record as it
// is when it does not decode (BBSDesiredLRPRecord then reports the error).
func compactRecord(encoded string) string {
	raw, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return encoded
	}
	return compactRecordPrefix + string(s2.Encode(nil, raw))
}

// BBSDesiredLRPRecord is the protobuf DesiredLRP a BBS StatefulSet stores,
// from a cached StatefulSet (compact) or one read from the API (base64).
func BBSDesiredLRPRecord(sts *appsv1.StatefulSet) ([]byte, error) {
	return DecodeBBSDesiredLRPRecord(sts.Annotations[AnnotationBBSDesiredLRP], sts.Namespace+"/"+sts.Name)
}

// DecodeBBSDesiredLRPRecord is BBSDesiredLRPRecord from the annotation's
// value, for readers that keep the value (the same string as the cache's)
// rather than the StatefulSet; owner names it in errors.
func DecodeBBSDesiredLRPRecord(value, owner string) ([]byte, error) {
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
