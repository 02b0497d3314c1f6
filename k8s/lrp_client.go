package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"sort"
	"strconv"

	"code.cloudfoundry.org/lager/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/models"
	"github.com/iris-cf/iris/workload"
)

// LRPClient carries out CC's LRP requests against Kubernetes. Reads come from
// the informer caches; a cache miss on a single-LRP lookup falls back to one
// label-selected list, so a request right after a desire sees its own write.
type LRPClient struct {
	clientset  kubernetes.Interface
	caches     *Caches
	builder    *Builder
	namespaces []string
	clock      clock.PassiveClock
}

// NewLRPClient returns a client for LRPs in namespaces; the first is the
// default for requests that name none.
func NewLRPClient(clientset kubernetes.Interface, caches *Caches, builder *Builder, namespaces []string, clock clock.PassiveClock) *LRPClient {
	return &LRPClient{clientset: clientset, caches: caches, builder: builder, namespaces: namespaces, clock: clock}
}

// Desire makes the StatefulSet of lrp and everything it owns (registry
// Secret, egress NetworkPolicy, PDB) exist. Desiring an existing process
// guid again leaves the StatefulSet as first desired (CC retries and
// re-desires freely, and the first desire wins) but still ensures what it
// owns: a desire cut short by a crash is completed by CC's retry. When
// creating the StatefulSet fails, the objects written for it are removed.
func (c *LRPClient) Desire(ctx context.Context, logger lager.Logger, lrp *workload.DesiredLRP) error {
	_, err := c.desire(ctx, logger, lrp)
	return err
}

// ErrAlreadyDesired is DesireNew's answer for a process guid that has a
// StatefulSet already.
var ErrAlreadyDesired = errors.New("the process guid is desired already")

// DesireNew is Desire for fronts whose protocol refuses a second desire of
// a process guid (BBS answers ResourceExists): ErrAlreadyDesired when its
// StatefulSet exists, which stays as first desired (what it owns is still
// ensured, as by Desire).
func (c *LRPClient) DesireNew(ctx context.Context, logger lager.Logger, lrp *workload.DesiredLRP) error {
	existed, err := c.desire(ctx, logger, lrp)
	if err == nil && existed {
		return ErrAlreadyDesired
	}
	return err
}

