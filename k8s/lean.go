package k8s

import (
	"sync"
	"unique"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
)

// The app informers (StatefulSets, pods, and the objects LRPs own) hold
// every LRP and instance of the foundation: 100,000 LRPs and 250,000
// instances in one Iris. What they keep is what Iris's readers use, and
// nothing else; the whole object is always one GET away. Readers of the
// cached objects (BBS and OPI fronts, reconciler, route emitter, crash
// reporter, CELL logs, metrics, pod logs) get:
//
//   - every object: its metadata without managed fields; label and
//     annotation keys and short values interned, since every pod repeats
//     its StatefulSet's and the keys are the same everywhere; equal label,
//     selector and pod annotation maps, and equal NetworkPolicy egress
//     rules, shared among objects (shareTable);
//   - a StatefulSet, as a record of its own (CachedStatefulSet,
//     lean_statefulset.go) that the Caches hand out as an
//     *appsv1.StatefulSet and CC's sync lists read directly: its metadata
//     (annotations as values beside a key list shared among StatefulSets
//     with the same keys), its spec's replicas, selector, pod management
//     policy, and of its pod template only the app container's name and
//     ports (exposedPorts; none when its ports annotation says the same),
//     the image pull secrets (RegistrySecretName) and the recipe Secret's
//     volume (RecipeSecretName); its status but the revision names; the
//     BBS LRP record compressed, with its scheduling info
//     (DecodeBBSDesiredLRPRecord and CachedStatefulSet.SchedulingInfo read them), and the
//     routes annotation only there when it is the record's (recordRoutes);
//   - the guid-and-version selector of an LRP's StatefulSet, NetworkPolicy
//     and PDB made again from their labels (keptSelector);
//   - a pod, as a record of its own (cachedPod, lean_pod.go) that the
//     Caches hand out as a *corev1.Pod: of its metadata the name,
//     namespace, uid, resource version, creation and deletion timestamps,
//     labels (but the StatefulSet controller's unread ones) and
//     annotations; the node, the restart policy, each container's name,
//     ports and resources (instances' ports, the metrics gauge's quotas),
//     each init container's name, shared among pods with equal ones; of
//     its status the phase, reason and message, podIP and hostIP, start
//     time, the container and init container statuses without the
//     kubelet's mounts, resources and user, and of its conditions Ready,
//     PodScheduled and the newest transition (readConditions);
//   - an LRP's NetworkPolicy and PDB, as records of their own
//     (cachedNetworkPolicy, cachedPDB, lean_owned.go) handed out as the
//     API types: identity, creation and deletion, labels, annotations,
//     owners and the spec; not a PDB's status.
//
// Commands, environment (CC's VCAP_* and service credentials), probes,
// volumes and security settings are the bulk of a pod and no reader needs
// them from the cache. A reader that starts needing a field must add it
// here (lean_test.go lists what is kept).

// internMax bounds the values interned: labels and identities, not the
// LRP records in annotations, which are unique per StatefulSet.
const internMax = 128

// intern returns s backed by one shared copy: decoding allocates every
// label key and guid afresh for each object and each watch event.
func intern(s string) string {
	if s == "" || len(s) > internMax {
		return s
	}
	return unique.Make(s).Value()
}

func internMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return m
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[intern(k)] = intern(v)
	}
	return out
}

func leanMeta(meta *metav1.ObjectMeta) {
	meta.ManagedFields = nil
	meta.Namespace = intern(meta.Namespace)
	meta.Labels = internMap(meta.Labels)
	meta.Annotations = internMap(meta.Annotations)
	for i := range meta.OwnerReferences {
		ref := &meta.OwnerReferences[i]
		ref.APIVersion, ref.Kind = intern(ref.APIVersion), intern(ref.Kind)
		if ref.Name == meta.Name {
			// An LRP's NetworkPolicy and PDB are named as their owner.
			ref.Name = meta.Name
		}
	}
}

// leaner is the transform of the source_type=APP informers. It shares what
// pods have equal (podShares), and it also shares the label, annotation and selector maps that are equal
// among an LRP's objects (see shareTable).
type leaner struct {
	mu     sync.Mutex
	pods   *podShares
	maps   *sharedStringMaps
	egress *sharedEgress
	// budgets are PDBs' (lean_owned.go).
	budgets *sharedBudgets
	// records are the BBS LRP records compacted lately.
	records *compactedRecords
	layouts *annotationLayouts
}

func newLeaner(clock clock.PassiveClock) *leaner {
	return &leaner{pods: newPodShares(clock), maps: newSharedStringMaps(clock), egress: newSharedEgress(clock), budgets: newSharedBudgets(clock),
		records: newCompactedRecords(clock), layouts: newAnnotationLayouts(clock)}
}

// shareMaps returns the shared copies of maps, in order.
func (l *leaner) shareMaps(maps ...*map[string]string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range maps {
		*m = l.maps.share(*m)
	}
}

