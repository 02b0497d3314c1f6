package kubernetes

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/workload"
)

// ActualLRPs lists the instances filter selects, from the pod cache.
func (b *Backend) ActualLRPs(ctx context.Context, logger lager.Logger, filter models.ActualLRPFilter) ([]*models.ActualLRP, error) {
	var lrps []instancesOf
	if filter.ProcessGuid != "" {
		sts, err := b.lookup(ctx, filter.ProcessGuid)
		if err != nil {
			return nil, err
		}
		if sts != nil {
			lrps = append(lrps, instancesOfStatefulSet(sts))
		}
	} else {
		// The records as cached: route-emitter lists every instance each
		// minute.
		b.caches.EachCachedStatefulSet(func(sts *k8s.CachedStatefulSet) {
			if _, bbs := sts.Annotation(AnnotationDesiredLRP); bbs && sts.GetDeletionTimestamp() == nil {
				lrps = append(lrps, instancesOfRecord(sts))
			}
		})
	}
	var out []*models.ActualLRP
	for _, lrp := range lrps {
		if filter.Domain != "" && lrp.domain != filter.Domain {
			continue
		}
		for _, actual := range b.appendActualLRPs(nil, lrp) {
			if filter.CellID != "" && actual.CellId != filter.CellID {
				continue
			}
			if filter.Index != nil && actual.Index != *filter.Index {
				continue
			}
			out = append(out, actual)
		}
	}
	sortActual(out)
	return out, nil
}

// ActualLRPsByProcessGuids lists every instance of the named LRPs, ordered
// by process guid and index: the guids are sorted, not the instances (CC
// asks for a thousand LRPs' at once).
func (b *Backend) ActualLRPsByProcessGuids(ctx context.Context, logger lager.Logger, filter models.ActualLRPsByProcessGuidsFilter) ([]*models.ActualLRP, error) {
	guids := slices.Clone(filter.ProcessGuids)
	slices.Sort(guids)
	var out []*models.ActualLRP
	for _, guid := range guids {
		// The records as cached: a StatefulSet made for each of a
		// thousand guids cost more than their instances.
		if sts := b.cachedStatefulSet(guid); sts != nil {
			out = b.appendActualLRPs(out, instancesOfRecord(sts))
		}
	}
	return out, nil
}

