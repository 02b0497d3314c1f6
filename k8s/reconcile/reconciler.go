// Package reconcile keeps the objects an LRP's StatefulSet owns (registry
// Secret, egress NetworkPolicy, PodDisruptionBudget) in line with the
// StatefulSet, whatever happened to them: a desire cut short by a crash, a
// lost write, an object deleted or edited by hand. It is level-triggered, in
// the shape of Kubernetes' sample-controller: informer events only enqueue
// the StatefulSet's key, and one idempotent sync per key compares the caches
// with what the StatefulSet asks for and writes only the difference, with
// server-side apply.
//
// It runs on every replica that serves the API, not under a Lease: its writes
// are applies of the same content, so replicas repairing the same object at
// once agree, and deleting an orphan is guarded by a grace period and
// preconditions. A Lease would save nothing in steady state (a sync that
// finds everything in order makes no API call) and would stop repairs
// whenever the API server is too slow to renew it. Run still makes its queue
// afresh each time, so it survives being stopped and started again, e.g. by
// a leader.Runner.
package reconcile

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/k8s"
)

// Cache is what the reconciler reads: the StatefulSets and the objects they
// own, from informers (k8s.Caches).
type Cache interface {
	StatefulSet(namespace, name string) *appsv1.StatefulSet
	NetworkPolicy(namespace, name string) *networkingv1.NetworkPolicy
	PodDisruptionBudget(namespace, name string) *policyv1.PodDisruptionBudget
	SecretMeta(namespace, name string) *corev1.Secret
	EachStatefulSetKey(fn func(key string))
	EachLRPOwnedObject(fn func(metav1.Object))
	WaitForSync(ctx context.Context) bool
}

// OwnedObjectsBuilder rebuilds what a StatefulSet should own (k8s.Builder).
type OwnedObjectsBuilder interface {
	OwnedObjects(sts *appsv1.StatefulSet) (*k8s.OwnedObjects, error)
}

// Options tune the reconciler.
type Options struct {
	// OrphanGracePeriod is how long an object without an owner and without
	// its StatefulSet is left alone after a desire last wrote it: a desire
	// writes the Secret and NetworkPolicy before the StatefulSet.
	OrphanGracePeriod time.Duration
	// DesireGracePeriod is how long a new StatefulSet is left to the desire
	// that created it, which writes what it owns a moment later: repairing
	// it at once would only write everything twice.
	DesireGracePeriod time.Duration
	// Workers sync this many StatefulSets at once.
	Workers int
}

// DefaultOptions are the settings Iris runs with. The grace period is far
// longer than any desire takes (the API's write timeout bounds it).
func DefaultOptions() Options {
	return Options{OrphanGracePeriod: 5 * time.Minute, DesireGracePeriod: 10 * time.Second, Workers: 2}
}

// Reconciler is an ifrit runner; see the package comment.
type Reconciler struct {
	logger    lager.Logger
	clientset kubernetes.Interface
	cache     Cache
	builder   OwnedObjectsBuilder
	clock     clock.WithTicker
	opts      Options

	mu sync.Mutex
	// queue is nil while the reconciler is not running; events then are
	// dropped, and Run enqueues every StatefulSet when it starts.
	queue workqueue.TypedRateLimitingInterface[string]

	repairs   atomic.Uint64
	deletions atomic.Uint64
}

// New returns a reconciler of the LRPs in caches. It adds the informers it
// needs to caches, so it must be called before caches run.
func New(logger lager.Logger, clientset kubernetes.Interface, caches *k8s.Caches, builder OwnedObjectsBuilder, clock clock.WithTicker, opts Options) (*Reconciler, error) {
	caches.WatchLRPOwnedObjects()
	r := NewWithCache(logger, clientset, caches, builder, clock, opts)
	if err := caches.AddStatefulSetKeyHandler(r.enqueue); err != nil {
		return nil, err
	}
	if err := caches.AddLRPOwnedObjectEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    r.enqueueOwner,
		UpdateFunc: func(_, obj any) { r.enqueueOwner(obj) },
		DeleteFunc: r.enqueueOwner,
	}); err != nil {
		return nil, err
	}
	return r, nil
}

// NewWithCache returns a reconciler reading cache, with no event handlers:
// for tests that call Sync directly.
func NewWithCache(logger lager.Logger, clientset kubernetes.Interface, cache Cache, builder OwnedObjectsBuilder, clock clock.WithTicker, opts Options) *Reconciler {
	return &Reconciler{logger: logger.Session("reconciler"), clientset: clientset, cache: cache, builder: builder, clock: clock, opts: opts}
}

// Repairs counts owned objects written because they were missing, unowned or
// different; Deletions counts orphans and surplus PDBs deleted.
func (r *Reconciler) Repairs() uint64   { return r.repairs.Load() }
func (r *Reconciler) Deletions() uint64 { return r.deletions.Load() }