// desire carries out Desire; existed says the StatefulSet was there before.
func (c *LRPClient) desire(ctx context.Context, logger lager.Logger, lrp *workload.DesiredLRP) (existed bool, err error) {
	logger = logger.Session("desire", lager.Data{"process_guid": lrp.ProcessGUID})
	namespace, err := chooseNamespace(lrp.Namespace, c.namespaces)
	if err != nil {
		return false, err
	}
	objects, err := c.builder.Build(lrp, namespace)
	if err != nil {
		return false, err
	}
	if existing := c.cached(lrp.ProcessGUID); existing != nil {
		return c.alreadyDesired(ctx, logger, existing, objects)
	}

	// The secrets and the egress policy exist before the StatefulSet, so
	// no instance ever starts without its pull credentials or
	// unrestricted. Until the StatefulSet owns them they carry the
	// desire's time, which keeps the reconciler from taking them for
	// orphans.
	now := c.clock.Now()
	policy := objects.EgressPolicy
	// A process guid the cache has not seen may still have a StatefulSet
	// (a re-desire right after its desire). Creating the egress policy,
	// named like the StatefulSet and written first, tells a new LRP from
	// that without a GET of the StatefulSet first: one request fewer per
	// desire, and an existing LRP's policy is left as it is. When the
	// policy exists (that LRP, or what a desire cut short left) the
	// StatefulSet is looked up by name as before.
	var createdPolicy, livePolicy *networkingv1.NetworkPolicy
	if policy != nil {
		stampDesiredAt(policy, now)
		created, err := c.clientset.NetworkingV1().NetworkPolicies(policy.Namespace).Create(ctx, policy, metav1.CreateOptions{FieldManager: FieldManager})
		switch {
		case err == nil:
			createdPolicy, livePolicy = created, created
		case apierrors.IsAlreadyExists(err):
		case apierrors.IsInvalid(err):
			return false, models.Invalidf("invalid egress_rules: %s", apiErrorMessage(err))
		default:
			return false, fmt.Errorf("creating egress network policy %s/%s: %w", policy.Namespace, policy.Name, err)
		}
	}
	if createdPolicy == nil {
		existing, err := c.existing(ctx, objects.StatefulSet)
		if err != nil {
			return false, err
		}
		if existing != nil {
			return c.alreadyDesired(ctx, logger, existing, objects)
		}
	}
	// Whatever fails from here removes what this desire wrote: nothing is
	// left half-created (a CC retry starts afresh).
	undo := func() {
		deleteSecret(ctx, c.clientset, logger, objects.RegistrySecret)
		deleteSecret(ctx, c.clientset, logger, objects.RecipeSecret)
		deleteNetworkPolicy(ctx, c.clientset, logger, policy)
	}
	if secret := objects.RegistrySecret; secret != nil {
		stampDesiredAt(secret, now)
		if err := applySecret(ctx, c.clientset, secret); err != nil {
			undo()
			return false, err
		}
	}
	// Likewise the recipe: an instance without it could not start at all.
	if secret := objects.RecipeSecret; secret != nil {
		stampDesiredAt(secret, now)
		if _, err := Apply(ctx, c.clientset, secret); err != nil {
			undo()
			return false, fmt.Errorf("applying recipe secret %s/%s: %w", secret.Namespace, secret.Name, err)
		}
	}
	if policy != nil && createdPolicy == nil {
		applied, err := Apply(ctx, c.clientset, policy)
		if err != nil {
			undo()
			if apierrors.IsInvalid(err) {
				return false, models.Invalidf("invalid egress_rules: %s", apiErrorMessage(err))
			}
			return false, fmt.Errorf("applying egress network policy %s/%s: %w", policy.Namespace, policy.Name, err)
		}
		// One a desire cut short created is owned by an Update.
		livePolicy = applied.(*networkingv1.NetworkPolicy)
	}
	applied, err := Apply(ctx, c.clientset, objects.StatefulSet)
	if err != nil {
		undo()
		if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
			return false, models.Invalidf("invalid LRP: %s", apiErrorMessage(err))
		}
		return false, fmt.Errorf("applying statefulset %s/%s: %w", namespace, objects.StatefulSet.Name, err)
	}
	sts := applied.(*appsv1.StatefulSet)
	// A failure from here on leaves a running app whose owned objects the
	// reconciler, or CC's retry of this desire, completes.
	if err := c.ensureOwned(ctx, sts, objects, true, livePolicy); err != nil {
		return false, err
	}
	logger.Info("desired", lager.Data{"statefulset": sts.Name, "namespace": namespace, "instances": *sts.Spec.Replicas})
	return false, nil
}

// alreadyDesired completes what existing owns, as a re-desire does.
func (c *LRPClient) alreadyDesired(ctx context.Context, logger lager.Logger, existing *appsv1.StatefulSet, objects *LRPObjects) (bool, error) {
	if err := c.ensureOwned(ctx, existing, objects, false, nil); err != nil {
		return true, err
	}
	logger.Info("already-desired", lager.Data{"statefulset": existing.Name})
	return true, nil
}

// existing returns the live StatefulSet named like want from the API
// server, for a desire racing its own cache entry; nil if there is none.
func (c *LRPClient) existing(ctx context.Context, want *appsv1.StatefulSet) (*appsv1.StatefulSet, error) {
	sts, err := c.clientset.AppsV1().StatefulSets(want.Namespace).Get(ctx, want.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("getting statefulset %s/%s: %w", want.Namespace, want.Name, err)
	}
	if sts.DeletionTimestamp != nil {
		// Applying to it would revive nothing: it is going away.
		return nil, fmt.Errorf("statefulset %s/%s is being deleted: desire again once it is gone", sts.Namespace, sts.Name)
	}
	return sts, nil
}

