package k8s

import (
	"context"
	"fmt"
	"os"
	"time"

	"code.cloudfoundry.org/lager/v3"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	appsinformers "k8s.io/client-go/informers/apps/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	networkinginformers "k8s.io/client-go/informers/networking/v1"
	policyinformers "k8s.io/client-go/informers/policy/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
)

// byProcessGUID indexes StatefulSets and pods by CC's process guid, which is
// too long (73 chars) for a label and so lives in an annotation.
const byProcessGUID = "process_guid"

// byAppGUID indexes the StatefulSets that run in an isolation segment by
// their app guid label: a task or staging of the app runs in its LRPs'
// segment (see IsolationSegmentOfApp). Those without a segment, most of a
// foundation's, are left out: an index entry costs about 250 bytes per LRP.
const byAppGUID = "app_guid"

// byTaskGUID indexes task and staging Jobs by their task or staging guid
// label; byJobName indexes their pods by namespace/job name.
const (
	byTaskGUID = "task_guid"
	byJobName  = "job_name"
)

// Caches are the informer caches of app StatefulSets and pods in the
// workloads namespaces. They serve every read of the API, so that CC's
// polling costs no API-server traffic.
type Caches struct {
	clientset    kubernetes.Interface
	namespaces   []string
	factories    []informers.SharedInformerFactory
	statefulSets []cache.SharedIndexInformer
	pods         []cache.SharedIndexInformer
	jobs         []cache.SharedIndexInformer
	jobPods      []cache.SharedIndexInformer
	// appFactories watch source_type=APP objects, one per namespace.
	appFactories []informers.SharedInformerFactory
	// The objects LRPs own, watched only once WatchLRPOwnedObjects is called.
	networkPolicies []cache.SharedIndexInformer
	pdbs            []cache.SharedIndexInformer
	secrets         []cache.SharedIndexInformer
}

// NewCaches prepares informers for the given namespaces; Run starts them.
// Only Iris's objects are watched: StatefulSets and pods labelled
// source_type=APP, and task and staging Jobs and their pods
// (source_type=TASK or STG).
func NewCaches(clientset kubernetes.Interface, namespaces []string) (*Caches, error) {
	c := &Caches{clientset: clientset, namespaces: namespaces}
	selector := labels.SelectorFromSet(labels.Set{LabelSourceType: SourceTypeApp}).String()
	taskSelector := LabelSourceType + " in (" + SourceTypeTask + "," + SourceTypeStaging + ")"
	lean := newLeaner(clock.RealClock{})
	for _, ns := range namespaces {
		taskFactory := informers.NewSharedInformerFactoryWithOptions(clientset, 0,
			informers.WithNamespace(ns),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = taskSelector }),
			informers.WithTransform(stripManagedFields),
		)
		jobs := taskFactory.Batch().V1().Jobs().Informer()
		if err := jobs.AddIndexers(cache.Indexers{byTaskGUID: func(obj any) ([]string, error) {
			labels := obj.(metav1.Object).GetLabels()
			if guid := labels[LabelTaskGUID]; guid != "" {
				return []string{guid}, nil
			}
			if guid := labels[LabelStagingGUID]; guid != "" {
				return []string{guid}, nil
			}
			return nil, nil
		}}); err != nil {
			return nil, fmt.Errorf("adding task guid indexer: %w", err)
		}
		jobPods := taskFactory.Core().V1().Pods().Informer()
		if err := jobPods.AddIndexers(cache.Indexers{byJobName: func(obj any) ([]string, error) {
			pod := obj.(metav1.Object)
			if name := pod.GetLabels()[batchv1.JobNameLabel]; name != "" {
				return []string{pod.GetNamespace() + "/" + name}, nil
			}
			return nil, nil
		}}); err != nil {
			return nil, fmt.Errorf("adding job name indexer: %w", err)
		}
		c.jobs = append(c.jobs, jobs)
		c.jobPods = append(c.jobPods, jobPods)
		c.factories = append(c.factories, taskFactory)

		factory := informers.NewSharedInformerFactoryWithOptions(clientset, 0,
			informers.WithNamespace(ns),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }),
			informers.WithTransform(lean.transform),
		)
		// Made without the factory's namespace index: each informer
		// watches one namespace, and the index costs an entry per LRP and
		// per instance.
		tweak := func(o *metav1.ListOptions) { o.LabelSelector = selector }
		sts := factory.InformerFor(&appsv1.StatefulSet{}, func(client kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
			return appsinformers.NewFilteredStatefulSetInformer(client, ns, resync,
				cache.Indexers{byProcessGUID: processGUIDIndex, byAppGUID: appGUIDIndex}, tweak)
		})
		pods := factory.InformerFor(&corev1.Pod{}, func(client kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
			return coreinformers.NewFilteredPodInformer(client, ns, resync, cache.Indexers{byProcessGUID: processGUIDIndex}, tweak)
		})
		c.factories = append(c.factories, factory)
		c.appFactories = append(c.appFactories, factory)
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
	if sts, ok := obj.(*CachedStatefulSet); ok {
		if guid, _ := sts.Annotation(AnnotationProcessGUID); guid != "" {
			return []string{guid}, nil
		}
		return nil, nil
	}
	// Cached pods are metav1.Objects, not ObjectMetaAccessors (cachedPod).
	accessor, err := meta.Accessor(obj)
	if err != nil {
		return nil, nil
	}
	if guid := accessor.GetAnnotations()[AnnotationProcessGUID]; guid != "" {
		return []string{guid}, nil
	}
	return nil, nil
}