// Run waits for the caches, enqueues every StatefulSet and owned object, and
// syncs until signalled.
func (r *Reconciler) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	synced := make(chan bool, 1)
	go func() { synced <- r.cache.WaitForSync(ctx) }()
	select {
	case ok := <-synced:
		if !ok {
			return fmt.Errorf("reconciler: caches did not sync")
		}
	case <-signals:
		return nil
	}

	queue := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "lrp-reconciler", Clock: r.clock})
	r.setQueue(queue)
	defer r.setQueue(nil)
	r.cache.EachStatefulSetKey(queue.Add)
	r.cache.EachLRPOwnedObject(func(obj metav1.Object) { queue.Add(ownerKey(obj)) })

	var workers sync.WaitGroup
	for i := 0; i < max(r.opts.Workers, 1); i++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for r.processNext(ctx, queue) {
			}
		}()
	}
	r.logger.Info("started")
	close(ready)
	<-signals
	queue.ShutDown()
	cancel()
	workers.Wait()
	r.logger.Info("stopped")
	return nil
}

func (r *Reconciler) setQueue(q workqueue.TypedRateLimitingInterface[string]) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queue = q
}

func (r *Reconciler) enqueue(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.queue != nil {
		r.queue.Add(key)
	}
}

func (r *Reconciler) enqueueOwner(obj any) {
	if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tombstone.Obj
	}
	if meta, ok := obj.(metav1.Object); ok {
		r.enqueue(ownerKey(meta))
	}
}

// ownerKey is the key of the StatefulSet an owned object belongs to.
func ownerKey(obj metav1.Object) string {
	return obj.GetNamespace() + "/" + k8s.StatefulSetNameOfOwned(obj)
}

func (r *Reconciler) processNext(ctx context.Context, queue workqueue.TypedRateLimitingInterface[string]) bool {
	key, shutdown := queue.Get()
	if shutdown {
		return false
	}
	defer queue.Done(key)
	requeueAfter, err := r.Sync(ctx, key)
	switch {
	case err != nil:
		r.logger.Error("sync-failed", err, lager.Data{"statefulset": key, "retries": queue.NumRequeues(key)})
		queue.AddRateLimited(key)
	case requeueAfter > 0:
		queue.Forget(key)
		queue.AddAfter(key, requeueAfter)
	default:
		queue.Forget(key)
	}
	return true
}

// Sync makes the objects the StatefulSet namespace/name owns match it, or,
// if it is gone, deletes what it left without an owner. It returns when to
// look again (an orphan still in its grace period), or 0.
func (r *Reconciler) Sync(ctx context.Context, key string) (time.Duration, error) {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil // not a key this reconciler made; nothing to retry
	}
	sts := r.cache.StatefulSet(namespace, name)
	if sts == nil || sts.DeletionTimestamp != nil {
		return r.deleteOrphans(ctx, namespace, name)
	}
	if wait := sts.CreationTimestamp.Add(r.opts.DesireGracePeriod).Sub(r.clock.Now()); wait > 0 {
		return wait, nil
	}
	owned, err := r.builder.OwnedObjects(sts)
	if err != nil {
		return 0, err
	}
	logger := r.logger.Session("sync", lager.Data{"statefulset": key})
	if err := r.syncEgressPolicy(ctx, logger, sts, owned); err != nil {
		return 0, err
	}
	if err := r.syncPDB(ctx, logger, sts, owned.PodDisruptionBudget); err != nil {
		return 0, err
	}
	if err := r.syncRegistrySecret(ctx, logger, sts, owned.RegistrySecretName); err != nil {
		return 0, err
	}
	return 0, r.syncRecipeSecret(ctx, logger, sts, owned)
}

func (r *Reconciler) syncEgressPolicy(ctx context.Context, logger lager.Logger, sts *appsv1.StatefulSet, owned *k8s.OwnedObjects) error {
	current := r.cache.NetworkPolicy(sts.Namespace, sts.Name)
	want := owned.EgressPolicy
	if want == nil && !owned.EgressRecorded && current != nil && !k8s.OwnedBy(current, sts) {
		// A StatefulSet from before the record of its rules: its policy is
		// the only copy of them, so it is adopted as it is.
		want = &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: current.Name, Namespace: current.Namespace, Labels: current.Labels, Annotations: withoutDesiredAt(current.Annotations)},
			Spec:       current.Spec,
		}
		want.OwnerReferences = []metav1.OwnerReference{k8s.OwnerReference(sts)}
	}
	if want == nil {
		// Egress policies are off: a policy left from when they were on
		// stays, as desires with them off leave it today.
		return nil
	}
	reason := "missing"
	if current != nil {
		reason = mismatch(current, sts, equality.Semantic.DeepDerivative(want.Spec, current.Spec) &&
			equality.Semantic.DeepDerivative(want.Labels, current.Labels) &&
			equality.Semantic.DeepDerivative(want.Annotations, current.Annotations))
	}
	if reason == "" {
		return nil
	}
	if _, err := k8s.Apply(ctx, r.clientset, want); err != nil {
		return fmt.Errorf("applying network policy %s/%s: %w", want.Namespace, want.Name, err)
	}
	r.repaired(logger, "NetworkPolicy", want.Name, reason)
	return nil
}