// ensureOwned writes, owned by sts, what sts should own (see OwnedObjects).
// fromRequest supplies what the StatefulSet cannot: the registry credentials,
// and the egress policy of a StatefulSet that predates the record of its
// rules. created says sts was just created, so it has no PDB to delete;
// livePolicy is its egress policy as this desire wrote it, if it did.
func (c *LRPClient) ensureOwned(ctx context.Context, sts *appsv1.StatefulSet, fromRequest *LRPObjects, created bool, livePolicy *networkingv1.NetworkPolicy) error {
	owned, err := c.builder.OwnedObjects(sts)
	if err != nil {
		return err
	}
	policy := owned.EgressPolicy
	if !owned.EgressRecorded && fromRequest.EgressPolicy != nil {
		policy = fromRequest.EgressPolicy.DeepCopy()
		policy.Name, policy.Namespace = sts.Name, sts.Namespace
		policy.OwnerReferences = []metav1.OwnerReference{OwnerReference(sts)}
		delete(policy.Annotations, AnnotationDesiredAt)
	}
	switch {
	case policy == nil:
	case livePolicy != nil && createdByUpdate(livePolicy):
		if err := c.ownPolicy(ctx, policy, livePolicy); err != nil {
			return fmt.Errorf("updating egress network policy %s/%s: %w", policy.Namespace, policy.Name, err)
		}
	default:
		if _, err := Apply(ctx, c.clientset, policy); err != nil {
			return fmt.Errorf("applying egress network policy %s/%s: %w", policy.Namespace, policy.Name, err)
		}
	}
	if name := owned.RegistrySecretName; name != "" && fromRequest.RegistrySecret != nil {
		secret := fromRequest.RegistrySecret.DeepCopy()
		secret.Name, secret.Namespace = name, sts.Namespace
		if err := applySecret(ctx, c.clientset, OwnedSecret(secret, sts)); err != nil {
			return err
		}
	}
	// The recipe as rebuilt from the StatefulSet, else as this request
	// built it: an existing StatefulSet's pods run the recipe it was first
	// desired with, and a request for it carries the same one.
	if name := owned.RecipeSecretName; name != "" {
		secret := owned.RecipeSecret
		if secret == nil && fromRequest.RecipeSecret != nil {
			secret = fromRequest.RecipeSecret.DeepCopy()
			secret.Name, secret.Namespace = name, sts.Namespace
		}
		if secret != nil {
			if _, err := Apply(ctx, c.clientset, OwnedSecret(secret, sts)); err != nil {
				return fmt.Errorf("applying recipe secret %s/%s: %w", sts.Namespace, name, err)
			}
		}
	}
	if created && owned.PodDisruptionBudget == nil {
		return nil
	}
	return c.reconcilePDB(ctx, sts, owned.PodDisruptionBudget)
}

// ownPolicy writes want, the owned form of the egress policy this desire
// created, as an update of live, the policy as this desire last wrote it.
// A create records its fields as an Update by manager iris, and applies
// (this one's, the reconciler's later) would not remove a field that
// entry owns when they leave it out: the desire stamp would stay, and so
// would anything a later Iris stops writing. The update hands those fields
// to the apply manager, as if the policy had only ever been applied, at the
// cost of the apply it replaces. A conflict (the policy written meanwhile)
// reads it and tries again.
func (c *LRPClient) ownPolicy(ctx context.Context, want, live *networkingv1.NetworkPolicy) error {
	policies := c.clientset.NetworkingV1().NetworkPolicies(want.Namespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if live == nil {
			var err error
			if live, err = policies.Get(ctx, want.Name, metav1.GetOptions{}); err != nil {
				return err
			}
		}
		update := want.DeepCopy()
		update.UID, update.ResourceVersion, update.Generation, update.CreationTimestamp = live.UID, live.ResourceVersion, live.Generation, live.CreationTimestamp
		update.ManagedFields = appliedFields(live.ManagedFields)
		_, err := policies.Update(ctx, update, metav1.UpdateOptions{FieldManager: FieldManager})
		live = nil
		return err
	})
}

// createdByUpdate says Iris's field manager owns fields of obj by an
// Update (a create), which its applies cannot remove.
func createdByUpdate(obj metav1.Object) bool {
	for _, f := range obj.GetManagedFields() {
		if f.Manager == FieldManager && f.Operation == metav1.ManagedFieldsOperationUpdate && f.Subresource == "" {
			return true
		}
	}
	return false
}

