package k8s_test

import (
	"reflect"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/k8s"
)

var _ = Describe("the records of an LRP's NetworkPolicy and PDB", func() {
	at := metav1.NewTime(time.Unix(100, 0))
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "dora-dev-0123456789", Namespace: "cf-workloads", UID: "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"}}
	labels := func() map[string]string {
		return map[string]string{k8s.LabelGUID: "guid", k8s.LabelVersion: "v1", k8s.LabelSourceType: k8s.SourceTypeApp}
	}
	// meta is the metadata of an owned object as the API returns it,
	// with fields no reader reads (generation, finalizers, managed fields).
	meta := func() metav1.ObjectMeta {
		return metav1.ObjectMeta{
			Name: sts.Name, Namespace: sts.Namespace, UID: "9d55c7e3-1f4f-4a1e-9c01-6b1c7e365b7a", ResourceVersion: "7123456", Generation: 2,
			CreationTimestamp: at, DeletionTimestamp: &at, Finalizers: []string{"example.com/hold"},
			Labels:          labels(),
			Annotations:     map[string]string{k8s.AnnotationDesiredAt: "2026-12-01T08:00:00Z"},
			OwnerReferences: []metav1.OwnerReference{k8s.OwnerReference(sts)},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "iris", Operation: metav1.ManagedFieldsOperationApply}},
		}
	}
	// kept is meta as the records keep it.
	kept := func() metav1.ObjectMeta {
		m := meta()
		m.Generation, m.Finalizers, m.ManagedFields = 0, nil, nil
		return m
	}
	egress := func() []networkingv1.NetworkPolicyEgressRule {
		return []networkingv1.NetworkPolicyEgressRule{{
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(443))}},
			To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}}},
		}}
	}
	policyOf := func(m metav1.ObjectMeta) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{
			ObjectMeta: m,
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: labels()},
				Egress:      egress(), PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			},
		}
	}
	pdbOf := func(m metav1.ObjectMeta) *policyv1.PodDisruptionBudget {
		return &policyv1.PodDisruptionBudget{
			ObjectMeta: m,
			Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)), Selector: &metav1.LabelSelector{MatchLabels: labels()}},
			Status: policyv1.PodDisruptionBudgetStatus{
				ObservedGeneration: 2, DisruptionsAllowed: 1, CurrentHealthy: 2, DesiredHealthy: 1, ExpectedPods: 2,
				Conditions: []metav1.Condition{{Type: policyv1.DisruptionAllowedCondition, Status: metav1.ConditionTrue, LastTransitionTime: at, Reason: policyv1.SufficientPodsReason}},
			},
		}
	}
	lean := func(transform func(any) (any, error), obj any) any {
		out, err := transform(obj)
		Expect(err).NotTo(HaveOccurred())
		return out
	}
	same := func(a, b map[string]string) bool {
		return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
	}
	newTransform := func() func(any) (any, error) {
		return k8s.NewLeanTransform(clocktesting.NewFakePassiveClock(time.Unix(0, 0)))
	}

	It("keeps of a NetworkPolicy its identity, creation and deletion, labels, annotations, owners and spec", func() {
		obj := lean(newTransform(), policyOf(meta()))
		Expect(obj).NotTo(BeAssignableToTypeOf(&networkingv1.NetworkPolicy{}), "a record smaller than a NetworkPolicy")
		want := policyOf(kept())
		Expect(k8s.CachedOwnedObject(obj)).To(Equal(want))

		Expect(obj.(metav1.Object).GetOwnerReferences()).To(Equal(want.OwnerReferences), "the informer's view of the record")
		key, err := cache.MetaNamespaceKeyFunc(obj)
		Expect(err).NotTo(HaveOccurred())
		Expect(key).To(Equal("cf-workloads/" + sts.Name))

		copied := obj.(runtime.Object).DeepCopyObject()
		Expect(k8s.CachedOwnedObject(copied)).To(Equal(want))
		Expect(&k8s.CachedOwnedObject(copied).(*networkingv1.NetworkPolicy).Spec.Egress[0]).
			NotTo(BeIdenticalTo(&k8s.CachedOwnedObject(obj).(*networkingv1.NetworkPolicy).Spec.Egress[0]), "a deep copy")
	})

	It("keeps what Iris never writes too: other owners, no owner, ingress rules and selector expressions", func() {
		expressions := []metav1.LabelSelectorRequirement{{Key: k8s.LabelGUID, Operator: metav1.LabelSelectorOpExists}}
		for _, edit := range []func(*networkingv1.NetworkPolicy){
			func(p *networkingv1.NetworkPolicy) { p.OwnerReferences = nil },
			func(p *networkingv1.NetworkPolicy) { p.OwnerReferences[0].BlockOwnerDeletion = nil },
			func(p *networkingv1.NetworkPolicy) { p.OwnerReferences[0].Name = "other" },
			func(p *networkingv1.NetworkPolicy) { p.OwnerReferences[0].Kind = "ReplicaSet" },
			func(p *networkingv1.NetworkPolicy) {
				p.OwnerReferences = append(p.OwnerReferences, metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: "c", UID: "cm"})
			},
			func(p *networkingv1.NetworkPolicy) { p.Annotations, p.Labels = nil, nil },
			func(p *networkingv1.NetworkPolicy) { p.Spec.PodSelector.MatchExpressions = expressions },
			func(p *networkingv1.NetworkPolicy) {
				p.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}}}}}
			},
		} {
			policy, want := policyOf(meta()), policyOf(kept())
			edit(policy)
			edit(want)
			Expect(k8s.CachedOwnedObject(lean(newTransform(), policy))).To(Equal(want))
		}
	})

	It("keeps uids and resource versions exactly, whether the API server's (a UUID, a number) or not", func() {
		const id = "6b1c7e36-5b7a-4a4e-9d55-1f4f2a1e9c01"
		for _, uid := range []types.UID{id, "6B1C7E36-5B7A-4A4E-9D55-1F4F2A1E9C01", "urn:uuid:" + id, "00000000-0000-0000-0000-000000000000", "uid-1", ""} {
			for _, version := range []string{"7", "0", "18446744073709551614", "18446744073709551615", "007", "-1", "abc", ""} {
				m, want := meta(), kept()
				m.UID, m.ResourceVersion, want.UID, want.ResourceVersion = uid, version, uid, version
				m.OwnerReferences[0].UID, want.OwnerReferences[0].UID = uid, uid
				if uid == "" {
					m.OwnerReferences, want.OwnerReferences = nil, nil
				}
				obj := lean(newTransform(), policyOf(m))
				Expect(k8s.CachedOwnedObject(obj).(*networkingv1.NetworkPolicy).ObjectMeta).To(Equal(want), "uid %q, resource version %q", uid, version)
				Expect(obj.(metav1.Object).GetUID()).To(Equal(uid))
				Expect(obj.(metav1.Object).GetResourceVersion()).To(Equal(version))
			}
		}
	})

	It("keeps of a PDB its identity, creation and deletion, labels, annotations, owners and spec, not its status", func() {
		obj := lean(newTransform(), pdbOf(meta()))
		Expect(obj).NotTo(BeAssignableToTypeOf(&policyv1.PodDisruptionBudget{}), "a record smaller than a PodDisruptionBudget")
		want := pdbOf(kept())
		want.Status = policyv1.PodDisruptionBudgetStatus{}
		Expect(k8s.CachedOwnedObject(obj)).To(Equal(want))
		Expect(k8s.CachedOwnedObject(obj.(runtime.Object).DeepCopyObject())).To(Equal(want))

		for _, edit := range []func(*policyv1.PodDisruptionBudget){
			func(p *policyv1.PodDisruptionBudget) { p.Spec.Selector = nil },
			func(p *policyv1.PodDisruptionBudget) { p.Spec.Selector = &metav1.LabelSelector{} },
			func(p *policyv1.PodDisruptionBudget) {
				p.Spec.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: k8s.LabelGUID, Operator: metav1.LabelSelectorOpExists}}
			},
			func(p *policyv1.PodDisruptionBudget) {
				p.Spec.MinAvailable, p.Spec.MaxUnavailable = nil, ptr.To(intstr.FromString("50%"))
				p.Spec.UnhealthyPodEvictionPolicy = ptr.To(policyv1.AlwaysAllow)
			},
			func(p *policyv1.PodDisruptionBudget) { p.OwnerReferences = nil },
		} {
			pdb, want := pdbOf(meta()), pdbOf(kept())
			want.Status = policyv1.PodDisruptionBudgetStatus{}
			edit(pdb)
			edit(want)
			Expect(k8s.CachedOwnedObject(lean(newTransform(), pdb))).To(Equal(want))
		}
	})

	It("shares labels and selectors with the LRP's other objects, and equal budgets and egress rules among LRPs", func() {
		transform := newTransform()
		other := meta()
		other.Name, other.UID = "other", "8e7f9a0b-1c2d-4e4f-8a5b-4c6d0c1d2e3f"
		other.Labels[k8s.LabelGUID] = "other-guid"
		other.OwnerReferences[0].Name = "other"
		policy := k8s.CachedOwnedObject(lean(transform, policyOf(meta()))).(*networkingv1.NetworkPolicy)
		pdb := k8s.CachedOwnedObject(lean(transform, pdbOf(meta()))).(*policyv1.PodDisruptionBudget)
		otherPolicy := k8s.CachedOwnedObject(lean(transform, policyOf(other))).(*networkingv1.NetworkPolicy)
		otherPDB := k8s.CachedOwnedObject(lean(transform, pdbOf(other))).(*policyv1.PodDisruptionBudget)

		Expect(same(policy.Labels, pdb.Labels)).To(BeTrue(), "the policy's and the PDB's labels")
		Expect(same(pdb.Labels, pdb.Spec.Selector.MatchLabels)).To(BeTrue(), "the PDB's labels and selector")
		Expect(same(policy.Labels, otherPolicy.Labels)).To(BeFalse(), "another LRP's labels")
		Expect(otherPDB.Spec.MinAvailable).To(BeIdenticalTo(pdb.Spec.MinAvailable), "equal budgets")
		Expect(&otherPolicy.Spec.Egress[0]).To(BeIdenticalTo(&policy.Spec.Egress[0]), "equal egress rules")
		Expect(otherPDB.OwnerReferences).To(Equal([]metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "other", UID: sts.UID,
			Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}))

		scaled := pdbOf(meta())
		scaled.Spec.MinAvailable = ptr.To(intstr.FromInt32(2))
		Expect(k8s.CachedOwnedObject(lean(transform, scaled)).(*policyv1.PodDisruptionBudget).Spec.MinAvailable).To(Equal(ptr.To(intstr.FromInt32(2))))
	})

	It("makes an LRP's selector (its guid and version labels) from the labels instead of keeping it, and keeps any other", func() {
		transform := k8s.NewLeanTransform(clocktesting.NewFakePassiveClock(time.Unix(0, 0)))
		lrpSelector := func() map[string]string { return map[string]string{k8s.LabelGUID: "guid", k8s.LabelVersion: "v1"} }
		policy := policyOf(meta())
		policy.Spec.PodSelector.MatchLabels = lrpSelector()
		pdb := pdbOf(meta())
		pdb.Spec.Selector.MatchLabels = lrpSelector()
		cachedPolicy, cachedPDB := lean(transform, policy.DeepCopy()), lean(transform, pdb.DeepCopy())
		Expect(k8s.OwnedKeepsSelector(cachedPolicy)).To(BeFalse())
		Expect(k8s.OwnedKeepsSelector(cachedPDB)).To(BeFalse())
		Expect(k8s.CachedOwnedObject(cachedPolicy).(*networkingv1.NetworkPolicy).Spec.PodSelector).To(Equal(metav1.LabelSelector{MatchLabels: lrpSelector()}))
		Expect(k8s.CachedOwnedObject(cachedPDB).(*policyv1.PodDisruptionBudget).Spec.Selector).To(Equal(&metav1.LabelSelector{MatchLabels: lrpSelector()}))

		// Another version's selector is not the labels' own.
		pdb.Spec.Selector.MatchLabels[k8s.LabelVersion] = "v2"
		cachedPDB = lean(transform, pdb.DeepCopy())
		Expect(k8s.OwnedKeepsSelector(cachedPDB)).To(BeTrue())
		Expect(k8s.CachedOwnedObject(cachedPDB).(*policyv1.PodDisruptionBudget).Spec.Selector.MatchLabels).To(HaveKeyWithValue(k8s.LabelVersion, "v2"))
	})

	It("hands handlers the API types, tombstones included, and other objects as they are", func() {
		var got []any
		handler := k8s.OwnedHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { got = append(got, obj) },
			UpdateFunc: func(oldObj, newObj any) { got = append(got, oldObj, newObj) },
			DeleteFunc: func(obj any) { got = append(got, obj) },
		})
		transform := newTransform()
		policy, pdb := lean(transform, policyOf(meta())), lean(transform, pdbOf(meta()))
		wantPolicy, wantPDB := policyOf(kept()), pdbOf(kept())
		wantPDB.Status = policyv1.PodDisruptionBudgetStatus{}
		other := &appsv1.StatefulSet{}

		handler.OnAdd(policy, true)
		handler.OnUpdate(policy, pdb)
		handler.OnDelete(pdb)
		handler.OnDelete(cache.DeletedFinalStateUnknown{Key: "cf-workloads/" + sts.Name, Obj: policy})
		handler.OnDelete(cache.DeletedFinalStateUnknown{Key: "cf-workloads/" + sts.Name, Obj: pdb})
		handler.OnAdd(other, false)
		Expect(got).To(Equal([]any{
			wantPolicy, wantPolicy, wantPDB, wantPDB,
			cache.DeletedFinalStateUnknown{Key: "cf-workloads/" + sts.Name, Obj: wantPolicy},
			cache.DeletedFinalStateUnknown{Key: "cf-workloads/" + sts.Name, Obj: wantPDB},
			other,
		}))
	})
})