func appGUIDIndex(obj any) ([]string, error) {
	sts, ok := obj.(*CachedStatefulSet)
	if !ok {
		return nil, nil
	}
	if segment, _ := sts.Annotation(AnnotationIsolationSegment); segment == "" {
		return nil, nil
	}
	if guid := sts.Label(LabelAppGUID); guid != "" {
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
		syncs = append(syncs, c.statefulSets[i].HasSynced, c.pods[i].HasSynced, c.jobs[i].HasSynced, c.jobPods[i].HasSynced)
	}
	for _, owned := range [][]cache.SharedIndexInformer{c.networkPolicies, c.pdbs, c.secrets} {
		for _, inf := range owned {
			syncs = append(syncs, inf.HasSynced)
		}
	}
	return cache.WaitForCacheSync(ctx.Done(), syncs...)
}

// AddEventHandlers registers handlers for app StatefulSet and pod events in
// every workloads namespace. Handlers added before Run see every existing
// object as an add once the caches fill.
func (c *Caches) AddEventHandlers(statefulSets, pods cache.ResourceEventHandler) error {
	for i := range c.statefulSets {
		// Handlers of pods alone pass an empty one: making a StatefulSet
		// for it on every event would only be garbage.
		if !isEmptyHandler(statefulSets) {
			if _, err := c.statefulSets[i].AddEventHandler(recordHandler{statefulSets, asStatefulSet}); err != nil {
				return fmt.Errorf("adding statefulset handler: %w", err)
			}
		}
		if _, err := c.pods[i].AddEventHandler(recordHandler{pods, asPod}); err != nil {
			return fmt.Errorf("adding pod handler: %w", err)
		}
	}
	return nil
}

// isEmptyHandler reports whether h is a handler that does nothing.
func isEmptyHandler(h cache.ResourceEventHandler) bool {
	funcs, ok := h.(cache.ResourceEventHandlerFuncs)
	return ok && funcs.AddFunc == nil && funcs.UpdateFunc == nil && funcs.DeleteFunc == nil
}

// StatefulSetsByProcessGUID returns the cached StatefulSets of a process guid.
func (c *Caches) StatefulSetsByProcessGUID(processGUID string) []*appsv1.StatefulSet {
	return convertAll(indexedBy[any](c.statefulSets, byProcessGUID, processGUID), statefulSetOf)
}

// CachedStatefulSetsByProcessGUID returns the records of the cached
// StatefulSets of a process guid, as the cache keeps them: for readers of
// a few fields of many LRPs (CC's instances of a thousand guids).
func (c *Caches) CachedStatefulSetsByProcessGUID(processGUID string) []*CachedStatefulSet {
	return convertAll(indexedBy[any](c.statefulSets, byProcessGUID, processGUID), cachedStatefulSetOf)
}

// IsolatedStatefulSetsByAppGUID returns the cached StatefulSets of an app
// (all its processes and versions) that run in an isolation segment.
func (c *Caches) IsolatedStatefulSetsByAppGUID(appGUID string) []*appsv1.StatefulSet {
	return convertAll(indexedBy[any](c.statefulSets, byAppGUID, sanitizeLabelValue(appGUID)), statefulSetOf)
}

// PodsByProcessGUID returns the cached pods of a process guid.
func (c *Caches) PodsByProcessGUID(processGUID string) []*corev1.Pod {
	return convertAll(indexedBy[any](c.pods, byProcessGUID, processGUID), podOf)
}

