package k8s

import "k8s.io/client-go/tools/cache"

// The app informers keep records of their own in place of pods,
// StatefulSets, NetworkPolicies and PDBs (lean_pod.go, lean_statefulset.go,
// lean_owned.go); readers get the API types made from them.

// recordHandler hands handler the API objects convert makes of the
// informer's records (in tombstones too), as the informer would without
// the transform. convert leaves what is not a record as it is.
type recordHandler struct {
	handler cache.ResourceEventHandler
	convert func(any) any
}

func (h recordHandler) OnAdd(obj any, isInInitialList bool) {
	h.handler.OnAdd(h.convert(obj), isInInitialList)
}

func (h recordHandler) OnUpdate(oldObj, newObj any) {
	h.handler.OnUpdate(h.convert(oldObj), h.convert(newObj))
}

func (h recordHandler) OnDelete(obj any) {
	if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		tombstone.Obj = h.convert(tombstone.Obj)
		h.handler.OnDelete(tombstone)
		return
	}
	h.handler.OnDelete(h.convert(obj))
}

// convertAll is convert's object of each of objs.
func convertAll[T any](objs []any, convert func(any) T) []T {
	var out []T
	for _, o := range objs {
		out = append(out, convert(o))
	}
	return out
}
