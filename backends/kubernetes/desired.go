package kubernetes

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync/atomic"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	"github.com/google/uuid"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sclient "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/actions"
	"github.com/iris-cf/iris/internal/bbswire"
	"github.com/iris-cf/iris/k8s"
	irismodels "github.com/iris-cf/iris/models"
	"github.com/iris-cf/iris/workload"
)

const (
	// AnnotationDesiredLRP holds, on the StatefulSet only, the BBS
	// DesiredLRP as last desired or updated (protobuf, base64), without its
	// image credentials (those live in the registry Secret): BBS's get and
	// list routes answer from it, so a restarted Iris loses nothing.
	// The informer cache keeps it compressed (k8s.DecodeBBSDesiredLRPRecord reads
	// either form).
	AnnotationDesiredLRP = k8s.AnnotationBBSDesiredLRP
	// AnnotationDomain is the LRP's BBS domain, on the StatefulSet and its
	// pods (instance events need it after the StatefulSet is gone). Its
	// presence marks an LRP desired through the BBS front.
	AnnotationDomain = k8s.AnnotationBBSDomain
)

// LRPWriter is what the backend needs of k8s.LRPClient to create and
// delete an LRP's objects.
type LRPWriter interface {
	// DesireNew creates lrp's objects; k8s.ErrAlreadyDesired if its
	// process guid has a StatefulSet already.
	DesireNew(ctx context.Context, logger lager.Logger, lrp *workload.DesiredLRP) error
	Stop(ctx context.Context, logger lager.Logger, guid, version string) error
	EnsurePDB(ctx context.Context, sts *appsv1.StatefulSet) error
	// StatefulSet finds the StatefulSet of guid/version in the cache or,
	// on a miss, through the API; irismodels.ErrNotFound if there is none.
	StatefulSet(ctx context.Context, guid, version string) (*appsv1.StatefulSet, error)
}

// Backend carries out the BBS front's desired and actual LRP routes on
// Kubernetes. Reads come from the informer caches.
type Backend struct {
	clientset k8sclient.Interface
	caches    *k8s.Caches
	lrps      LRPWriter
	opts      TranslateOptions
	summaries *lrpSummaries
	// listed is how many infos the last scheduling-infos list had: the
	// next one's capacity.
	listed atomic.Int64
}

// NewBackend returns a backend creating LRPs through lrps and reading them from caches.
func NewBackend(clientset k8sclient.Interface, caches *k8s.Caches, lrps LRPWriter, opts TranslateOptions) *Backend {
	return &Backend{clientset: clientset, caches: caches, lrps: lrps, opts: opts, summaries: newLRPSummaries()}
}

// DesireLRP creates lrp's objects; ResourceExists if the guid is taken.
func (b *Backend) DesireLRP(ctx context.Context, logger lager.Logger, lrp *models.DesiredLRP) error {
	// The cache answers most repeats; one it has not seen yet (a desire
	// right after a desire) is found by the writer, by name.
	if b.cachedStatefulSet(lrp.ProcessGuid) != nil {
		return models.ErrResourceExists
	}
	w, err := DesiredWorkload(lrp, b.opts)
	if err != nil {
		return err
	}
	err = b.lrps.DesireNew(ctx, logger, w)
	if errors.Is(err, k8s.ErrAlreadyDesired) {
		return models.ErrResourceExists
	}
	if err != nil {
		return bbsError(err)
	}
	return nil
}

// DesiredWorkload is what DesireLRP hands the LRP client for lrp: the
// translated workload with the BBS front's bookkeeping (domain, and the LRP
// as stored, with a fresh modification tag). Exported so that the
// benchmark builds exactly the objects a desire makes without going
// through the API.
func DesiredWorkload(lrp *models.DesiredLRP, opts TranslateOptions) (*workload.DesiredLRP, error) {
	w, err := Translate(lrp, opts)
	if err != nil {
		return nil, err
	}
	stored := storedCopy(lrp)
	stored.ModificationTag = &models.ModificationTag{Epoch: newEpoch(), Index: 0}
	state, err := encodeDesiredLRP(stored)
	if err != nil {
		return nil, err
	}
	w.FrontAnnotations = map[string]string{AnnotationDomain: lrp.Domain}
	w.FrontState = map[string]string{AnnotationDesiredLRP: state}
	return w, nil
}