// appliedFields are fields with Iris's Update entry made its Apply entry,
// or dropped when it has one already: the update that writes them sets
// every field Iris wants, and its own changes are recorded afresh.
func appliedFields(fields []metav1.ManagedFieldsEntry) []metav1.ManagedFieldsEntry {
	applied := false
	for _, f := range fields {
		applied = applied || f.Manager == FieldManager && f.Operation == metav1.ManagedFieldsOperationApply && f.Subresource == ""
	}
	out := make([]metav1.ManagedFieldsEntry, 0, len(fields))
	for _, f := range fields {
		if f.Manager == FieldManager && f.Operation == metav1.ManagedFieldsOperationUpdate && f.Subresource == "" {
			if applied {
				continue
			}
			f.Operation = metav1.ManagedFieldsOperationApply
		}
		out = append(out, f)
	}
	return out
}

// applySecret writes a registry secret. A secret left over from a desire
// that failed half way takes the new credentials.
func applySecret(ctx context.Context, clientset kubernetes.Interface, secret *corev1.Secret) error {
	_, err := Apply(ctx, clientset, secret)
	if apierrors.IsInvalid(err) {
		return models.Invalidf("invalid registry credentials: %s", apiErrorMessage(err))
	}
	if err != nil {
		return fmt.Errorf("applying registry secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	return nil
}

// patcher is the method of a typed client (Secrets) that adopt needs.
type patcher[T any] interface {
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error)
}

// adopt makes owner the owner of the named object, so that deleting the
// owner collects it.
func adopt[T any](ctx context.Context, client patcher[T], name string, owner metav1.OwnerReference) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"ownerReferences": []metav1.OwnerReference{owner}}})
	if err != nil {
		return err
	}
	_, err = client.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

func deleteSecret(ctx context.Context, clientset kubernetes.Interface, logger lager.Logger, secret *corev1.Secret) {
	if secret == nil {
		return
	}
	err := clientset.CoreV1().Secrets(secret.Namespace).Delete(ctx, secret.Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		logger.Error("deleting-secret", err, lager.Data{"secret": secret.Name})
	}
}

func deleteNetworkPolicy(ctx context.Context, clientset kubernetes.Interface, logger lager.Logger, policy *networkingv1.NetworkPolicy) {
	if policy == nil {
		return
	}
	err := clientset.NetworkingV1().NetworkPolicies(policy.Namespace).Delete(ctx, policy.Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		logger.Error("deleting-egress-policy", err, lager.Data{"network_policy": policy.Name})
	}
}

// Get returns the desired state of one LRP.
func (c *LRPClient) Get(ctx context.Context, guid, version string) (*models.DesiredLRP, error) {
	sts, err := c.lookup(ctx, guid, version)
	if err != nil {
		return nil, err
	}
	return desiredLRP(sts), nil
}

func desiredLRP(sts *appsv1.StatefulSet) *models.DesiredLRP {
	lrp := &models.DesiredLRP{
		ProcessGUID: sts.Annotations[AnnotationProcessGUID],
		Instances:   ptr.Deref(sts.Spec.Replicas, 0),
		Annotation:  sts.Annotations[AnnotationLastUpdated],
	}
	if raw := sts.Annotations[AnnotationRoutes]; raw != "" {
		_ = json.Unmarshal([]byte(raw), &lrp.Routes)
	}
	return lrp
}

// List returns the scheduling infos of every LRP, from the cache only.
func (c *LRPClient) List() []models.DesiredLRPSchedulingInfo {
	var infos []models.DesiredLRPSchedulingInfo
	for info := range c.SchedulingInfos() {
		infos = append(infos, *info)
	}
	return infos
}

// SchedulingInfos yields List's infos one at a time, without collecting
// them: GET /apps writes each as it comes (at 100,000 LRPs, growing the
// collected list cost a fifth of the answer). The yielded info is reused
// for the next one.
func (c *LRPClient) SchedulingInfos() iter.Seq[*models.DesiredLRPSchedulingInfo] {
	return func(yield func(*models.DesiredLRPSchedulingInfo) bool) {
		var info models.DesiredLRPSchedulingInfo
		stopped := false
		c.caches.EachCachedStatefulSet(func(sts *CachedStatefulSet) {
			if stopped || sts.GetDeletionTimestamp() != nil {
				return
			}
			processGUID, _ := sts.Annotation(AnnotationProcessGUID)
			lastUpdated, _ := sts.Annotation(AnnotationLastUpdated)
			info = models.DesiredLRPSchedulingInfo{
				DesiredLRPKey: models.DesiredLRPKey{ProcessGUID: processGUID},
				GUID:          sts.Label(LabelGUID),
				Version:       sts.Label(LabelVersion),
				Annotation:    lastUpdated,
			}
			stopped = !yield(&info)
		})
	}
}