func indexedBy[T any](informers []cache.SharedIndexInformer, index, value string) []T {
	var out []T
	for _, inf := range informers {
		objs, _ := inf.GetIndexer().ByIndex(index, value)
		for _, o := range objs {
			out = append(out, o.(T))
		}
	}
	return out
}

// AddJobEventHandler registers a handler for task and staging Job events.
func (c *Caches) AddJobEventHandler(handler cache.ResourceEventHandler) error {
	for _, inf := range c.jobs {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("adding job handler: %w", err)
		}
	}
	return nil
}

// AddJobPodEventHandler registers a handler for the pods of task and staging Jobs.
func (c *Caches) AddJobPodEventHandler(handler cache.ResourceEventHandler) error {
	for _, inf := range c.jobPods {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("adding job pod handler: %w", err)
		}
	}
	return nil
}

// JobsByTaskGUID returns the cached Jobs of a task guid.
func (c *Caches) JobsByTaskGUID(taskGUID string) []*batchv1.Job {
	return indexedBy[*batchv1.Job](c.jobs, byTaskGUID, taskGUID)
}

// Job returns the cached Job namespace/name, or nil.
func (c *Caches) Job(namespace, name string) *batchv1.Job {
	return byKey[*batchv1.Job](c.jobs, namespace+"/"+name)
}

// EachJob calls fn for every cached task Job.
func (c *Caches) EachJob(fn func(*batchv1.Job)) {
	for _, inf := range c.jobs {
		for _, o := range inf.GetStore().List() {
			fn(o.(*batchv1.Job))
		}
	}
}

// JobPods returns the cached pods of the Job namespace/name.
func (c *Caches) JobPods(namespace, jobName string) []*corev1.Pod {
	return indexedBy[*corev1.Pod](c.jobPods, byJobName, namespace+"/"+jobName)
}

func byKey[T any](informers []cache.SharedIndexInformer, key string) T {
	var zero T
	for _, inf := range informers {
		if obj, ok, _ := inf.GetIndexer().GetByKey(key); ok {
			return obj.(T)
		}
	}
	return zero
}

// Pod returns the cached pod namespace/name, or nil.
func (c *Caches) Pod(namespace, name string) *corev1.Pod {
	return podOf(byKey[any](c.pods, namespace+"/"+name))
}

// EachStatefulSetKey calls fn with the namespace/name key of every cached
// app StatefulSet (the reconciler's pass over all of them at start).
func (c *Caches) EachStatefulSetKey(fn func(key string)) {
	for _, inf := range c.statefulSets {
		for _, key := range inf.GetStore().ListKeys() {
			fn(key)
		}
	}
}

// EachCachedStatefulSet calls fn with the record of every cached app
// StatefulSet, as the cache keeps it: CC's sync lists read a few
// annotations of each of 100,000 LRPs per call.
func (c *Caches) EachCachedStatefulSet(fn func(*CachedStatefulSet)) {
	for _, inf := range c.statefulSets {
		for _, o := range inf.GetStore().List() {
			if sts := cachedStatefulSetOf(o); sts != nil {
				fn(sts)
			}
		}
	}
}

// EachAppPod calls fn for every cached app pod. Pods share their values
// with the cache and must not be modified; each is made for the call (see
// cachedPod), so a reader of every pod should not keep them all.
func (c *Caches) EachAppPod(fn func(*corev1.Pod)) {
	for _, inf := range c.pods {
		for _, o := range inf.GetStore().List() {
			fn(podOf(o))
		}
	}
}

