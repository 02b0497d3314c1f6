package k8s

import (
	"encoding/json"
	"hash/maphash"
	"sort"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// cachedPod is what the app pod informer keeps of a pod: 250,000 of them
// in one Iris. A corev1.Pod is 1.2 KB before any of its values (its spec
// and status hold dozens of fields no reader uses), over half the 2 KiB an
// instance may cost; this record is 248 bytes. Readers never see it: the
// Caches accessors and event handlers hand out a *corev1.Pod made from it
// (Pod), sharing its values. It implements metav1.Object (for the
// informer's keys and indexes) over the metadata Iris reads.
type cachedPod struct {
	name, namespace, resourceVersion string
	uid                              types.UID
	creationTimestamp                metav1.Time
	deletionTimestamp                *metav1.Time
	labels, annotations              map[string]string

	nodeName string
	// spec is shared among the pods that have equal ones (all instances
	// of an LRP): see podShares.
	spec *podSpec

	phase             corev1.PodPhase
	hostIP, podIP     string
	startTime         *metav1.Time
	conditions        []corev1.PodCondition
	containerStatuses []corev1.ContainerStatus
	// rare is nil for most pods.
	rare *podRare
}

// podSpec is what pods keep of their spec besides the node.
type podSpec struct {
	restartPolicy              corev1.RestartPolicy
	containers, initContainers []corev1.Container
}

// podRare is what most app pods lack: a status reason and message (the
// kubelet sets them when it evicts or rejects a pod) and init containers'
// statuses.
type podRare struct {
	reason, message       string
	initContainerStatuses []corev1.ContainerStatus
}

var (
	_ runtime.Object = &cachedPod{}
	_ metav1.Object  = &cachedPod{}
)

// GetObjectKind is runtime.Object's: informers' objects carry no kind.
func (p *cachedPod) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject is runtime.Object's.
func (p *cachedPod) DeepCopyObject() runtime.Object {
	pod := p.Pod().DeepCopy()
	c := newCachedPod(pod)
	c.spec = &podSpec{restartPolicy: pod.Spec.RestartPolicy, containers: pod.Spec.Containers, initContainers: pod.Spec.InitContainers}
	return c
}

// newCachedPod is pod's record but its spec.
func newCachedPod(pod *corev1.Pod) *cachedPod {
	c := &cachedPod{
		name: pod.Name, namespace: pod.Namespace, resourceVersion: pod.ResourceVersion, uid: pod.UID,
		creationTimestamp: pod.CreationTimestamp, deletionTimestamp: pod.DeletionTimestamp,
		labels: pod.Labels, annotations: pod.Annotations,
		nodeName: pod.Spec.NodeName,
		phase:    pod.Status.Phase, hostIP: pod.Status.HostIP, podIP: pod.Status.PodIP, startTime: pod.Status.StartTime,
		conditions: pod.Status.Conditions, containerStatuses: pod.Status.ContainerStatuses,
	}
	if pod.Status.Reason != "" || pod.Status.Message != "" || len(pod.Status.InitContainerStatuses) > 0 {
		c.rare = &podRare{reason: pod.Status.Reason, message: pod.Status.Message, initContainerStatuses: pod.Status.InitContainerStatuses}
	}
	return c
}

// Pod is the pod p was made from, as far as Iris reads it (see lean.go's
// header). It shares p's values: readers must not modify it, as they must
// not modify any cached object.
func (p *cachedPod) Pod() *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.name, Namespace: p.namespace, ResourceVersion: p.resourceVersion, UID: p.uid,
			CreationTimestamp: p.creationTimestamp, DeletionTimestamp: p.deletionTimestamp,
			Labels: p.labels, Annotations: p.annotations,
		},
		Spec: corev1.PodSpec{NodeName: p.nodeName},
		Status: corev1.PodStatus{
			Phase: p.phase, HostIP: p.hostIP, PodIP: p.podIP, StartTime: p.startTime,
			Conditions: p.conditions, ContainerStatuses: p.containerStatuses,
		},
	}
	if p.spec != nil {
		pod.Spec.RestartPolicy, pod.Spec.Containers, pod.Spec.InitContainers = p.spec.restartPolicy, p.spec.containers, p.spec.initContainers
	}
	if p.rare != nil {
		pod.Status.Reason, pod.Status.Message, pod.Status.InitContainerStatuses = p.rare.reason, p.rare.message, p.rare.initContainerStatuses
	}
	return pod
}

// metav1.Object, over the metadata kept: what is not kept reads as empty,
// and setting it does nothing.