// shareLabelsAndSelector shares an LRP object's labels and, unless the
// record makes it from them (keptSelector), its selector's.
func (l *leaner) shareLabelsAndSelector(labels *map[string]string, selector *metav1.LabelSelector) {
	if _, derived := keptSelector(selector, *labels); derived {
		l.shareMaps(labels)
		return
	}
	l.shareMaps(append(selectorMaps(selector), labels)...)
}

// selectorMaps are the label maps of a selector, for shareMaps.
func selectorMaps(selector *metav1.LabelSelector) []*map[string]string {
	if selector == nil {
		return nil
	}
	selector.MatchLabels = internMap(selector.MatchLabels)
	return []*map[string]string{&selector.MatchLabels}
}

func (l *leaner) transform(obj any) (any, error) {
	switch o := obj.(type) {
	case *appsv1.StatefulSet:
		routesFromRecord := l.leanStatefulSet(o)
		l.shareLabelsAndSelector(&o.Labels, o.Spec.Selector)
		// Its annotations hold the LRP record, unique to it: their
		// values are kept in a list, their keys shared.
		l.mu.Lock()
		defer l.mu.Unlock()
		cached := newCachedStatefulSet(o, l.layouts)
		cached.routesFromRecord = routesFromRecord
		return cached, nil
	case *corev1.Pod:
		return l.transformPod(o)
	case *networkingv1.NetworkPolicy:
		return l.transformNetworkPolicy(o), nil
	case *policyv1.PodDisruptionBudget:
		return l.transformPDB(o), nil
	}
	return stripManagedFields(obj)
}

// leanStatefulSet leaves of sts what its record keeps, and reports
// whether its routes annotation went, being its record's (recordRoutes:
// CC's routes are 200 bytes and more per LRP, and the record has them).
func (l *leaner) leanStatefulSet(sts *appsv1.StatefulSet) (routesFromRecord bool) {
	// The record's list interns the annotations (annotationLayouts.list):
	// a map of them made here would only be garbage.
	annotations := sts.Annotations
	sts.Annotations = nil
	leanMeta(&sts.ObjectMeta)
	sts.Annotations = annotations
	if record, ok := sts.Annotations[AnnotationBBSDesiredLRP]; ok {
		l.mu.Lock()
		routes, hasRoutes := sts.Annotations[AnnotationRoutes]
		compact, fromRecord := l.records.compact(record, sts.Spec.Replicas, routes)
		l.mu.Unlock()
		sts.Annotations[AnnotationBBSDesiredLRP] = compact
		if hasRoutes && fromRecord {
			delete(sts.Annotations, AnnotationRoutes)
			routesFromRecord = true
		}
	}
	var containers []corev1.Container
	for _, c := range sts.Spec.Template.Spec.Containers {
		if c.Name == AppContainerName && !portsAnnotated(sts.Annotations[AnnotationPorts], c.Ports) {
			containers = append(containers, corev1.Container{Name: AppContainerName, Ports: c.Ports})
		}
	}
	// No reader reads the controller's revision names: two strings per LRP.
	sts.Status.CurrentRevision, sts.Status.UpdateRevision = "", ""
	sts.Spec = appsv1.StatefulSetSpec{
		Replicas:            sts.Spec.Replicas,
		Selector:            sts.Spec.Selector,
		PodManagementPolicy: sts.Spec.PodManagementPolicy,
		ServiceName:         sts.Spec.ServiceName,
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers:       containers,
			ImagePullSecrets: sts.Spec.Template.Spec.ImagePullSecrets,
			Volumes:          recipeVolumes(sts.Spec.Template.Spec.Volumes),
		}},
	}
	return routesFromRecord
}

// portsAnnotated reports whether the ports annotation says all that ports
// do (plain TCP ports, in order), so that exposedPorts reads them from it:
// the app container alone is 400 bytes per cached StatefulSet.
func portsAnnotated(annotation string, ports []corev1.ContainerPort) bool {
	annotated, ok := annotatedPorts(annotation)
	if !ok || len(annotated) != len(ports) || len(ports) == 0 {
		return false
	}
	for i, p := range ports {
		if p != (corev1.ContainerPort{ContainerPort: annotated[i], Protocol: corev1.ProtocolTCP}) {
			return false
		}
	}
	return true
}

// recipeVolumes keeps of a pod template's volumes only the recipe
// Secret's, reduced to its name: the reconciler finds the Secret to repair
// by it (RecipeSecretName).
func recipeVolumes(volumes []corev1.Volume) []corev1.Volume {
	for _, v := range volumes {
		if v.Name == RecipeVolumeName && v.Secret != nil {
			return []corev1.Volume{{Name: v.Name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: v.Secret.SecretName}}}}
		}
	}
	return nil
}