// WatchLRPOwnedObjects adds informers for the NetworkPolicies, PDBs and
// Secrets (registry and recipe) of LRPs (labelled source_type=APP, like their
// StatefulSets); call it before Run. Only the reconciler needs them. Secrets
// are cached without their data: the reconciler needs to know that a Secret
// exists and who owns it, and credentials kept in memory could only leak.
func (c *Caches) WatchLRPOwnedObjects() {
	if len(c.secrets) > 0 {
		return
	}
	selector := labels.SelectorFromSet(labels.Set{LabelSourceType: SourceTypeApp}).String()
	tweak := func(o *metav1.ListOptions) { o.LabelSelector = selector }
	for i, factory := range c.appFactories {
		ns := c.namespaces[i]
		// Made without the factory's namespace index: each informer
		// watches one namespace and is read by key, and the index costs
		// an entry per object.
		c.networkPolicies = append(c.networkPolicies, factory.InformerFor(&networkingv1.NetworkPolicy{},
			func(client kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
				return networkinginformers.NewFilteredNetworkPolicyInformer(client, ns, resync, cache.Indexers{}, tweak)
			}))
		c.pdbs = append(c.pdbs, factory.InformerFor(&policyv1.PodDisruptionBudget{},
			func(client kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
				return policyinformers.NewFilteredPodDisruptionBudgetInformer(client, ns, resync, cache.Indexers{}, tweak)
			}))
		secretFactory := informers.NewSharedInformerFactoryWithOptions(c.clientset, 0,
			informers.WithNamespace(ns),
			informers.WithTransform(stripSecretData),
		)
		c.secrets = append(c.secrets, secretFactory.InformerFor(&corev1.Secret{},
			func(client kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
				return coreinformers.NewFilteredSecretInformer(client, ns, resync, cache.Indexers{}, tweak)
			}))
		c.factories = append(c.factories, secretFactory)
	}
}

// stripSecretData keeps a Secret's metadata only.
func stripSecretData(obj any) (any, error) {
	if secret, ok := obj.(*corev1.Secret); ok {
		secret.Data, secret.StringData = nil, nil
	}
	return stripManagedFields(obj)
}

// AddLRPOwnedObjectEventHandler registers handler for the objects
// WatchLRPOwnedObjects watches. It gets *networkingv1.NetworkPolicy,
// *policyv1.PodDisruptionBudget and *corev1.Secret (see cachedNetworkPolicy).
func (c *Caches) AddLRPOwnedObjectEventHandler(handler cache.ResourceEventHandler) error {
	for _, owned := range [][]cache.SharedIndexInformer{c.networkPolicies, c.pdbs, c.secrets} {
		for _, inf := range owned {
			if _, err := inf.AddEventHandler(recordHandler{handler, ownedObjectOf}); err != nil {
				return fmt.Errorf("adding owned object handler: %w", err)
			}
		}
	}
	return nil
}

// AddStatefulSetKeyHandler calls fn with the namespace/name key of each app
// StatefulSet added, updated or deleted: for a reader of keys alone (the
// reconciler), no StatefulSet is made per event.
func (c *Caches) AddStatefulSetKeyHandler(fn func(key string)) error {
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			fn(key)
		}
	}
	handler := cache.ResourceEventHandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, obj any) { enqueue(obj) }, DeleteFunc: enqueue}
	for _, inf := range c.statefulSets {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("adding statefulset handler: %w", err)
		}
	}
	return nil
}

// StatefulSet returns the cached app StatefulSet namespace/name, or nil.
func (c *Caches) StatefulSet(namespace, name string) *appsv1.StatefulSet {
	return statefulSetOf(byKey[any](c.statefulSets, namespace+"/"+name))
}

// NetworkPolicy returns the cached LRP NetworkPolicy namespace/name, or nil.
func (c *Caches) NetworkPolicy(namespace, name string) *networkingv1.NetworkPolicy {
	policy, _ := ownedObjectOf(byKey[any](c.networkPolicies, namespace+"/"+name)).(*networkingv1.NetworkPolicy)
	return policy
}

// PodDisruptionBudget returns the cached LRP PDB namespace/name, or nil.
func (c *Caches) PodDisruptionBudget(namespace, name string) *policyv1.PodDisruptionBudget {
	pdb, _ := ownedObjectOf(byKey[any](c.pdbs, namespace+"/"+name)).(*policyv1.PodDisruptionBudget)
	return pdb
}

// SecretMeta returns the cached LRP registry Secret namespace/name without
// its data, or nil.
func (c *Caches) SecretMeta(namespace, name string) *corev1.Secret {
	return byKey[*corev1.Secret](c.secrets, namespace+"/"+name)
}

// EachLRPOwnedObject calls fn for every cached LRP NetworkPolicy, PDB and
// registry Secret. Objects share their values with the cache and must not
// be modified; policies and PDBs are made for the call.
func (c *Caches) EachLRPOwnedObject(fn func(metav1.Object)) {
	for _, owned := range [][]cache.SharedIndexInformer{c.networkPolicies, c.pdbs, c.secrets} {
		for _, inf := range owned {
			for _, o := range inf.GetStore().List() {
				fn(ownedObjectOf(o).(metav1.Object))
			}
		}
	}
}