func (p *cachedPod) GetNamespace() string                         { return p.namespace }
func (p *cachedPod) SetNamespace(namespace string)                { p.namespace = namespace }
func (p *cachedPod) GetName() string                              { return p.name }
func (p *cachedPod) SetName(name string)                          { p.name = name }
func (p *cachedPod) GetGenerateName() string                      { return "" }
func (p *cachedPod) SetGenerateName(string)                       {}
func (p *cachedPod) GetUID() types.UID                            { return p.uid }
func (p *cachedPod) SetUID(uid types.UID)                         { p.uid = uid }
func (p *cachedPod) GetResourceVersion() string                   { return p.resourceVersion }
func (p *cachedPod) SetResourceVersion(version string)            { p.resourceVersion = version }
func (p *cachedPod) GetGeneration() int64                         { return 0 }
func (p *cachedPod) SetGeneration(int64)                          {}
func (p *cachedPod) GetSelfLink() string                          { return "" }
func (p *cachedPod) SetSelfLink(string)                           {}
func (p *cachedPod) GetCreationTimestamp() metav1.Time            { return p.creationTimestamp }
func (p *cachedPod) SetCreationTimestamp(t metav1.Time)           { p.creationTimestamp = t }
func (p *cachedPod) GetDeletionTimestamp() *metav1.Time           { return p.deletionTimestamp }
func (p *cachedPod) SetDeletionTimestamp(t *metav1.Time)          { p.deletionTimestamp = t }
func (p *cachedPod) GetDeletionGracePeriodSeconds() *int64        { return nil }
func (p *cachedPod) SetDeletionGracePeriodSeconds(*int64)         {}
func (p *cachedPod) GetLabels() map[string]string                 { return p.labels }
func (p *cachedPod) SetLabels(labels map[string]string)           { p.labels = labels }
func (p *cachedPod) GetAnnotations() map[string]string            { return p.annotations }
func (p *cachedPod) SetAnnotations(annotations map[string]string) { p.annotations = annotations }
func (p *cachedPod) GetFinalizers() []string                      { return nil }
func (p *cachedPod) SetFinalizers([]string)                       {}
func (p *cachedPod) GetOwnerReferences() []metav1.OwnerReference  { return nil }
func (p *cachedPod) SetOwnerReferences([]metav1.OwnerReference)   {}
func (p *cachedPod) GetManagedFields() []metav1.ManagedFieldsEntry {
	return nil
}
func (p *cachedPod) SetManagedFields([]metav1.ManagedFieldsEntry) {}

// podOf is the *corev1.Pod of an object of the app pod informer (its
// indexer's and its handlers'), nil for anything else.
func podOf(obj any) *corev1.Pod {
	switch o := obj.(type) {
	case *cachedPod:
		return o.Pod()
	case *corev1.Pod:
		return o
	}
	return nil
}

// asPod is podOf, leaving what is not a pod as it is.
func asPod(obj any) any {
	if pod := podOf(obj); pod != nil {
		return pod
	}
	return obj
}

// transformPod is the leaner's transform of an app pod (see lean.go's
// header for what is kept).
func (l *leaner) transformPod(pod *corev1.Pod) (any, error) {
	for _, label := range unreadPodLabels {
		delete(pod.Labels, label)
	}
	leanMeta(&pod.ObjectMeta)
	// Its labels hold its index, unique to it.
	l.shareMaps(&pod.Annotations)
	containers := make([]corev1.Container, len(pod.Spec.Containers))
	for i, c := range pod.Spec.Containers {
		containers[i] = corev1.Container{Name: intern(c.Name), Ports: c.Ports, Resources: l.pods.resources(c.Resources)}
	}
	var initContainers []corev1.Container
	for _, c := range pod.Spec.InitContainers {
		initContainers = append(initContainers, corev1.Container{Name: intern(c.Name)})
	}
	pod.Spec.NodeName = intern(pod.Spec.NodeName)
	pod.Status.Phase, pod.Status.HostIP = corev1.PodPhase(intern(string(pod.Status.Phase))), intern(pod.Status.HostIP)
	pod.Status.Conditions = readConditions(pod.Status.Conditions)
	pod.Status.ContainerStatuses = leanContainerStatuses(pod.Status.ContainerStatuses)
	pod.Status.InitContainerStatuses = leanContainerStatuses(pod.Status.InitContainerStatuses)
	cached := newCachedPod(pod)
	cached.spec = l.pods.spec(podSpec{restartPolicy: pod.Spec.RestartPolicy, containers: containers, initContainers: initContainers})
	return cached, nil
}

