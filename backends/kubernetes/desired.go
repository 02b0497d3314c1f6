package kubernetes

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	"github.com/google/uuid"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sclient "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/k8s"
	irismodels "github.com/iris-cf/iris/models"
	"github.com/iris-cf/iris/workload"
)

const (
	// AnnotationDesiredLRP holds, on the StatefulSet only, the BBS
	// DesiredLRP as last desired or updated (protobuf, base64), without its
	// image credentials (those live in the registry Secret): BBS's get and
	// list routes answer from it, so a restarted Iris loses nothing.
	AnnotationDesiredLRP = "cloudfoundry.org/bbs_desired_lrp"
	// AnnotationDomain is the LRP's BBS domain, on the StatefulSet and its
	// pods (instance events need it after the StatefulSet is gone). Its
	// presence marks an LRP desired through the BBS front.
	AnnotationDomain = k8s.AnnotationBBSDomain
)

// LRPWriter is what the backend needs of k8s.LRPClient to create and
// delete an LRP's objects.
type LRPWriter interface {
	Desire(ctx context.Context, logger lager.Logger, lrp *workload.DesiredLRP) error
	Stop(ctx context.Context, logger lager.Logger, guid, version string) error
	EnsurePDB(ctx context.Context, sts *appsv1.StatefulSet) error
}

// Backend carries out the BBS front's desired and actual LRP routes on
// Kubernetes. Reads come from the informer caches.
type Backend struct {
	clientset k8sclient.Interface
	caches    *k8s.Caches
	lrps      LRPWriter
	opts      TranslateOptions
}

// NewBackend returns a backend creating LRPs through lrps and reading them from caches.
func NewBackend(clientset k8sclient.Interface, caches *k8s.Caches, lrps LRPWriter, opts TranslateOptions) *Backend {
	return &Backend{clientset: clientset, caches: caches, lrps: lrps, opts: opts}
}

// DesireLRP creates lrp's objects; ResourceExists if the guid is taken.
func (b *Backend) DesireLRP(ctx context.Context, logger lager.Logger, lrp *models.DesiredLRP) error {
	if b.statefulSet(lrp.ProcessGuid) != nil {
		return models.ErrResourceExists
	}
	w, err := Translate(lrp, b.opts)
	if err != nil {
		return err
	}
	stored := storedCopy(lrp)
	stored.ModificationTag = &models.ModificationTag{Epoch: newEpoch(), Index: 0}
	state, err := encodeDesiredLRP(stored)
	if err != nil {
		return err
	}
	w.FrontAnnotations = map[string]string{AnnotationDomain: lrp.Domain}
	w.FrontState = map[string]string{AnnotationDesiredLRP: state}
	if err := b.lrps.Desire(ctx, logger, w); err != nil {
		return bbsError(err)
	}
	return nil
}