// Update scales the LRP and replaces its routes and last_updated annotation.
// Scaling to zero keeps the StatefulSet, so CC can scale up again.
func (c *LRPClient) Update(ctx context.Context, logger lager.Logger, req *models.UpdateDesiredLRPRequest) error {
	logger = logger.Session("update", lager.Data{"guid": req.GUID, "version": req.Version})
	cached, err := c.lookup(ctx, req.GUID, req.Version)
	if err != nil {
		return err
	}
	var routes string
	if req.Update.Routes != nil {
		if err := req.Update.Routes.ValidatePorts(exposedPorts(cached)); err != nil {
			return err
		}
		if routes, err = workload.MarshalRoutes(req.Update.Routes); err != nil {
			return err
		}
	}

	var updated *appsv1.StatefulSet
	statefulSets := c.clientset.AppsV1().StatefulSets(cached.Namespace)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sts, err := statefulSets.Get(ctx, cached.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if req.Update.Instances != nil {
			sts.Spec.Replicas = ptr.To(int32(*req.Update.Instances))
		}
		if req.Update.Routes != nil {
			sts.Annotations[AnnotationRoutes] = routes
		}
		if req.Update.Annotation != "" {
			sts.Annotations[AnnotationLastUpdated] = req.Update.Annotation
		}
		updated, err = statefulSets.Update(ctx, sts, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return models.ErrNotFound
	}
	if apierrors.IsInvalid(err) {
		return models.Invalidf("invalid update: %s", apiErrorMessage(err))
	}
	if err != nil {
		return fmt.Errorf("updating statefulset %s/%s: %w", cached.Namespace, cached.Name, err)
	}
	if err := c.reconcilePDB(ctx, updated, PodDisruptionBudget(updated)); err != nil {
		return err
	}
	logger.Info("updated", lager.Data{"statefulset": updated.Name, "instances": *updated.Spec.Replicas})
	return nil
}

// EnsurePDB makes sts's PDB follow its instance count, for a front that
// changed the StatefulSet itself (the BBS front's update).
func (c *LRPClient) EnsurePDB(ctx context.Context, sts *appsv1.StatefulSet) error {
	return c.reconcilePDB(ctx, sts, PodDisruptionBudget(sts))
}

// reconcilePDB makes the PDB's existence follow the instance count: want
// (nil for none) is applied, owned by sts, or the PDB deleted.
func (c *LRPClient) reconcilePDB(ctx context.Context, sts *appsv1.StatefulSet, want *policyv1.PodDisruptionBudget) error {
	if want == nil {
		err := c.clientset.PolicyV1().PodDisruptionBudgets(sts.Namespace).Delete(ctx, sts.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting pdb %s/%s: %w", sts.Namespace, sts.Name, err)
		}
		return nil
	}
	want.OwnerReferences = []metav1.OwnerReference{OwnerReference(sts)}
	if _, err := Apply(ctx, c.clientset, want); err != nil {
		return fmt.Errorf("applying pdb %s/%s: %w", sts.Namespace, sts.Name, err)
	}
	return nil
}

// Stop deletes the LRP; its pods, PDB, egress policy and registry Secret are garbage
// collected through their owner references.
func (c *LRPClient) Stop(ctx context.Context, logger lager.Logger, guid, version string) error {
	logger = logger.Session("stop", lager.Data{"guid": guid, "version": version})
	sts, err := c.lookup(ctx, guid, version)
	if err != nil {
		return err
	}
	err = c.clientset.AppsV1().StatefulSets(sts.Namespace).Delete(ctx, sts.Name, metav1.DeleteOptions{
		PropagationPolicy: ptr.To(metav1.DeletePropagationBackground),
	})
	if apierrors.IsNotFound(err) {
		return models.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("deleting statefulset %s/%s: %w", sts.Namespace, sts.Name, err)
	}
	// The secret and the policy would be collected too, but only if adopting
	// them succeeded.
	deleteSecret(ctx, c.clientset, logger, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: sts.Name + registrySecretSuffix, Namespace: sts.Namespace}})
	deleteNetworkPolicy(ctx, c.clientset, logger, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: sts.Name, Namespace: sts.Namespace}})
	logger.Info("stopped", lager.Data{"statefulset": sts.Name})
	return nil
}

