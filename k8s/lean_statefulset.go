package k8s

import (
	"hash/maphash"
	"slices"

	"github.com/google/uuid"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// CachedStatefulSet is what the app StatefulSet informer keeps of a
// StatefulSet: one per LRP, 100,000 in one Iris. An appsv1.StatefulSet is
// 1.3 KB before any of its values (its pod template alone is a whole pod
// spec), and a map of its ten annotations another 0.6 KB; this record is a
// quarter of that, with its annotations in a list. Most readers never see
// it: the Caches accessors and event handlers hand out an
// *appsv1.StatefulSet made from it (StatefulSet). CC's sync lists, which
// visit every LRP on each call, read it directly (EachCachedStatefulSet)
// so as not to build 100,000 StatefulSets per call. It implements
// metav1.Object (for the informer's keys and indexes) over the metadata
// Iris reads.
type CachedStatefulSet struct {
	name, namespace string
	// resourceVersion and uid are kept as lean_owned.go's ownedMeta keeps
	// them (compactVersion, compactUID), or in rare when not in the API
	// server's form.
	resourceVersion   uint64
	uid               uuid.UUID
	generation        int64
	creationTimestamp metav1.Time
	deletionTimestamp *metav1.Time
	// labels are shared with the LRP's other objects (leaner.shareMaps).
	labels      map[string]string
	annotations annotationList
	// routesFromRecord: the routes annotation is the record's
	// (recordRoutes), kept only there.
	routesFromRecord bool
	// selector is nil when it is the LRP's (lrpSelector).
	selector    *metav1.LabelSelector
	lrpSelector bool

	replicas            int32
	hasReplicas         bool
	podManagementPolicy appsv1.PodManagementPolicyType
	status              statefulSetStatus
	// rare is nil for most LRPs' StatefulSets.
	rare *statefulSetRare
}

// statefulSetStatus is a StatefulSet's status but its conditions, revision
// names (no reader reads them) and collision count (see statefulSetRare).
type statefulSetStatus struct {
	observedGeneration                                     int64
	replicas, ready, current, updated, available, collided int32
	// hasCollided tells a collision count of 0 from none.
	hasCollided bool
}

// statefulSetRare is what CC's LRPs' StatefulSets mostly lack: an app
// container whose ports the ports annotation does not say, pull secrets
// (a private docker image), the recipe Secret's volume (BBS recipes),
// owners, finalizers, a service name and status conditions.
type statefulSetRare struct {
	resourceVersion  string
	uid              types.UID
	ownerReferences  []metav1.OwnerReference
	finalizers       []string
	serviceName      string
	containers       []corev1.Container
	imagePullSecrets []corev1.LocalObjectReference
	volumes          []corev1.Volume
	conditions       []appsv1.StatefulSetCondition
}

// annotationList is a cached StatefulSet's annotations: their values, in
// the order of a sorted list of their keys that all StatefulSets with the
// same keys share (an LRP's StatefulSet has ten, the same on every LRP of
// its kind). A map of ten annotations costs 0.6 KB, a list of key and
// value pairs 320 bytes, the values alone 160; a lookup in ten is as fast
// as the map's.
type annotationList struct {
	keys   *annotationKeys
	values []string
}

// annotationKeys are the sorted keys of annotationLists.
type annotationKeys struct{ keys []string }

// annotationLayouts shares annotationKeys among the StatefulSets whose
// annotations have the same keys. Layouts no StatefulSet has had for two
// generations are forgotten (shareTable). Callers hold the leaner's lock.
type annotationLayouts struct {
	seed  maphash.Seed
	table *shareTable[*annotationKeys]
}

func newAnnotationLayouts(clock clock.PassiveClock) *annotationLayouts {
	return &annotationLayouts{seed: maphash.MakeSeed(), table: newShareTable(clock, func(a, b *annotationKeys) bool {
		return slices.Equal(a.keys, b.keys)
	})}
}

// list is m's annotationList, its keys and short values interned; nil
// layouts give the list keys of its own.
func (l *annotationLayouts) list(m map[string]string) annotationList {
	if len(m) == 0 {
		return annotationList{}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, intern(k))
	}
	slices.Sort(keys)
	layout := &annotationKeys{keys: keys}
	if l != nil {
		var h maphash.Hash
		h.SetSeed(l.seed)
		for _, k := range keys {
			h.WriteString(k)
			h.WriteByte(0)
		}
		layout = l.table.share(h.Sum64(), layout)
	}
	values := make([]string, len(keys))
	for i, k := range layout.keys {
		values[i] = intern(m[k])
	}
	return annotationList{keys: layout, values: values}
}

func (l annotationList) get(key string) (string, bool) {
	if l.keys == nil {
		return "", false
	}
	for i, k := range l.keys.keys {
		if k == key {
			return l.values[i], true
		}
	}
	return "", false
}

func (l annotationList) asMap() map[string]string {
	if l.keys == nil {
		return nil
	}
	m := make(map[string]string, len(l.values))
	for i, k := range l.keys.keys {
		m[k] = l.values[i]
	}
	return m
}

var (
	_ runtime.Object = &CachedStatefulSet{}
	_ metav1.Object  = &CachedStatefulSet{}
)

