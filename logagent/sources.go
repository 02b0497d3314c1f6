package logagent

import (
	"fmt"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/logs"
)

// forgetAfter is how long the source of a deleted pod is remembered: the
// kubelet may delete the pod object before its last lines were read, and
// a task or staging pod is often gone seconds after it finished.
const forgetAfter = 10 * time.Minute

// PodSources knows the log source of every Iris pod on this node, by pod
// UID (the UID is in the pod's log directory name), including pods deleted
// a little while ago.
type PodSources struct {
	factories []informers.SharedInformerFactory
	synced    []cache.InformerSynced

	mu    sync.Mutex
	byUID map[types.UID]*knownPod
}

type knownPod struct {
	source logs.Source
	gone   time.Time
}

// NewPodSources watches the Iris pods scheduled to nodeName in namespaces.
func NewPodSources(clientset kubernetes.Interface, namespaces []string, nodeName string) (*PodSources, error) {
	s := &PodSources{byUID: map[types.UID]*knownPod{}}
	selector := k8s.LabelSourceType + " in (" + k8s.SourceTypeApp + "," + k8s.SourceTypeTask + "," + k8s.SourceTypeStaging + ")"
	onNode := fields.OneTermEqualSelector("spec.nodeName", nodeName).String()
	for _, ns := range namespaces {
		factory := informers.NewSharedInformerFactoryWithOptions(clientset, 0,
			informers.WithNamespace(ns),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.LabelSelector = selector
				o.FieldSelector = onNode
			}),
		)
		informer := factory.Core().V1().Pods().Informer()
		if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { s.seen(obj) },
			UpdateFunc: func(_, obj any) { s.seen(obj) },
			DeleteFunc: s.deleted,
		}); err != nil {
			return nil, fmt.Errorf("watching pods in %s: %w", ns, err)
		}
		s.factories = append(s.factories, factory)
		s.synced = append(s.synced, informer.HasSynced)
	}
	return s, nil
}

// Start runs the informers until stop closes and waits for their sync.
func (s *PodSources) Start(logger lager.Logger, stop <-chan struct{}) error {
	for _, f := range s.factories {
		f.Start(stop)
	}
	if !cache.WaitForCacheSync(stop, s.synced...) {
		return fmt.Errorf("pod caches did not sync")
	}
	logger.Info("pod-sources-synced", lager.Data{"pods": s.count()})
	return nil
}

func (s *PodSources) seen(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	src, ok := logs.SourceForPod(pod)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byUID[pod.UID] = &knownPod{source: src}
}

func (s *PodSources) deleted(obj any) {
	if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tombstone.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if known := s.byUID[pod.UID]; known != nil {
		known.gone = time.Now()
	}
}

// Lookup returns the source of the pod with uid, if it is an Iris pod.
func (s *PodSources) Lookup(uid types.UID) (logs.Source, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	known := s.byUID[uid]
	if known == nil {
		return logs.Source{}, false
	}
	return known.source, true
}

// Prune forgets pods deleted longer ago than forgetAfter.
func (s *PodSources) Prune(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for uid, known := range s.byUID {
		if !known.gone.IsZero() && now.Sub(known.gone) > forgetAfter {
			delete(s.byUID, uid)
		}
	}
}

func (s *PodSources) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byUID)
}
