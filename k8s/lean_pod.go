package k8s

import (
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// transformPod is the leaner's transform of an app pod (see lean.go's
// header for what is kept).
func (l *leaner) transformPod(pod *corev1.Pod) (any, error) {
	// Its labels hold its index, unique to it.
	l.leanPod(pod)
	l.shareMaps(&pod.Annotations)
	return pod, nil
}

// unreadPodLabels are set by the StatefulSet controller and read by no one
// in Iris (the index label is).
var unreadPodLabels = []string{appsv1.ControllerRevisionHashLabelKey, appsv1.StatefulSetPodNameLabel}

// shared returns the shared copy of r. The set of distinct requirements is
// small (CC's memory, disk and CPU choices), so it is never pruned.
func (l *leaner) shared(r corev1.ResourceRequirements) corev1.ResourceRequirements {
	if len(r.Claims) > 0 {
		return r
	}
	key := resourceKey(r)
	l.mu.Lock()
	defer l.mu.Unlock()
	if s, ok := l.resources[key]; ok {
		return s
	}
	l.resources[key] = r
	return r
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

func (l *leaner) leanPod(pod *corev1.Pod) {
	for _, label := range unreadPodLabels {
		delete(pod.Labels, label)
	}
	leanMeta(&pod.ObjectMeta)
	// No reader asks a pod for its owner (the process guid annotation
	// names its LRP): 130 bytes per pod.
	pod.OwnerReferences = nil
	containers := make([]corev1.Container, len(pod.Spec.Containers))
	for i, c := range pod.Spec.Containers {
		containers[i] = corev1.Container{Name: intern(c.Name), Ports: c.Ports, Resources: l.shared(c.Resources)}
	}
	var initContainers []corev1.Container
	for _, c := range pod.Spec.InitContainers {
		initContainers = append(initContainers, corev1.Container{Name: intern(c.Name)})
	}
	pod.Spec = corev1.PodSpec{
		NodeName:       intern(pod.Spec.NodeName),
		RestartPolicy:  pod.Spec.RestartPolicy,
		Containers:     containers,
		InitContainers: initContainers,
	}
	pod.Status.PodIPs, pod.Status.HostIPs = nil, nil
	pod.Status.Conditions = readConditions(pod.Status.Conditions)
	pod.Status.HostIP = intern(pod.Status.HostIP)
	for i := range pod.Status.ContainerStatuses {
		s := &pod.Status.ContainerStatuses[i]
		s.Name, s.Image, s.ImageID = intern(s.Name), intern(s.Image), intern(s.ImageID)
	}
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