// newCachedStatefulSet is the record of sts as the leaner left it, its
// annotations' keys shared through layouts (nil: not shared).
func newCachedStatefulSet(sts *appsv1.StatefulSet, layouts *annotationLayouts) *CachedStatefulSet {
	c := &CachedStatefulSet{
		name: sts.Name, namespace: sts.Namespace, resourceVersion: compactVersion(sts.ResourceVersion), generation: sts.Generation,
		creationTimestamp: sts.CreationTimestamp, deletionTimestamp: sts.DeletionTimestamp,
		labels: sts.Labels, annotations: layouts.list(sts.Annotations),
		podManagementPolicy: appsv1.PodManagementPolicyType(intern(string(sts.Spec.PodManagementPolicy))),
		status: statefulSetStatus{
			observedGeneration: sts.Status.ObservedGeneration,
			replicas:           sts.Status.Replicas, ready: sts.Status.ReadyReplicas, current: sts.Status.CurrentReplicas,
			updated: sts.Status.UpdatedReplicas, available: sts.Status.AvailableReplicas,
		},
	}
	c.selector, c.lrpSelector = keptSelector(sts.Spec.Selector, sts.Labels)
	if sts.Spec.Replicas != nil {
		c.replicas, c.hasReplicas = *sts.Spec.Replicas, true
	}
	if sts.Status.CollisionCount != nil {
		c.status.collided, c.status.hasCollided = *sts.Status.CollisionCount, true
	}
	c.uid, _ = compactUID(sts.UID)
	template := &sts.Spec.Template.Spec
	rare := statefulSetRare{
		ownerReferences: sts.OwnerReferences, finalizers: sts.Finalizers, serviceName: sts.Spec.ServiceName,
		containers: template.Containers, imagePullSecrets: template.ImagePullSecrets, volumes: template.Volumes,
		conditions: sts.Status.Conditions,
	}
	if c.resourceVersion == 0 {
		rare.resourceVersion = sts.ResourceVersion
	}
	if c.uid == uuid.Nil {
		rare.uid = sts.UID
	}
	if rare.resourceVersion != "" || rare.uid != "" || rare.ownerReferences != nil || rare.finalizers != nil || rare.serviceName != "" ||
		rare.containers != nil || rare.imagePullSecrets != nil || rare.volumes != nil || rare.conditions != nil {
		c.rare = &rare
	}
	return c
}

// StatefulSet is the StatefulSet c was made from, as far as Iris reads it
// (see lean.go's header). It shares c's values but for a map of the
// annotations made for it: readers must not modify it, as they must not
// modify any cached object.
func (c *CachedStatefulSet) StatefulSet() *appsv1.StatefulSet {
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: c.name, Namespace: c.namespace, ResourceVersion: c.GetResourceVersion(), UID: c.GetUID(), Generation: c.generation,
			CreationTimestamp: c.creationTimestamp, DeletionTimestamp: c.deletionTimestamp,
			Labels: c.labels, Annotations: c.annotationMap(),
		},
		Spec: appsv1.StatefulSetSpec{Selector: c.selector, PodManagementPolicy: c.podManagementPolicy},
		Status: appsv1.StatefulSetStatus{
			ObservedGeneration: c.status.observedGeneration,
			Replicas:           c.status.replicas, ReadyReplicas: c.status.ready, CurrentReplicas: c.status.current,
			UpdatedReplicas: c.status.updated, AvailableReplicas: c.status.available,
		},
	}
	if c.lrpSelector {
		sts.Spec.Selector = lrpSelector(c.labels)
	}
	if c.hasReplicas {
		replicas := c.replicas
		sts.Spec.Replicas = &replicas
	}
	if c.status.hasCollided {
		collided := c.status.collided
		sts.Status.CollisionCount = &collided
	}
	if r := c.rare; r != nil {
		sts.OwnerReferences, sts.Finalizers, sts.Spec.ServiceName = r.ownerReferences, r.finalizers, r.serviceName
		sts.Spec.Template.Spec.Containers, sts.Spec.Template.Spec.ImagePullSecrets, sts.Spec.Template.Spec.Volumes = r.containers, r.imagePullSecrets, r.volumes
		sts.Status.Conditions = r.conditions
	}
	return sts
}

// Annotation is the StatefulSet's annotation key, and whether it has it.
func (c *CachedStatefulSet) Annotation(key string) (string, bool) {
	if key == AnnotationRoutes && c.routesFromRecord {
		return c.recordRoutes(), true
	}
	return c.annotations.get(key)
}

// recordRoutes is the routes annotation made from the record: the
// transform checked that it is the annotation's.
func (c *CachedStatefulSet) recordRoutes() string {
	record, _ := c.annotations.get(AnnotationBBSDesiredLRP)
	routes, _ := recordRoutes(record)
	return routes
}

// annotationMap is a map of the StatefulSet's annotations.
func (c *CachedStatefulSet) annotationMap() map[string]string {
	m := c.annotations.asMap()
	if c.routesFromRecord {
		if m == nil {
			m = map[string]string{}
		}
		m[AnnotationRoutes] = c.recordRoutes()
	}
	return m
}

