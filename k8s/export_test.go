package k8s

import (
	"unsafe"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
)

// UnclaimedSince is exported to the tests.
var UnclaimedSince = unclaimedSince

// LeanAppObject is the app informers' transform, exported to the tests.
func LeanAppObject(obj any) (any, error) { return newLeaner(clock.RealClock{}).transform(obj) }

// NewLeanTransform is one transform, sharing across the objects it sees.
func NewLeanTransform(clock clock.PassiveClock) func(any) (any, error) {
	return newLeaner(clock).transform
}

// ExposedPorts is exposedPorts, exported to the tests.
var ExposedPorts = exposedPorts

// NewStringShareTable is a share table of strings with hashes of the
// test's choosing (to make them collide).
func NewStringShareTable(clock clock.PassiveClock) func(hash uint64, v string) string {
	return newShareTable(clock, func(a, b string) bool { return a == b }).share
}

// CachedPod is the pod the Caches hand out for an object of the app pod
// informer (LeanAppObject's of a pod).
func CachedPod(obj any) *corev1.Pod { return podOf(obj) }

// StatefulSetOf is the StatefulSet the Caches hand out for an object of
// the app StatefulSet informer (LeanAppObject's of a StatefulSet).
func StatefulSetOf(obj any) *appsv1.StatefulSet { return statefulSetOf(obj) }

// StatefulSetHandler is the wrapper the Caches put around app StatefulSet
// handlers.
func StatefulSetHandler(h cache.ResourceEventHandler) cache.ResourceEventHandler {
	return recordHandler{h, asStatefulSet}
}

// SameAnnotationKeys reports whether two cached StatefulSets share one
// list of annotation keys.
func SameAnnotationKeys(a, b any) bool {
	return a.(*CachedStatefulSet).annotations.keys == b.(*CachedStatefulSet).annotations.keys
}

// CachedStatefulSetSize is the record's size in bytes, before its values.
const CachedStatefulSetSize = unsafe.Sizeof(CachedStatefulSet{})

// StatefulSetKeepsSelector reports whether a cached StatefulSet keeps its
// selector rather than making it from its labels.
func StatefulSetKeepsSelector(obj any) bool { return obj.(*CachedStatefulSet).selector != nil }

// CachedOwnedObject is the object the Caches hand out for an object of
// the LRP-owned objects' informers (LeanAppObject's of a NetworkPolicy or
// PDB).
func CachedOwnedObject(obj any) any { return ownedObjectOf(obj) }

// OwnedHandler is handler as AddLRPOwnedObjectEventHandler registers it.
func OwnedHandler(handler cache.ResourceEventHandler) cache.ResourceEventHandler {
	return recordHandler{handler, ownedObjectOf}
}

// OwnedKeepsSelector reports whether a cached NetworkPolicy or PDB keeps
// its selector's labels rather than making them from its labels.
func OwnedKeepsSelector(obj any) bool {
	switch o := obj.(type) {
	case *cachedNetworkPolicy:
		return !o.lrpSelector
	case *cachedPDB:
		return !o.lrpSelector
	}
	return true
}

// RoutesFromRecord reports whether a cached StatefulSet keeps its routes
// annotation only in its record.
func RoutesFromRecord(obj any) bool { return obj.(*CachedStatefulSet).routesFromRecord }

// CachedSchedulingInfo is the encoded scheduling info the record of a
// cached BBS StatefulSet (as the Caches hand it out) carries.
func CachedSchedulingInfo(sts *appsv1.StatefulSet) ([]byte, bool) {
	return cachedSchedulingInfo(sts.Annotations[AnnotationBBSDesiredLRP])
}

// BBSDesiredLRPRecord is the protobuf DesiredLRP a BBS StatefulSet stores,
// cached or as read from the API.
func BBSDesiredLRPRecord(sts *appsv1.StatefulSet) ([]byte, error) {
	return DecodeBBSDesiredLRPRecord(sts.Annotations[AnnotationBBSDesiredLRP], sts.Namespace+"/"+sts.Name)
}