// UpdateDesiredLRP changes instances, routes, annotation and metric tags,
// bumping the modification tag's index, as BBS does.
func (b *Backend) UpdateDesiredLRP(ctx context.Context, logger lager.Logger, processGUID string, update *models.DesiredLRPUpdate) error {
	cached, err := b.lookup(ctx, processGUID)
	if err != nil {
		return err
	}
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
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
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
	sts, err := b.lookup(ctx, processGUID)
	if err != nil {
		return err
	}
	if sts == nil {
		return models.ErrResourceNotFound
	}
	err = b.lrps.Stop(ctx, logger, sts.Labels[k8s.LabelGUID], sts.Labels[k8s.LabelVersion])
	if errors.Is(err, irismodels.ErrNotFound) {
		return models.ErrResourceNotFound
	}
	return err
}

// DesiredLRPByProcessGuid returns the LRP as last desired or updated.
func (b *Backend) DesiredLRPByProcessGuid(ctx context.Context, logger lager.Logger, processGUID string) (*models.DesiredLRP, error) {
	sts, err := b.lookup(ctx, processGUID)
	if err != nil {
		return nil, err
	}
	if sts == nil {
		return nil, models.ErrResourceNotFound
	}
	return desiredLRPFromStatefulSet(sts)
}

// DesiredLRPs lists the BBS LRPs matching filter, ordered by process guid.
func (b *Backend) DesiredLRPs(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter) ([]*models.DesiredLRP, error) {
	return b.list(filter)
}

// DesiredLRPSchedulingInfos is CC's sync list, from the cache, each LRP
// decoded once per version (see lrpSummaries).
func (b *Backend) DesiredLRPSchedulingInfos(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter) ([]*models.DesiredLRPSchedulingInfo, error) {
	var infos []*models.DesiredLRPSchedulingInfo
	err := b.eachSummary(filter, func(s *lrpSummary) error {
		info, err := s.scheduling()
		infos = append(infos, info)
		return err
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].ProcessGuid < infos[j].ProcessGuid })
	return infos, nil
}

// EncodedSchedulingInfos is DesiredLRPSchedulingInfos with each info
// already protobuf-encoded, once per version of its LRP (bifrost/bbs
// writes them into the response as they are). Same order and filter.
func (b *Backend) EncodedSchedulingInfos(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter) ([][]byte, error) {
	all := make([]byGUID[[]byte], 0, b.listed.Load())
	err := b.eachSummary(filter, func(s *lrpSummary) error {
		all = append(all, keyedByGUID(s.processGUID, s.schedulingEncoded))
		return nil
	})
	if err != nil {
		return nil, err
	}
	b.listed.Store(int64(len(all)))
	sortByGUID(all)
	infos := make([][]byte, len(all))
	for i, e := range all {
		infos[i] = e.item
	}
	return infos, nil
}

// byGUID is an item of a list ordered by process guid. Sorting 100,000
// items by their guid strings read two strings scattered over the heap at
// each of the ~1.7 million comparisons; the guid's first bytes, kept
// beside it, settle nearly all of them.
type byGUID[T any] struct {
	prefix uint64
	guid   string
	item   T
}

// keyedByGUID is item keyed by guid. The prefix is guid's first 8 bytes,
// big-endian, zero-padded: comparing prefixes orders as comparing the
// strings does, except that equal prefixes need the strings.
func keyedByGUID[T any](guid string, item T) byGUID[T] {
	var b [8]byte
	copy(b[:], guid)
	return byGUID[T]{prefix: binary.BigEndian.Uint64(b[:]), guid: guid, item: item}
}

func sortByGUID[T any](items []byGUID[T]) {
	slices.SortFunc(items, func(a, b byGUID[T]) int {
		if c := cmp.Compare(a.prefix, b.prefix); c != 0 {
			return c
		}
		return strings.Compare(a.guid, b.guid)
	})
}

// DesiredLRPRoutingInfos is route-emitter's list, answered as the
// scheduling infos are.
func (b *Backend) DesiredLRPRoutingInfos(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter) ([]*models.DesiredLRP, error) {
	var infos []*models.DesiredLRP
	err := b.eachSummary(filter, func(s *lrpSummary) error {
		info, err := s.routing()
		infos = append(infos, info)
		return err
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].ProcessGuid < infos[j].ProcessGuid })
	return infos, nil
}