// RetireActualLRP deletes the instance's pod; the StatefulSet controller
// starts a new one in its place, as Diego replaces a retired instance.
func (b *Backend) RetireActualLRP(ctx context.Context, logger lager.Logger, key *models.ActualLRPKey) error {
	sts, err := b.lookup(ctx, key.ProcessGuid)
	if err != nil {
		return err
	}
	if sts == nil {
		return models.ErrResourceNotFound
	}
	var pod *corev1.Pod
	for _, p := range b.caches.PodsByProcessGUID(key.ProcessGuid) {
		if p.Namespace == sts.Namespace && p.Labels[k8s.PodIndexLabel] == strconv.Itoa(int(key.Index)) {
			pod = p
		}
	}
	if pod == nil {
		if key.Index >= 0 && key.Index < ptr.Deref(sts.Spec.Replicas, 0) {
			// A desired instance without a pod yet is UNCLAIMED: BBS
			// retires one by dropping it, to be started afresh, which is
			// what its pod will be.
			logger.Info("retired-unclaimed", lager.Data{"index": key.Index})
			return nil
		}
		return models.ErrResourceNotFound
	}
	err = b.clientset.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return models.ErrResourceNotFound
	}
	if err != nil {
		return fmt.Errorf("deleting pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	logger.Info("retired", lager.Data{"pod": pod.Name})
	return nil
}

// instancesOf is what listing an LRP's instances reads of its StatefulSet.
type instancesOf struct {
	namespace, processGUID, domain string
	replicas                       int32
}

func instancesOfStatefulSet(sts *appsv1.StatefulSet) instancesOf {
	return instancesOf{namespace: sts.Namespace, processGUID: sts.Annotations[k8s.AnnotationProcessGUID],
		domain: sts.Annotations[AnnotationDomain], replicas: ptr.Deref(sts.Spec.Replicas, 0)}
}

func instancesOfRecord(sts *k8s.CachedStatefulSet) instancesOf {
	processGUID, _ := sts.Annotation(k8s.AnnotationProcessGUID)
	domain, _ := sts.Annotation(AnnotationDomain)
	replicas, _ := sts.SpecReplicas()
	return instancesOf{namespace: sts.GetNamespace(), processGUID: processGUID, domain: domain, replicas: replicas}
}

// appendActualLRPs appends lrp's instances to out, ordered by index: one
// per pod, and an UNCLAIMED one for each desired index without a pod yet
// (BBS creates those at once).
func (b *Backend) appendActualLRPs(out []*models.ActualLRP, lrp instancesOf) []*models.ActualLRP {
	processGUID, domain, replicas := lrp.processGUID, lrp.domain, lrp.replicas
	first := len(out)
	seen := make([]bool, max(replicas, 0))
	for _, pod := range b.caches.PodsByProcessGUID(processGUID) {
		if pod.Namespace != lrp.namespace {
			continue
		}
		if inst, ok := k8s.ActualInstance(pod); ok {
			if inst.Index >= 0 && inst.Index < replicas {
				seen[inst.Index] = true
			}
			out = append(out, ActualLRP(inst, domain))
		}
	}
	for i := int32(0); i < replicas; i++ {
		if !seen[i] {
			out = append(out, ActualLRP(workload.Instance{ProcessGUID: processGUID, Index: i, State: workload.InstanceUnclaimed}, domain))
		}
	}
	slices.SortFunc(out[first:], func(a, b *models.ActualLRP) int { return cmp.Compare(a.Index, b.Index) })
	return out
}

// ActualLRP is inst as BBS reports it: UNCLAIMED and CRASHED instances
// have no cell, CLAIMED ones no address yet; a running instance's address
// and instance address are both the pod IP (no host port mapping: the
// container port is reachable as it is), preferring the instance address.
func ActualLRP(inst workload.Instance, domain string) *models.ActualLRP {
	state := inst.State
	if state == workload.InstanceUnknown {
		// Diego reschedules the instances of a lost cell: they are unclaimed.
		state = models.ActualLRPStateUnclaimed
	}
	actual := &models.ActualLRP{
		ActualLRPKey:   models.NewActualLRPKey(inst.ProcessGUID, inst.Index, domain),
		State:          state,
		Since:          inst.Since,
		CrashCount:     inst.CrashCount,
		CrashReason:    inst.CrashReason,
		PlacementError: inst.PlacementError,
		Presence:       models.ActualLRP_Ordinary,
		ModificationTag: models.ModificationTag{
			Epoch: inst.InstanceGUID,
			Index: uint32(inst.CrashCount),
		},
	}
	if state == models.ActualLRPStateClaimed || state == models.ActualLRPStateRunning {
		actual.ActualLRPInstanceKey = models.NewActualLRPInstanceKey(inst.InstanceGUID, inst.CellID)
	}
	if state == models.ActualLRPStateRunning && inst.Address != "" {
		ports := make([]*models.PortMapping, 0, len(inst.Ports))
		for _, p := range inst.Ports {
			ports = append(ports, models.NewPortMapping(uint32(p), uint32(p)))
		}
		actual.ActualLRPNetInfo = models.NewActualLRPNetInfo(inst.Address, inst.Address, models.ActualLRPNetInfo_PreferredAddressInstance, ports...)
	}
	actual.SetRoutable(inst.Routable && state == models.ActualLRPStateRunning)
	return actual
}

func sortActual(lrps []*models.ActualLRP) {
	sort.Slice(lrps, func(i, j int) bool {
		if lrps[i].ProcessGuid != lrps[j].ProcessGuid {
			return lrps[i].ProcessGuid < lrps[j].ProcessGuid
		}
		return lrps[i].Index < lrps[j].Index
	})
}