// leanContainerStatuses keeps of each status its state, restarts,
// readiness and identity, not what the kubelet reports of its mounts,
// resources and user, which no reader uses.
func leanContainerStatuses(statuses []corev1.ContainerStatus) []corev1.ContainerStatus {
	for i := range statuses {
		s := &statuses[i]
		s.Name, s.Image, s.ImageID = intern(s.Name), intern(s.Image), intern(s.ImageID)
		s.VolumeMounts, s.Resources, s.AllocatedResources, s.AllocatedResourcesStatus, s.User = nil, nil, nil, nil, nil
	}
	return statuses
}

// unreadPodLabels are set by the StatefulSet controller and read by no one
// in Iris (the index label is).
var unreadPodLabels = []string{appsv1.ControllerRevisionHashLabelKey, appsv1.StatefulSetPodNameLabel}

// podShares shares what the pods of an LRP, and most LRPs, have equal:
// their kept spec (restart policy and containers' names, ports and resource
// requirements, 500 bytes per pod otherwise) and resource requirements
// (maps of quantities, over a kilobyte per pod otherwise).
type podShares struct {
	mu sync.Mutex
	// resourceSet is small (CC's memory, disk and CPU choices), so it
	// is never pruned.
	resourceSet map[string]corev1.ResourceRequirements
	seed        maphash.Seed
	// specs has one per LRP (their ports differ), so it forgets those no
	// pod has had for two generations.
	specs *shareTable[*podSpec]
}

func newPodShares(clock clock.PassiveClock) *podShares {
	return &podShares{
		resourceSet: map[string]corev1.ResourceRequirements{},
		seed:        maphash.MakeSeed(),
		specs: newShareTable(clock, func(a, b *podSpec) bool {
			return a.restartPolicy == b.restartPolicy && equality.Semantic.DeepEqual(a.containers, b.containers) &&
				equality.Semantic.DeepEqual(a.initContainers, b.initContainers)
		}),
	}
}

// resources returns the shared copy of r.
func (s *podShares) resources(r corev1.ResourceRequirements) corev1.ResourceRequirements {
	if len(r.Claims) > 0 {
		return r
	}
	key := resourceKey(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if shared, ok := s.resourceSet[key]; ok {
		return shared
	}
	s.resourceSet[key] = r
	return r
}

// spec returns the shared copy of spec (a copy of its own if it cannot
// be hashed, which encoding it as JSON never fails to).
func (s *podShares) spec(spec podSpec) *podSpec {
	data, err := json.Marshal(specKey{spec.restartPolicy, spec.containers, spec.initContainers})
	if err != nil {
		return &spec
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.specs.share(maphash.Bytes(s.seed, data), &spec)
}

type specKey struct {
	RestartPolicy  corev1.RestartPolicy `json:"r"`
	Containers     []corev1.Container   `json:"c"`
	InitContainers []corev1.Container   `json:"i"`
}

func resourceKey(r corev1.ResourceRequirements) string {
	var parts []string
	for name, q := range r.Limits {
		parts = append(parts, "l:"+string(name)+"="+q.String())
	}
	for name, q := range r.Requests {
		parts = append(parts, "r:"+string(name)+"="+q.String())
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// readConditions keeps the pod conditions Iris reads: Ready (routes,
// instances, CELL logs) and PodScheduled (placement errors), and of the
// others only the newest transition, should it be newer than theirs (the
// crash reporter dates a start failure by the pod's newest transition).
// Initialized and ContainersReady are otherwise 240 bytes per pod.
func readConditions(conditions []corev1.PodCondition) []corev1.PodCondition {
	keep := make([]bool, len(conditions))
	var newestKept metav1.Time
	newestOther, n := -1, 0
	for i, c := range conditions {
		switch c.Type {
		case corev1.PodReady, corev1.PodScheduled:
			keep[i], n = true, n+1
			if newestKept.Before(&c.LastTransitionTime) {
				newestKept = c.LastTransitionTime
			}
		default:
			if newestOther < 0 || conditions[newestOther].LastTransitionTime.Before(&c.LastTransitionTime) {
				newestOther = i
			}
		}
	}
	if newestOther >= 0 && newestKept.Before(&conditions[newestOther].LastTransitionTime) {
		keep[newestOther], n = true, n+1
	}
	if n == 0 {
		return nil
	}
	kept := make([]corev1.PodCondition, 0, n)
	for i, c := range conditions {
		if keep[i] {
			kept = append(kept, c)
		}
	}
	return kept
}