// SpecReplicas is the StatefulSet's spec's replicas, and whether it has
// them.
func (c *CachedStatefulSet) SpecReplicas() (int32, bool) { return c.replicas, c.hasReplicas }

// Label is the StatefulSet's label key, "" if it has none.
func (c *CachedStatefulSet) Label(key string) string { return c.labels[key] }

// GetObjectKind is runtime.Object's: informers' objects carry no kind.
func (c *CachedStatefulSet) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject is runtime.Object's.
func (c *CachedStatefulSet) DeepCopyObject() runtime.Object {
	return newCachedStatefulSet(c.StatefulSet().DeepCopy(), nil)
}

// metav1.Object, over the metadata kept: what is not kept reads as empty,
// and setting it does nothing.

func (c *CachedStatefulSet) GetNamespace() string          { return c.namespace }
func (c *CachedStatefulSet) SetNamespace(namespace string) { c.namespace = namespace }
func (c *CachedStatefulSet) GetName() string               { return c.name }
func (c *CachedStatefulSet) SetName(name string)           { c.name = name }
func (c *CachedStatefulSet) GetGenerateName() string       { return "" }
func (c *CachedStatefulSet) SetGenerateName(string)        {}

func (c *CachedStatefulSet) GetUID() types.UID {
	var rare types.UID
	if c.rare != nil {
		rare = c.rare.uid
	}
	return uidText(c.uid, rare)
}

func (c *CachedStatefulSet) GetResourceVersion() string {
	var rare string
	if c.rare != nil {
		rare = c.rare.resourceVersion
	}
	return versionText(c.resourceVersion, rare)
}

// SetUID and SetResourceVersion are metav1.Object's; nothing sets them on
// a cached record, which readers must not modify.
func (c *CachedStatefulSet) SetUID(types.UID)                  {}
func (c *CachedStatefulSet) SetResourceVersion(string)         {}
func (c *CachedStatefulSet) GetGeneration() int64              { return c.generation }
func (c *CachedStatefulSet) SetGeneration(generation int64)    { c.generation = generation }
func (c *CachedStatefulSet) GetSelfLink() string               { return "" }
func (c *CachedStatefulSet) SetSelfLink(string)                {}
func (c *CachedStatefulSet) GetCreationTimestamp() metav1.Time { return c.creationTimestamp }
func (c *CachedStatefulSet) SetCreationTimestamp(t metav1.Time) {
	c.creationTimestamp = t
}
func (c *CachedStatefulSet) GetDeletionTimestamp() *metav1.Time    { return c.deletionTimestamp }
func (c *CachedStatefulSet) SetDeletionTimestamp(t *metav1.Time)   { c.deletionTimestamp = t }
func (c *CachedStatefulSet) GetDeletionGracePeriodSeconds() *int64 { return nil }
func (c *CachedStatefulSet) SetDeletionGracePeriodSeconds(*int64)  {}
func (c *CachedStatefulSet) GetLabels() map[string]string          { return c.labels }
func (c *CachedStatefulSet) SetLabels(labels map[string]string)    { c.labels = labels }
func (c *CachedStatefulSet) GetAnnotations() map[string]string     { return c.annotationMap() }
func (c *CachedStatefulSet) SetAnnotations(annotations map[string]string) {
	c.annotations, c.routesFromRecord = (*annotationLayouts)(nil).list(annotations), false
}
func (c *CachedStatefulSet) GetFinalizers() []string {
	if c.rare == nil {
		return nil
	}
	return c.rare.finalizers
}
func (c *CachedStatefulSet) SetFinalizers([]string) {}
func (c *CachedStatefulSet) GetOwnerReferences() []metav1.OwnerReference {
	if c.rare == nil {
		return nil
	}
	return c.rare.ownerReferences
}
func (c *CachedStatefulSet) SetOwnerReferences([]metav1.OwnerReference) {}
func (c *CachedStatefulSet) GetManagedFields() []metav1.ManagedFieldsEntry {
	return nil
}
func (c *CachedStatefulSet) SetManagedFields([]metav1.ManagedFieldsEntry) {}

// statefulSetOf is the *appsv1.StatefulSet of an object of the app
// StatefulSet informer (its indexer's and its handlers'), nil for anything
// else.
func statefulSetOf(obj any) *appsv1.StatefulSet {
	switch o := obj.(type) {
	case *CachedStatefulSet:
		return o.StatefulSet()
	case *appsv1.StatefulSet:
		return o
	}
	return nil
}

// cachedStatefulSetOf is the record of an object of the app StatefulSet
// informer (one not made by the transform is recorded afresh).
func cachedStatefulSetOf(obj any) *CachedStatefulSet {
	switch o := obj.(type) {
	case *CachedStatefulSet:
		return o
	case *appsv1.StatefulSet:
		return newCachedStatefulSet(o, nil)
	}
	return nil
}

// asStatefulSet is statefulSetOf, leaving what is not a StatefulSet as it is.
func asStatefulSet(obj any) any {
	if sts := statefulSetOf(obj); sts != nil {
		return sts
	}
	return obj
}