// StopInstance deletes one instance's pod; the StatefulSet controller starts
// it again, which is CC's "restart instance".
func (c *LRPClient) StopInstance(ctx context.Context, logger lager.Logger, guid, version string, index int) error {
	sts, err := c.lookup(ctx, guid, version)
	if err != nil {
		return err
	}
	replicas := int(ptr.Deref(sts.Spec.Replicas, 0))
	if index < 0 || index >= replicas {
		return models.Invalidf("instance index %d out of range: the LRP has %d instances", index, replicas)
	}
	name := sts.Name + "-" + strconv.Itoa(index)
	err = c.clientset.CoreV1().Pods(sts.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting pod %s/%s: %w", sts.Namespace, name, err)
	}
	logger.Info("stopped-instance", lager.Data{"guid": guid, "version": version, "index": index, "pod": name})
	return nil
}

// Instances reports one entry per desired instance, from the pod cache.
// Indices without a pod yet are UNCLAIMED.
func (c *LRPClient) Instances(ctx context.Context, guid, version string) ([]*models.Instance, error) {
	sts, err := c.lookup(ctx, guid, version)
	if err != nil {
		return nil, err
	}
	replicas := int(ptr.Deref(sts.Spec.Replicas, 0))
	byIndex := map[int]*models.Instance{}
	for _, pod := range c.caches.PodsByProcessGUID(sts.Annotations[AnnotationProcessGUID]) {
		index, err := strconv.Atoi(pod.Labels[PodIndexLabel])
		if err != nil || pod.Namespace != sts.Namespace {
			continue
		}
		byIndex[index] = InstanceFromPod(pod, index)
	}
	for i := 0; i < replicas; i++ {
		if _, ok := byIndex[i]; !ok {
			byIndex[i] = &models.Instance{Index: i, State: models.InstanceUnclaimed, Since: unclaimedSince(sts)}
		}
	}
	instances := make([]*models.Instance, 0, len(byIndex))
	for _, inst := range byIndex {
		instances = append(instances, inst)
	}
	sort.Slice(instances, func(i, j int) bool { return instances[i].Index < instances[j].Index })
	return instances, nil
}

// cached returns the live (not deleting) StatefulSet of processGUID from the cache.
func (c *LRPClient) cached(processGUID string) *appsv1.StatefulSet {
	for _, sts := range c.caches.StatefulSetsByProcessGUID(processGUID) {
		if sts.DeletionTimestamp == nil {
			return sts
		}
	}
	return nil
}

// StatefulSet is the live StatefulSet of guid/version, from the cache or,
// when the cache has not seen it yet, from the API; models.ErrNotFound if
// there is none. Fronts whose clients read right after they write (BBS)
// look up single LRPs with it.
func (c *LRPClient) StatefulSet(ctx context.Context, guid, version string) (*appsv1.StatefulSet, error) {
	return c.lookup(ctx, guid, version)
}

// lookup finds the StatefulSet of guid/version, in the cache first.
func (c *LRPClient) lookup(ctx context.Context, guid, version string) (*appsv1.StatefulSet, error) {
	processGUID := guid + "-" + version
	if sts := c.cached(processGUID); sts != nil {
		return sts, nil
	}
	selector := labels.SelectorFromSet(labels.Set{
		LabelGUID:       sanitizeLabelValue(guid),
		LabelVersion:    sanitizeLabelValue(version),
		LabelSourceType: SourceTypeApp,
	}).String()
	for _, ns := range c.namespaces {
		list, err := c.clientset.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return nil, fmt.Errorf("listing statefulsets in %s: %w", ns, err)
		}
		for i := range list.Items {
			sts := &list.Items[i]
			if sts.DeletionTimestamp == nil && sts.Annotations[AnnotationProcessGUID] == processGUID {
				return sts, nil
			}
		}
	}
	return nil, models.ErrNotFound
}

func apiErrorMessage(err error) string {
	if status, ok := err.(apierrors.APIStatus); ok {
		return status.Status().Message
	}
	return err.Error()
}