func (r *Reconciler) syncPDB(ctx context.Context, logger lager.Logger, sts *appsv1.StatefulSet, want *policyv1.PodDisruptionBudget) error {
	current := r.cache.PodDisruptionBudget(sts.Namespace, sts.Name)
	if want == nil {
		// One instance or fewer: a PDB would block node drains. One that is
		// not some other StatefulSet's (an older one of this name) goes.
		if current == nil || (k8s.HasStatefulSetOwner(current) && !k8s.OwnedBy(current, sts)) {
			return nil
		}
		err := r.clientset.PolicyV1().PodDisruptionBudgets(current.Namespace).Delete(ctx, current.Name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: ptr.To(current.UID)},
		})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil // gone already, or replaced: its event brings the key back
		}
		if err != nil {
			return fmt.Errorf("deleting pdb %s/%s: %w", current.Namespace, current.Name, err)
		}
		r.deletions.Add(1)
		logger.Info("deleted-surplus-pdb", lager.Data{"pdb": current.Name})
		return nil
	}
	reason := "missing"
	if current != nil {
		reason = mismatch(current, sts, equality.Semantic.DeepDerivative(want.Spec, current.Spec) &&
			equality.Semantic.DeepDerivative(want.Labels, current.Labels))
	}
	if reason == "" {
		return nil
	}
	if _, err := k8s.Apply(ctx, r.clientset, want); err != nil {
		return fmt.Errorf("applying pdb %s/%s: %w", want.Namespace, want.Name, err)
	}
	r.repaired(logger, "PodDisruptionBudget", want.Name, reason)
	return nil
}

// syncRegistrySecret adopts the registry Secret. The Secret is the only
// record of the credentials, so a missing one cannot be rebuilt here; CC's
// next desire of the LRP carries them and restores it.
func (r *Reconciler) syncRegistrySecret(ctx context.Context, logger lager.Logger, sts *appsv1.StatefulSet, name string) error {
	if name == "" {
		return nil
	}
	meta := r.cache.SecretMeta(sts.Namespace, name)
	if meta == nil {
		logger.Error("registry-secret-missing", fmt.Errorf("secret %s/%s does not exist: instances cannot pull until CC desires the LRP again", sts.Namespace, name))
		return nil
	}
	return r.adoptSecret(ctx, logger, sts, meta, "registry")
}

// adoptSecret makes sts the owner of the Secret meta describes, keeping
// its data (which only the API has).
func (r *Reconciler) adoptSecret(ctx context.Context, logger lager.Logger, sts *appsv1.StatefulSet, meta *corev1.Secret, kind string) error {
	if k8s.OwnedBy(meta, sts) {
		return nil
	}
	secret, err := r.clientset.CoreV1().Secrets(sts.Namespace).Get(ctx, meta.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil // its delete event brings the key back
	}
	if err != nil {
		return fmt.Errorf("getting %s secret %s/%s: %w", kind, sts.Namespace, meta.Name, err)
	}
	if _, err := k8s.Apply(ctx, r.clientset, k8s.OwnedSecret(secret, sts)); err != nil {
		return fmt.Errorf("applying %s secret %s/%s: %w", kind, sts.Namespace, meta.Name, err)
	}
	r.repaired(logger, "Secret", meta.Name, "unowned")
	return nil
}

// syncRecipeSecret makes the recipe Secret of sts's pods exist, owned by
// sts and holding the recipe rebuilt from sts. The cache holds Secrets
// without their data, so a changed recipe is told by the digest annotation
// it carries. Without a rebuilt recipe (no record of it on sts) the Secret
// is only adopted, as the registry Secret is.
func (r *Reconciler) syncRecipeSecret(ctx context.Context, logger lager.Logger, sts *appsv1.StatefulSet, owned *k8s.OwnedObjects) error {
	name := owned.RecipeSecretName
	if name == "" {
		return nil
	}
	want := owned.RecipeSecret
	current := r.cache.SecretMeta(sts.Namespace, name)
	if want == nil {
		if current == nil {
			logger.Error("recipe-secret-missing", fmt.Errorf("secret %s/%s does not exist and there is no record to rebuild it from: instances cannot start", sts.Namespace, name))
			return nil
		}
		return r.adoptSecret(ctx, logger, sts, current, "recipe")
	}
	reason := "missing"
	if current != nil {
		reason = mismatch(current, sts, current.Annotations[k8s.AnnotationRecipeSHA256] == want.Annotations[k8s.AnnotationRecipeSHA256])
	}
	if reason == "" {
		return nil
	}
	if _, err := k8s.Apply(ctx, r.clientset, want); err != nil {
		return fmt.Errorf("applying recipe secret %s/%s: %w", sts.Namespace, name, err)
	}
	r.repaired(logger, "Secret", name, reason)
	return nil
}

