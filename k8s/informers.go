package k8s

import (
	"context"
	"fmt"
	"os"
	"time"

	"code.cloudfoundry.org/lager/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// byProcessGUID indexes StatefulSets and pods by CC's process guid, which is
// too long (73 chars) for a label and so lives in an annotation.
const byProcessGUID = "process_guid"

// Caches are the informer caches of app StatefulSets and pods in the
// workloads namespaces. They serve every read of the API, so that CC's
// polling costs no API-server traffic.
type Caches struct {
	factories    []informers.SharedInformerFactory
	statefulSets []cache.SharedIndexInformer
	pods         []cache.SharedIndexInformer
}

// NewCaches prepares informers for the given namespaces; Run starts them.
// Only objects labelled source_type=APP are watched.
func NewCaches(clientset kubernetes.Interface, namespaces []string) (*Caches, error) {
	c := &Caches{}
	selector := labels.SelectorFromSet(labels.Set{LabelSourceType: SourceTypeApp}).String()
	for _, ns := range namespaces {
		factory := informers.NewSharedInformerFactoryWithOptions(clientset, 0,
			informers.WithNamespace(ns),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }),
			informers.WithTransform(stripManagedFields),
		)
		sts := factory.Apps().V1().StatefulSets().Informer()
		pods := factory.Core().V1().Pods().Informer()
		for _, inf := range []cache.SharedIndexInformer{sts, pods} {
			if err := inf.AddIndexers(cache.Indexers{byProcessGUID: processGUIDIndex}); err != nil {
				return nil, fmt.Errorf("adding process guid indexer: %w", err)
			}
		}
		c.factories = append(c.factories, factory)
		c.statefulSets = append(c.statefulSets, sts)
		c.pods = append(c.pods, pods)
	}
	return c, nil
}

// stripManagedFields keeps the cache lean: managed fields are often larger
// than the object and Iris never reads them.
func stripManagedFields(obj any) (any, error) {
	if accessor, ok := obj.(metav1.ObjectMetaAccessor); ok {
		accessor.GetObjectMeta().SetManagedFields(nil)
	}
	return obj, nil
}

func processGUIDIndex(obj any) ([]string, error) {
	accessor, ok := obj.(metav1.ObjectMetaAccessor)
	if !ok {
		return nil, nil
	}
	if guid := accessor.GetObjectMeta().GetAnnotations()[AnnotationProcessGUID]; guid != "" {
		return []string{guid}, nil
	}
	return nil, nil
}

// Run is an ifrit runner: it starts the informers, signals ready once every
// cache has synced, and stops them on a signal.
func (c *Caches) Run(logger lager.Logger) func(signals <-chan os.Signal, ready chan<- struct{}) error {
	return func(signals <-chan os.Signal, ready chan<- struct{}) error {
		logger = logger.Session("informers")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		for _, f := range c.factories {
			f.Start(ctx.Done())
		}
		defer func() {
			cancel()
			for _, f := range c.factories {
				f.Shutdown()
			}
		}()

		synced := make(chan bool, 1)
		go func() { synced <- c.WaitForSync(ctx) }()
		start := time.Now()
		select {
		case ok := <-synced:
			if !ok {
				return fmt.Errorf("informer caches did not sync")
			}
		case sig := <-signals:
			logger.Info("signalled-before-sync", lager.Data{"signal": sig.String()})
			return nil
		}
		logger.Info("synced", lager.Data{"duration": time.Since(start).String()})
		close(ready)
		<-signals
		return nil
	}
}

// WaitForSync blocks until all caches synced or ctx ends.
func (c *Caches) WaitForSync(ctx context.Context) bool {
	var syncs []cache.InformerSynced
	for i := range c.statefulSets {
		syncs = append(syncs, c.statefulSets[i].HasSynced, c.pods[i].HasSynced)
	}
	return cache.WaitForCacheSync(ctx.Done(), syncs...)
}

// AddEventHandlers registers handlers for app StatefulSet and pod events in
// every workloads namespace. Handlers added before Run see every existing
// object as an add once the caches fill.
func (c *Caches) AddEventHandlers(statefulSets, pods cache.ResourceEventHandler) error {
	for i := range c.statefulSets {
		if _, err := c.statefulSets[i].AddEventHandler(statefulSets); err != nil {
			return fmt.Errorf("adding statefulset handler: %w", err)
		}
		if _, err := c.pods[i].AddEventHandler(pods); err != nil {
			return fmt.Errorf("adding pod handler: %w", err)
		}
	}
	return nil
}

// StatefulSetsByProcessGUID returns the cached StatefulSets of a process guid.
func (c *Caches) StatefulSetsByProcessGUID(processGUID string) []*appsv1.StatefulSet {
	return indexed[*appsv1.StatefulSet](c.statefulSets, processGUID)
}

// PodsByProcessGUID returns the cached pods of a process guid.
func (c *Caches) PodsByProcessGUID(processGUID string) []*corev1.Pod {
	return indexed[*corev1.Pod](c.pods, processGUID)
}

func indexed[T any](informers []cache.SharedIndexInformer, processGUID string) []T {
	var out []T
	for _, inf := range informers {
		objs, _ := inf.GetIndexer().ByIndex(byProcessGUID, processGUID)
		for _, o := range objs {
			out = append(out, o.(T))
		}
	}
	return out
}

// Pod returns the cached pod namespace/name, or nil.
func (c *Caches) Pod(namespace, name string) *corev1.Pod {
	for _, inf := range c.pods {
		if obj, ok, _ := inf.GetIndexer().GetByKey(namespace + "/" + name); ok {
			return obj.(*corev1.Pod)
		}
	}
	return nil
}

// EachStatefulSet calls fn for every cached app StatefulSet. Objects are
// shared with the cache and must not be modified.
func (c *Caches) EachStatefulSet(fn func(*appsv1.StatefulSet)) {
	for _, inf := range c.statefulSets {
		for _, o := range inf.GetStore().List() {
			fn(o.(*appsv1.StatefulSet))
		}
	}
}
