package kubernetes

import (
	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/iris-cf/iris/k8s"
)

// Publisher takes lrp_instances events; bifrost/bbs's EventHub is one.
type Publisher interface {
	Publish(event models.Event)
}

// EventSource is where the feed watches StatefulSets and pods; k8s.Caches is one.
type EventSource interface {
	AddEventHandlers(statefulSets, pods cache.ResourceEventHandler) error
}

// Feed turns informer events of BBS LRPs into BBS events: desired LRP
// created/changed/removed from StatefulSets, actual LRP instance
// created/changed/removed and crashed from pods. Objects already there
// when the caches fill produce no events: subscribers list them instead,
// as after any (re)subscription.
type Feed struct {
	logger    lager.Logger
	publisher Publisher
}

// NewFeed registers the feed's handlers with source; they must be added
// before the caches start.
func NewFeed(logger lager.Logger, source EventSource, publisher Publisher) (*Feed, error) {
	f := &Feed{logger: logger.Session("bbs-event-feed"), publisher: publisher}
	err := source.AddEventHandlers(
		cache.ResourceEventHandlerDetailedFuncs{AddFunc: f.statefulSetAdded, UpdateFunc: f.statefulSetUpdated, DeleteFunc: f.statefulSetDeleted},
		cache.ResourceEventHandlerDetailedFuncs{AddFunc: f.podAdded, UpdateFunc: f.podUpdated, DeleteFunc: f.podDeleted},
	)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (f *Feed) desired(obj any) *models.DesiredLRP {
	if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tombstone.Obj
	}
	sts, ok := obj.(*appsv1.StatefulSet)
	if !ok || !isBBS(sts) {
		return nil
	}
	lrp, err := desiredLRPFromStatefulSet(sts)
	if err != nil {
		f.logger.Error("decoding-desired-lrp", err, lager.Data{"statefulset": sts.Name})
		return nil
	}
	return lrp
}

func (f *Feed) statefulSetAdded(obj any, isInInitialList bool) {
	if isInInitialList {
		return
	}
	if lrp := f.desired(obj); lrp != nil {
		f.publisher.Publish(models.NewDesiredLRPCreatedEvent(lrp, ""))
	}
}

func (f *Feed) statefulSetUpdated(oldObj, newObj any) {
	before, after := f.desired(oldObj), f.desired(newObj)
	if before == nil || after == nil || before.Equal(after) {
		return
	}
	f.publisher.Publish(models.NewDesiredLRPChangedEvent(before, after, ""))
}

func (f *Feed) statefulSetDeleted(obj any) {
	if lrp := f.desired(obj); lrp != nil {
		f.publisher.Publish(models.NewDesiredLRPRemovedEvent(lrp, ""))
	}
}

func actualFromPod(obj any) *models.ActualLRP {
	if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tombstone.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil
	}
	domain, ok := pod.Annotations[AnnotationDomain]
	if !ok {
		return nil
	}
	inst, ok := k8s.ActualInstance(pod)
	if !ok {
		return nil
	}
	return ActualLRP(inst, domain)
}

func (f *Feed) podAdded(obj any, isInInitialList bool) {
	if isInInitialList {
		return
	}
	if actual := actualFromPod(obj); actual != nil {
		f.publisher.Publish(models.NewActualLRPInstanceCreatedEvent(actual, ""))
	}
}

// podUpdated reports a change of what BBS shows of the instance, and a
// crash when its container restarted.
func (f *Feed) podUpdated(oldObj, newObj any) {
	before, after := actualFromPod(oldObj), actualFromPod(newObj)
	if before == nil || after == nil || before.Equal(after) {
		return
	}
	f.publisher.Publish(models.NewActualLRPInstanceChangedEvent(before, after, ""))
	if after.CrashCount > before.CrashCount {
		f.publisher.Publish(models.NewActualLRPCrashedEvent(before, after))
	}
}

func (f *Feed) podDeleted(obj any) {
	if actual := actualFromPod(obj); actual != nil {
		f.publisher.Publish(models.NewActualLRPInstanceRemovedEvent(actual, ""))
	}
}