// deleteOrphans deletes the Secret, NetworkPolicy and PDB named for the
// StatefulSet namespace/name, which is gone, if they have no owner (owned
// ones the garbage collector removes) and no desire wrote them within the
// grace period.
func (r *Reconciler) deleteOrphans(ctx context.Context, namespace, name string) (time.Duration, error) {
	var candidates []metav1.Object
	if p := r.cache.NetworkPolicy(namespace, name); p != nil {
		candidates = append(candidates, p)
	}
	if p := r.cache.PodDisruptionBudget(namespace, name); p != nil {
		candidates = append(candidates, p)
	}
	for _, secret := range []string{k8s.RegistrySecretNameFor(name), k8s.RecipeSecretNameFor(name)} {
		if s := r.cache.SecretMeta(namespace, secret); s != nil {
			candidates = append(candidates, s)
		}
	}
	var due []metav1.Object
	var requeueAfter time.Duration
	now := r.clock.Now()
	for _, obj := range candidates {
		if k8s.HasStatefulSetOwner(obj) {
			continue
		}
		if wait := k8s.LastDesired(obj).Add(r.opts.OrphanGracePeriod).Sub(now); wait > 0 {
			if requeueAfter == 0 || wait < requeueAfter {
				requeueAfter = wait
			}
			continue
		}
		due = append(due, obj)
	}
	if len(due) == 0 {
		return requeueAfter, nil
	}
	// The cache may not have seen a StatefulSet created a moment ago.
	_, err := r.clientset.AppsV1().StatefulSets(namespace).Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		return time.Second, nil
	}
	if !apierrors.IsNotFound(err) {
		return 0, fmt.Errorf("getting statefulset %s/%s: %w", namespace, name, err)
	}
	for _, obj := range due {
		if err := r.deleteOrphan(ctx, obj); err != nil {
			return 0, err
		}
	}
	return requeueAfter, nil
}

// deleteOrphan deletes obj as the cache saw it: if a desire has written it
// since, the precondition fails and the object stays.
func (r *Reconciler) deleteOrphan(ctx context.Context, obj metav1.Object) error {
	opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: ptr.To(obj.GetUID()), ResourceVersion: ptr.To(obj.GetResourceVersion())}}
	var err error
	var kind string
	switch obj.(type) {
	case *networkingv1.NetworkPolicy:
		kind = "NetworkPolicy"
		err = r.clientset.NetworkingV1().NetworkPolicies(obj.GetNamespace()).Delete(ctx, obj.GetName(), opts)
	case *policyv1.PodDisruptionBudget:
		kind = "PodDisruptionBudget"
		err = r.clientset.PolicyV1().PodDisruptionBudgets(obj.GetNamespace()).Delete(ctx, obj.GetName(), opts)
	case *corev1.Secret:
		kind = "Secret"
		err = r.clientset.CoreV1().Secrets(obj.GetNamespace()).Delete(ctx, obj.GetName(), opts)
	}
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone already, or rewritten: its event brings the key back
	}
	if err != nil {
		return fmt.Errorf("deleting orphaned %s %s/%s: %w", kind, obj.GetNamespace(), obj.GetName(), err)
	}
	r.deletions.Add(1)
	r.logger.Info("deleted-orphan", lager.Data{"kind": kind, "namespace": obj.GetNamespace(), "name": obj.GetName()})
	return nil
}

// mismatch says why an existing object is not what sts wants ("unowned",
// "drifted"), or "" if it is.
func mismatch(current metav1.Object, sts *appsv1.StatefulSet, matches bool) string {
	switch {
	case !k8s.OwnedBy(current, sts):
		return "unowned"
	case !matches:
		return "drifted"
	}
	return ""
}

func (r *Reconciler) repaired(logger lager.Logger, kind, name, reason string) {
	r.repairs.Add(1)
	logger.Info("repaired", lager.Data{"kind": kind, "name": name, "reason": reason})
}

func withoutDesiredAt(annotations map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range annotations {
		if k != k8s.AnnotationDesiredAt {
			out[k] = v
		}
	}
	return out
}