// UpdateDesiredLRP changes instances, routes, annotation and metric tags,
// bumping the modification tag's index, as BBS does.
func (b *Backend) UpdateDesiredLRP(ctx context.Context, logger lager.Logger, processGUID string, update *models.DesiredLRPUpdate) error {
	cached := b.statefulSet(processGUID)
	if cached == nil {
		return models.ErrResourceNotFound
	}
	if update.InstancesExists() {
		if err := b.opts.checkInstances(update.GetInstances()); err != nil {
			return err
		}
	}
	var routesJSON string
	if update.Routes != nil {
		var err error
		if routesJSON, err = workload.MarshalRoutes(routes(update.Routes)); err != nil {
			return bbsError(err)
		}
	}
	statefulSets := b.clientset.AppsV1().StatefulSets(cached.Namespace)
	var updated *appsv1.StatefulSet
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sts, err := statefulSets.Get(ctx, cached.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		lrp, err := desiredLRPFromStatefulSet(sts)
		if err != nil {
			return err
		}
		applyUpdate(lrp, update)
		state, err := encodeDesiredLRP(lrp)
		if err != nil {
			return err
		}
		sts.Annotations[AnnotationDesiredLRP] = state
		sts.Spec.Replicas = ptr.To(lrp.Instances)
		if update.Routes != nil {
			sts.Annotations[k8s.AnnotationRoutes] = routesJSON
		}
		sts.Annotations[k8s.AnnotationLastUpdated] = lrp.Annotation
		updated, err = statefulSets.Update(ctx, sts, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return models.ErrResourceNotFound
	}
	if apierrors.IsInvalid(err) {
		return invalid("invalid update: %v", err)
	}
	if err != nil {
		return fmt.Errorf("updating statefulset %s/%s: %w", cached.Namespace, cached.Name, err)
	}
	if err := b.lrps.EnsurePDB(ctx, updated); err != nil {
		return err
	}
	logger.Info("updated", lager.Data{"statefulset": updated.Name, "instances": *updated.Spec.Replicas})
	return nil
}

// applyUpdate is BBS's update: what the update carries replaces what the
// LRP had; the modification tag's index goes up by one.
func applyUpdate(lrp *models.DesiredLRP, update *models.DesiredLRPUpdate) {
	if update.InstancesExists() {
		lrp.Instances = update.GetInstances()
	}
	if update.Routes != nil {
		routes := *update.Routes
		lrp.Routes = &routes
	}
	if update.AnnotationExists() {
		lrp.Annotation = update.GetAnnotation()
	}
	if update.MetricTags != nil {
		lrp.MetricTags = update.MetricTags
	}
	if lrp.ModificationTag == nil {
		lrp.ModificationTag = &models.ModificationTag{}
	}
	lrp.ModificationTag.Increment()
}

// RemoveDesiredLRP deletes the LRP and everything it owns.
func (b *Backend) RemoveDesiredLRP(ctx context.Context, logger lager.Logger, processGUID string) error {
	sts := b.statefulSet(processGUID)
	if sts == nil {
		return models.ErrResourceNotFound
	}
	err := b.lrps.Stop(ctx, logger, sts.Labels[k8s.LabelGUID], sts.Labels[k8s.LabelVersion])
	if errors.Is(err, irismodels.ErrNotFound) {
		return models.ErrResourceNotFound
	}
	return err
}

// DesiredLRPByProcessGuid returns the LRP as last desired or updated.
func (b *Backend) DesiredLRPByProcessGuid(ctx context.Context, logger lager.Logger, processGUID string) (*models.DesiredLRP, error) {
	sts := b.statefulSet(processGUID)
	if sts == nil {
		return nil, models.ErrResourceNotFound
	}
	return desiredLRPFromStatefulSet(sts)
}

// DesiredLRPs lists the BBS LRPs matching filter, ordered by process guid.
func (b *Backend) DesiredLRPs(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter) ([]*models.DesiredLRP, error) {
	return b.list(filter)
}

// DesiredLRPSchedulingInfos is CC's sync list, from the cache.
func (b *Backend) DesiredLRPSchedulingInfos(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter) ([]*models.DesiredLRPSchedulingInfo, error) {
	lrps, err := b.list(filter)
	if err != nil {
		return nil, err
	}
	infos := make([]*models.DesiredLRPSchedulingInfo, len(lrps))
	for i, lrp := range lrps {
		info := lrp.DesiredLRPSchedulingInfo()
		infos[i] = &info
	}
	return infos, nil
}

// DesiredLRPRoutingInfos is route-emitter's list.
func (b *Backend) DesiredLRPRoutingInfos(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter) ([]*models.DesiredLRP, error) {
	lrps, err := b.list(filter)
	if err != nil {
		return nil, err
	}
	infos := make([]*models.DesiredLRP, len(lrps))
	for i, lrp := range lrps {
		info := lrp.DesiredLRPRoutingInfo()
		infos[i] = &info
	}
	return infos, nil
}

// list decodes every BBS LRP in the cache that filter selects. One that
// cannot be decoded fails the call: a partial list would make CC delete or
// re-desire processes.
func (b *Backend) list(filter models.DesiredLRPFilter) ([]*models.DesiredLRP, error) {
	guids := set(filter.ProcessGuids)
	apps := set(filter.AppGuids)
	var lrps []*models.DesiredLRP
	var err error
	b.caches.EachStatefulSet(func(sts *appsv1.StatefulSet) {
		if err != nil || sts.DeletionTimestamp != nil || !isBBS(sts) {
			return
		}
		if filter.Domain != "" && sts.Annotations[AnnotationDomain] != filter.Domain {
			return
		}
		if guids != nil && !guids[sts.Annotations[k8s.AnnotationProcessGUID]] {
			return
		}
		if apps != nil && !apps[sts.Labels[k8s.LabelAppGUID]] {
			return
		}
		var lrp *models.DesiredLRP
		if lrp, err = desiredLRPFromStatefulSet(sts); err == nil {
			lrps = append(lrps, lrp)
		}
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(lrps, func(i, j int) bool { return lrps[i].ProcessGuid < lrps[j].ProcessGuid })
	return lrps, nil
}

func set(values []string) map[string]bool {
	if len(values) == 0 {
		return nil
	}
	m := make(map[string]bool, len(values))
	for _, v := range values {
		m[v] = true
	}
	return m
}

// statefulSet is the live BBS StatefulSet of processGUID in the cache, or nil.
func (b *Backend) statefulSet(processGUID string) *appsv1.StatefulSet {
	for _, sts := range b.caches.StatefulSetsByProcessGUID(processGUID) {
		if sts.DeletionTimestamp == nil && isBBS(sts) {
			return sts
		}
	}
	return nil
}

func isBBS(sts *appsv1.StatefulSet) bool {
	_, ok := sts.Annotations[AnnotationDesiredLRP]
	return ok
}

// StoredDesiredLRP is the BBS LRP a StatefulSet runs, for readers outside
// the backend (`iris spaces`); ok is false for StatefulSets the BBS front
// did not desire.
func StoredDesiredLRP(sts *appsv1.StatefulSet) (lrp *models.DesiredLRP, ok bool, err error) {
	if !isBBS(sts) {
		return nil, false, nil
	}
	lrp, err = desiredLRPFromStatefulSet(sts)
	return lrp, err == nil, err
}

// desiredLRPFromStatefulSet reads the stored LRP; the instance count is the
// StatefulSet's (the source of truth for scaling).
func desiredLRPFromStatefulSet(sts *appsv1.StatefulSet) (*models.DesiredLRP, error) {
	data, err := base64.StdEncoding.DecodeString(sts.Annotations[AnnotationDesiredLRP])
	if err != nil {
		return nil, fmt.Errorf("decoding %s of %s/%s: %w", AnnotationDesiredLRP, sts.Namespace, sts.Name, err)
	}
	lrp := &models.DesiredLRP{}
	if err := lrp.Unmarshal(data); err != nil {
		return nil, fmt.Errorf("decoding %s of %s/%s: %w", AnnotationDesiredLRP, sts.Namespace, sts.Name, err)
	}
	lrp.Instances = ptr.Deref(sts.Spec.Replicas, lrp.Instances)
	return lrp, nil
}

func encodeDesiredLRP(lrp *models.DesiredLRP) (string, error) {
	data, err := lrp.Marshal()
	if err != nil {
		return "", fmt.Errorf("encoding desired lrp %s: %w", lrp.ProcessGuid, err)
	}
	return base64.StdEncoding.EncodeToString(data), nil
}

// storedCopy is lrp without its image credentials, which must not sit in
// an annotation anyone with read access to StatefulSets sees.
func storedCopy(lrp *models.DesiredLRP) *models.DesiredLRP {
	stored := *lrp
	stored.ImageUsername, stored.ImagePassword = "", ""
	return &stored
}

// bbsError turns the k8s package's errors into BBS's: invalid input is an
// InvalidRequest with its message; anything else stays as it is.
func bbsError(err error) error {
	var invalidErr *irismodels.InvalidRequestError
	if errors.As(err, &invalidErr) {
		return invalid("%s", invalidErr.Message)
	}
	return err
}

// newEpoch starts a modification tag, as BBS does, with a fresh uuid.
func newEpoch() string { return uuid.NewString() }