// list decodes every BBS LRP in the cache that filter selects, ordered by
// process guid. Callers get LRPs of their own to change (the handler
// downgrades them), so nothing is shared with the summaries.
func (b *Backend) list(filter models.DesiredLRPFilter) ([]*models.DesiredLRP, error) {
	var lrps []*models.DesiredLRP
	err := b.EachDesiredLRP(context.Background(), nil, filter, func(lrp *models.DesiredLRP) error {
		lrps = append(lrps, lrp)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return lrps, nil
}

// EachDesiredLRP hands fn the LRPs DesiredLRPs lists, in its order, each
// decoded from its record as fn's turn comes (bifrost/bbs encodes and
// drops each before the next is decoded); it stops at the first error.
// The LRPs are fn's own.
func (b *Backend) EachDesiredLRP(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter, fn func(*models.DesiredLRP) error) error {
	var selected []byGUID[*k8s.CachedStatefulSet]
	b.eachSelected(filter, func(sts *k8s.CachedStatefulSet, processGUID string) {
		selected = append(selected, keyedByGUID(processGUID, sts))
	})
	sortByGUID(selected)
	for _, s := range selected {
		lrp, err := desiredLRPFromRecord(s.item)
		if err != nil {
			return err
		}
		if err := fn(lrp); err != nil {
			return err
		}
	}
	return nil
}

// eachSummary calls fn with the summary of every BBS LRP filter selects;
// fn must not keep it. A pass not limited to some guids (CC's and
// route-emitter's, by domain) marks every live LRP's kept summary and
// forgets those of deleted ones.
func (b *Backend) eachSummary(filter models.DesiredLRPFilter, fn func(*lrpSummary) error) error {
	full := len(filter.ProcessGuids) == 0 && len(filter.AppGuids) == 0
	selects := selector(filter)
	pass := b.summaries.begin()
	var err error
	var summary lrpSummary
	// The records as cached, not StatefulSets made of them: CC's sync
	// visits all 100,000 LRPs on every call.
	b.caches.EachCachedStatefulSet(func(sts *k8s.CachedStatefulSet) {
		if err != nil || sts.GetDeletionTimestamp() != nil {
			return
		}
		record, processGUID, bbs, selected := selectBBS(sts, selects)
		if !bbs {
			return
		}
		if !selected {
			if full {
				b.summaries.mark(sts, pass)
			}
			return
		}
		// The record carries its encoded scheduling info, whose guid is
		// the annotation's (as Iris writes them): all a summary is, read
		// as it is, with nothing kept per LRP.
		if encoded, ok := sts.SchedulingInfo(); ok && processGUID != "" && isProcessGUIDOf(encoded, processGUID) {
			summary = lrpSummary{processGUID: processGUID, schedulingEncoded: encoded, record: record}
			err = fn(&summary)
			return
		}
		var s *lrpSummary
		if s, err = b.summaries.get(sts, pass); err == nil {
			err = fn(s)
		}
	})
	if err == nil && full {
		b.summaries.end(pass)
	}
	return err
}

// eachSelected calls fn with the record and process guid of every live
// BBS StatefulSet in the cache that filter selects.
func (b *Backend) eachSelected(filter models.DesiredLRPFilter, fn func(sts *k8s.CachedStatefulSet, processGUID string)) {
	selects := selector(filter)
	b.caches.EachCachedStatefulSet(func(sts *k8s.CachedStatefulSet) {
		if sts.GetDeletionTimestamp() != nil {
			return
		}
		if _, processGUID, bbs, selected := selectBBS(sts, selects); bbs && selected {
			fn(sts, processGUID)
		}
	})
}

// selectBBS reads what the lists select by of a cached StatefulSet: its
// record and process guid, whether it is a BBS LRP's, and whether selects
// takes it.
func selectBBS(sts *k8s.CachedStatefulSet, selects func(domain, processGUID, appGUID string) bool) (record, processGUID string, bbs, selected bool) {
	if record, bbs = sts.Annotation(AnnotationDesiredLRP); !bbs {
		return "", "", false, false
	}
	domain, _ := sts.Annotation(AnnotationDomain)
	processGUID, _ = sts.Annotation(k8s.AnnotationProcessGUID)
	return record, processGUID, true, selects(domain, processGUID, sts.Label(k8s.LabelAppGUID))
}

// selector applies filter (empty fields match all) to a BBS LRP's domain,
// process guid and app guid.
func selector(filter models.DesiredLRPFilter) func(domain, processGUID, appGUID string) bool {
	guids := set(filter.ProcessGuids)
	apps := set(filter.AppGuids)
	return func(domain, processGUID, appGUID string) bool {
		if filter.Domain != "" && domain != filter.Domain {
			return false
		}
		if guids != nil && !guids[processGUID] {
			return false
		}
		return apps == nil || apps[appGUID]
	}
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

// lookup is the live BBS StatefulSet of processGUID, or nil: from the
// cache or, when the cache has not seen it yet, from the API. BBS reads
// its own writes (CC reads, updates or lists instances right after a
// desire, and must not be told the LRP is not there); lists and bulk
// reads stay on the cache.
func (b *Backend) lookup(ctx context.Context, processGUID string) (*appsv1.StatefulSet, error) {
	if sts := b.statefulSet(processGUID); sts != nil {
		return sts, nil
	}
	guid, version, err := splitProcessGUID(processGUID)
	if err != nil {
		return nil, nil // no LRP Iris made has such a guid
	}
	sts, err := b.lrps.StatefulSet(ctx, guid, version)
	if errors.Is(err, irismodels.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up %s: %w", processGUID, err)
	}
	if !isBBS(sts) {
		return nil, nil
	}
	return sts, nil
}

// HasCached reports whether the informer caches hold processGUID's live
// StatefulSet, without asking the API server: the per-space router uses it
// to send a guid its caches lack to Diego first (an API lookup per call
// would cost every Diego LRP's call a round trip to the API server).
func (b *Backend) HasCached(processGUID string) bool {
	return b.cachedStatefulSet(processGUID) != nil
}

// statefulSet is the live BBS StatefulSet of processGUID in the cache, or nil.
func (b *Backend) statefulSet(processGUID string) *appsv1.StatefulSet {
	if sts := b.cachedStatefulSet(processGUID); sts != nil {
		return sts.StatefulSet()
	}
	return nil
}

// cachedStatefulSet is the record of processGUID's live BBS StatefulSet
// in the cache, or nil.
func (b *Backend) cachedStatefulSet(processGUID string) *k8s.CachedStatefulSet {
	for _, sts := range b.caches.CachedStatefulSetsByProcessGUID(processGUID) {
		if _, bbs := sts.Annotation(AnnotationDesiredLRP); bbs && sts.GetDeletionTimestamp() == nil {
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
	return decodeDesiredLRP(sts.Annotations[AnnotationDesiredLRP], sts.Namespace+"/"+sts.Name, sts.Spec.Replicas)
}

// desiredLRPFromRecord is desiredLRPFromStatefulSet of a cached record,
// without making the StatefulSet.
func desiredLRPFromRecord(sts *k8s.CachedStatefulSet) (*models.DesiredLRP, error) {
	record, _ := sts.Annotation(AnnotationDesiredLRP)
	var replicas *int32
	if n, ok := sts.SpecReplicas(); ok {
		replicas = &n
	}
	return decodeDesiredLRP(record, sts.GetNamespace()+"/"+sts.GetName(), replicas)
}

// decodeDesiredLRP is the LRP a StatefulSet's record annotation (owner's)
// stores, its instances the StatefulSet's replicas when it has them.
func decodeDesiredLRP(record, owner string, replicas *int32) (*models.DesiredLRP, error) {
	data, err := k8s.DecodeBBSDesiredLRPRecord(record, owner)
	if err != nil {
		return nil, err
	}
	lrp := &models.DesiredLRP{}
	if err := lrp.Unmarshal(data); err != nil {
		return nil, fmt.Errorf("decoding %s of %s: %w", AnnotationDesiredLRP, owner, err)
	}
	lrp.Instances = ptr.Deref(replicas, lrp.Instances)
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

// RecipeOf is the recipe a BBS StatefulSet's pods run, rebuilt from the
// DesiredLRP stored on it, as Translate built it at the desire (updates
// change nothing it holds). It is the k8s.RecipeSource the reconciler
// rebuilds recipe Secrets with; ok is false for other StatefulSets.
func RecipeOf(sts *appsv1.StatefulSet) (recipe *actions.Recipe, ok bool, err error) {
	if !isBBS(sts) {
		return nil, false, nil
	}
	lrp, err := desiredLRPFromStatefulSet(sts)
	if err != nil {
		return nil, false, err
	}
	return actions.RecipeFromDesiredLRP(lrp), true, nil
}

// isProcessGUIDOf reports whether processGUID is the encoded scheduling
// info's.
func isProcessGUIDOf(info []byte, processGUID string) bool {
	guid, err := bbswire.SchedulingInfoProcessGUID(info)
	return err == nil && string(guid) == processGUID
}
