package route

import (
	"encoding/json"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

// lrpFromStatefulSet reads an LRP's routes and identity from the labels and
// annotations Iris put on its StatefulSet. Unparseable routes count as none.
func lrpFromStatefulSet(sts *appsv1.StatefulSet) LRP {
	lrp := LRP{
		AppGUID:     sts.Labels[k8s.LabelAppGUID],
		AppName:     sts.Annotations[k8s.AnnotationAppName],
		GUID:        sts.Labels[k8s.LabelGUID],
		ProcessGUID: sts.Annotations[k8s.AnnotationProcessGUID],
		ProcessType: sts.Labels[k8s.LabelProcessType],
		OrgGUID:     sts.Labels[k8s.LabelOrgGUID],
		OrgName:     sts.Annotations[k8s.AnnotationOrgName],
		SpaceGUID:   sts.Labels[k8s.LabelSpaceGUID],
		SpaceName:   sts.Annotations[k8s.AnnotationSpaceName],
		// Isolated routers (routing_table_sharding_mode: segments) pick
		// registrations by this.
		IsolationSegment: sts.Annotations[k8s.AnnotationIsolationSegment],
	}
	var routes models.Routes
	if err := json.Unmarshal([]byte(sts.Annotations[k8s.AnnotationRoutes]), &routes); err != nil {
		return lrp
	}
	httpRoutes, err := routes.HTTPRoutes()
	if err != nil {
		return lrp
	}
	for _, r := range httpRoutes {
		for _, hostname := range r.AllHostnames() {
			if hostname != "" && r.Port > 0 {
				lrp.Routes = append(lrp.Routes, Route{Hostname: hostname, Port: uint32(r.Port)})
			}
		}
	}
	return lrp
}

// endpointFromPod returns the pod's endpoint, and false unless the pod is
// routable: ready, addressed, and not being deleted (a terminating pod must
// leave the router before it stops serving).
func endpointFromPod(pod *corev1.Pod) (Endpoint, bool) {
	if pod.DeletionTimestamp != nil || pod.Status.PodIP == "" {
		return Endpoint{}, false
	}
	index, err := strconv.Atoi(pod.Labels[k8s.PodIndexLabel])
	if err != nil {
		return Endpoint{}, false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return Endpoint{
				InstanceGUID: string(pod.UID),
				Index:        index,
				IP:           pod.Status.PodIP,
				ReadySinceNs: c.LastTransitionTime.UnixNano(),
			}, true
		}
	}
	return Endpoint{}, false
}

// statefulSetHandler and podHandler turn informer events into table changes.
func (e *Emitter) statefulSetHandler() cache.ResourceEventHandler {
	set := func(obj any) {
		if sts, ok := obj.(*appsv1.StatefulSet); ok {
			e.apply(func(t *Table) Changes { return t.SetLRP(lrpFromStatefulSet(sts)) })
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    set,
		UpdateFunc: func(_, obj any) { set(obj) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if sts, ok := obj.(*appsv1.StatefulSet); ok {
				guid := sts.Annotations[k8s.AnnotationProcessGUID]
				e.apply(func(t *Table) Changes { return t.RemoveLRP(guid) })
			}
		},
	}
}

func (e *Emitter) podHandler() cache.ResourceEventHandler {
	set := func(obj any) {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		guid := pod.Annotations[k8s.AnnotationProcessGUID]
		if ep, routable := endpointFromPod(pod); routable {
			e.apply(func(t *Table) Changes { return t.SetEndpoint(guid, pod.Name, ep) })
			return
		}
		e.apply(func(t *Table) Changes { return t.RemoveEndpoint(guid, pod.Name) })
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    set,
		UpdateFunc: func(_, obj any) { set(obj) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				guid := pod.Annotations[k8s.AnnotationProcessGUID]
				e.apply(func(t *Table) Changes { return t.RemoveEndpoint(guid, pod.Name) })
			}
		},
	}
}
