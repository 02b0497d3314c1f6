package k8s

import (
	"encoding/json"
	"hash/maphash"
	"math"
	"strconv"

	"github.com/google/uuid"

	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
)

// An LRP owns a NetworkPolicy and, with two instances or more, a
// PodDisruptionBudget. The reconciler is their only reader: it compares
// their labels, annotations and spec with what the StatefulSet asks for,
// checks who owns them, and deletes orphans with preconditions on their
// uid and resource version after a grace period counted from their
// creation or desire stamp (k8s/reconcile). As the API returns them they
// are ~400-byte structs each (most of it an ObjectMeta of fields nobody
// reads, and a PDB's status), for every LRP; the records below keep what
// the reconciler reads, and the Caches hand out the API types made from
// them on every read (NetworkPolicy, PodDisruptionBudget,
// EachLRPOwnedObject, AddLRPOwnedObjectEventHandler), so readers never see
// them.

// ownedMeta is what the records keep of an owned object's metadata: its
// identity, creation and deletion, labels, annotations and owners. The
// generation, finalizers, generate name and deletion grace period read as
// empty. It implements metav1.Object for the informer's keys.
//
// The uids and the resource version are kept in the form the API server
// makes them, a UUID's 16 bytes and a number, instead of their text: three
// allocations (48, 48 and 8-16 bytes) per object otherwise. Anything else
// is kept as it is, in rare.
type ownedMeta struct {
	name, namespace string
	// resourceVersion is compactVersion's, 0 when rare has it.
	resourceVersion uint64
	// uid is compactUID's, zero when rare has it (or there is none).
	uid uuid.UUID
	// ownerUID is the StatefulSet's uid (as compactUID's) when the
	// object's owner references are the one Iris writes (OwnerReference:
	// a controlling apps/v1 StatefulSet of the object's name), as for
	// nearly every object: 16 bytes instead of a slice of one 80-byte
	// reference and its uid's text.
	ownerUID            uuid.UUID
	creationTimestamp   metav1.Time
	deletionTimestamp   *metav1.Time
	labels, annotations map[string]string
	rare                *ownedMetaRare
}

// ownedMetaRare is what an object the API server made, owned as Iris owns
// them, does not need.
type ownedMetaRare struct {
	resourceVersion string
	uid, ownerUID   types.UID
	// owners are the owner references when they are not just Iris's
	// (ownersKept, as they may be an empty slice).
	owners     []metav1.OwnerReference
	ownersKept bool
}

func (m *ownedMeta) rareFields() *ownedMetaRare {
	if m.rare == nil {
		m.rare = &ownedMetaRare{}
	}
	return m.rare
}

func newOwnedMeta(meta *metav1.ObjectMeta) ownedMeta {
	m := ownedMeta{
		name: meta.Name, namespace: meta.Namespace,
		creationTimestamp: meta.CreationTimestamp, deletionTimestamp: meta.DeletionTimestamp,
		labels: meta.Labels, annotations: meta.Annotations,
	}
	m.SetResourceVersion(meta.ResourceVersion)
	m.SetUID(meta.UID)
	m.SetOwnerReferences(meta.OwnerReferences)
	return m
}

// compactUID is uid as the UUID it is, if it is one in its canonical
// text (lower case, hyphenated), as every uid the API server makes.
func compactUID(uid types.UID) (uuid.UUID, bool) {
	if len(uid) != 36 {
		return uuid.Nil, false
	}
	id, err := uuid.Parse(string(uid))
	if err != nil || id == uuid.Nil || id.String() != string(uid) {
		return uuid.Nil, false
	}
	return id, true
}

// compactVersion is version+1 if version is a decimal number in its
// shortest form, as the API server's resource versions are (etcd's
// revisions), or 0.
func compactVersion(version string) uint64 {
	v, err := strconv.ParseUint(version, 10, 64)
	if err != nil || v == math.MaxUint64 || strconv.FormatUint(v, 10) != version {
		return 0
	}
	return v + 1
}

// uidText is the text of a uid kept as compactUID's, rare when it was
// kept as text (not in the API server's form).
func uidText(uid uuid.UUID, rare types.UID) types.UID {
	if uid != uuid.Nil {
		return types.UID(uid.String())
	}
	return rare
}

// versionText is the text of a resource version kept as compactVersion's,
// rare when it was kept as text.
func versionText(version uint64, rare string) string {
	if version != 0 {
		return strconv.FormatUint(version-1, 10)
	}
	return rare
}

// objectMeta is the metadata m was made from, as far as it is kept.
func (m *ownedMeta) objectMeta() metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: m.name, Namespace: m.namespace, ResourceVersion: m.GetResourceVersion(), UID: m.GetUID(),
		CreationTimestamp: m.creationTimestamp, DeletionTimestamp: m.deletionTimestamp,
		Labels: m.labels, Annotations: m.annotations, OwnerReferences: m.GetOwnerReferences(),
	}
}

// isStatefulSetOwner reports whether ref is the reference OwnerReference
// makes of the StatefulSet called name.
func isStatefulSetOwner(ref metav1.OwnerReference, name string) bool {
	return ref.APIVersion == "apps/v1" && ref.Kind == "StatefulSet" && ref.Name == name && ref.UID != "" &&
		ref.Controller != nil && *ref.Controller && ref.BlockOwnerDeletion != nil && *ref.BlockOwnerDeletion
}

func (m *ownedMeta) GetOwnerReferences() []metav1.OwnerReference {
	var uid types.UID
	switch {
	case m.rare != nil && m.rare.ownersKept:
		return m.rare.owners
	case m.ownerUID != uuid.Nil:
		uid = types.UID(m.ownerUID.String())
	case m.rare != nil && m.rare.ownerUID != "":
		uid = m.rare.ownerUID
	default:
		return nil
	}
	return []metav1.OwnerReference{{
		APIVersion: "apps/v1", Kind: "StatefulSet", Name: m.name, UID: uid,
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	}}
}

// SetOwnerReferences keeps refs as ownerUID when it can (leanMeta has
// interned their API versions and kinds and shared their names).
func (m *ownedMeta) SetOwnerReferences(refs []metav1.OwnerReference) {
	m.ownerUID = uuid.Nil
	if m.rare != nil {
		m.rare.ownerUID, m.rare.owners, m.rare.ownersKept = "", nil, false
	}
	switch {
	case len(refs) == 1 && isStatefulSetOwner(refs[0], m.name):
		if id, ok := compactUID(refs[0].UID); ok {
			m.ownerUID = id
		} else {
			m.rareFields().ownerUID = refs[0].UID
		}
	case refs != nil:
		rare := m.rareFields()
		rare.owners, rare.ownersKept = refs, true
	}
}

func (m *ownedMeta) GetUID() types.UID {
	var rare types.UID
	if m.rare != nil {
		rare = m.rare.uid
	}
	return uidText(m.uid, rare)
}

func (m *ownedMeta) SetUID(uid types.UID) {
	m.uid = uuid.Nil
	if m.rare != nil {
		m.rare.uid = ""
	}
	if id, ok := compactUID(uid); ok {
		m.uid = id
	} else if uid != "" {
		m.rareFields().uid = uid
	}
}

func (m *ownedMeta) GetResourceVersion() string {
	var rare string
	if m.rare != nil {
		rare = m.rare.resourceVersion
	}
	return versionText(m.resourceVersion, rare)
}

func (m *ownedMeta) SetResourceVersion(version string) {
	m.resourceVersion = compactVersion(version)
	if m.rare != nil {
		m.rare.resourceVersion = ""
	}
	if m.resourceVersion == 0 && version != "" {
		m.rareFields().resourceVersion = version
	}
}

// metav1.Object, over the metadata kept: what is not kept reads as empty,
// and setting it does nothing.

func (m *ownedMeta) GetNamespace() string                         { return m.namespace }
func (m *ownedMeta) SetNamespace(namespace string)                { m.namespace = namespace }
func (m *ownedMeta) GetName() string                              { return m.name }
func (m *ownedMeta) SetName(name string)                          { m.name = name }
func (m *ownedMeta) GetGenerateName() string                      { return "" }
func (m *ownedMeta) SetGenerateName(string)                       {}
func (m *ownedMeta) GetGeneration() int64                         { return 0 }
func (m *ownedMeta) SetGeneration(int64)                          {}
func (m *ownedMeta) GetSelfLink() string                          { return "" }
func (m *ownedMeta) SetSelfLink(string)                           {}
func (m *ownedMeta) GetCreationTimestamp() metav1.Time            { return m.creationTimestamp }
func (m *ownedMeta) SetCreationTimestamp(t metav1.Time)           { m.creationTimestamp = t }
func (m *ownedMeta) GetDeletionTimestamp() *metav1.Time           { return m.deletionTimestamp }
func (m *ownedMeta) SetDeletionTimestamp(t *metav1.Time)          { m.deletionTimestamp = t }
func (m *ownedMeta) GetDeletionGracePeriodSeconds() *int64        { return nil }
func (m *ownedMeta) SetDeletionGracePeriodSeconds(*int64)         {}
func (m *ownedMeta) GetLabels() map[string]string                 { return m.labels }
func (m *ownedMeta) SetLabels(labels map[string]string)           { m.labels = labels }
func (m *ownedMeta) GetAnnotations() map[string]string            { return m.annotations }
func (m *ownedMeta) SetAnnotations(annotations map[string]string) { m.annotations = annotations }
func (m *ownedMeta) GetFinalizers() []string                      { return nil }
func (m *ownedMeta) SetFinalizers([]string)                       {}
func (m *ownedMeta) GetManagedFields() []metav1.ManagedFieldsEntry {
	return nil
}
func (m *ownedMeta) SetManagedFields([]metav1.ManagedFieldsEntry) {}

// GetObjectKind is runtime.Object's: informers' objects carry no kind.
func (m *ownedMeta) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// cachedNetworkPolicy is what the app NetworkPolicy informer keeps of a
// policy: 160 bytes with its spec's selector and rules shared, instead of
// a 384-byte NetworkPolicy.
type cachedNetworkPolicy struct {
	ownedMeta
	// podSelector is the pod selector's match labels (shared with the
	// policy's labels when equal, see shareMaps).
	podSelector map[string]string
	// lrpSelector: the pod selector is the LRP's, made from the labels
	// (keptSelector), and podSelector nil.
	lrpSelector bool
	// egress is shared by the policies with equal rules (sharedEgress).
	egress *egressRules
	// rare holds what Iris never writes; nil for its own policies.
	rare *networkPolicyRare
}

// networkPolicyRare is a policy's pod selector when it has expressions,
// and its ingress rules.
type networkPolicyRare struct {
	podSelector metav1.LabelSelector
	ingress     []networkingv1.NetworkPolicyIngressRule
}

var (
	_ runtime.Object = &cachedNetworkPolicy{}
	_ metav1.Object  = &cachedNetworkPolicy{}
	_ runtime.Object = &cachedPDB{}
	_ metav1.Object  = &cachedPDB{}
)

// newCachedNetworkPolicy is policy's record, sharing its values, with
// egress its rules (shared or not).
func newCachedNetworkPolicy(policy *networkingv1.NetworkPolicy, egress *egressRules) *cachedNetworkPolicy {
	c := &cachedNetworkPolicy{ownedMeta: newOwnedMeta(&policy.ObjectMeta), podSelector: policy.Spec.PodSelector.MatchLabels, egress: egress}
	if len(policy.Spec.PodSelector.MatchExpressions) > 0 || len(policy.Spec.Ingress) > 0 {
		c.podSelector = nil
		c.rare = &networkPolicyRare{podSelector: policy.Spec.PodSelector, ingress: policy.Spec.Ingress}
	} else if _, derived := keptSelector(&policy.Spec.PodSelector, policy.Labels); derived {
		c.podSelector, c.lrpSelector = nil, true
	}
	return c
}

// NetworkPolicy is the policy p was made from, as far as it is kept. It
// shares p's values: readers must not modify it, as they must not modify
// any cached object.
func (p *cachedNetworkPolicy) NetworkPolicy() *networkingv1.NetworkPolicy {
	policy := &networkingv1.NetworkPolicy{
		ObjectMeta: p.objectMeta(),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: p.podSelector},
			Egress:      p.egress.rules, PolicyTypes: p.egress.types,
		},
	}
	if p.lrpSelector {
		policy.Spec.PodSelector = *lrpSelector(p.labels)
	}
	if p.rare != nil {
		policy.Spec.PodSelector, policy.Spec.Ingress = p.rare.podSelector, p.rare.ingress
	}
	return policy
}

// DeepCopyObject is runtime.Object's.
func (p *cachedNetworkPolicy) DeepCopyObject() runtime.Object {
	policy := p.NetworkPolicy().DeepCopy()
	return newCachedNetworkPolicy(policy, &egressRules{rules: policy.Spec.Egress, types: policy.Spec.PolicyTypes})
}

// cachedPDB is what the app PDB informer keeps of a PodDisruptionBudget:
// 160 bytes with its budget shared, instead of a 384-byte
// PodDisruptionBudget with a status and its condition. The status is not
// kept: Iris only makes sure an LRP's PDB exists as it wants it.
type cachedPDB struct {
	ownedMeta
	// selector is the selector's match labels (shared with the PDB's
	// labels when equal, see shareMaps).
	selector map[string]string
	// lrpSelector: the selector is the LRP's, made from the labels
	// (keptSelector), and selector nil.
	lrpSelector bool
	// budget is shared by the PDBs with equal ones: Iris's are all
	// minAvailable 1.
	budget *pdbBudget
	// rare holds the selector when it is absent or has expressions, which
	// Iris never writes; nil for its own PDBs.
	rare *pdbRare
}

type pdbRare struct{ selector *metav1.LabelSelector }

// pdbBudget is a PDB's spec but its selector.
type pdbBudget struct {
	minAvailable, maxUnavailable *intstr.IntOrString
	unhealthyPodEvictionPolicy   *policyv1.UnhealthyPodEvictionPolicyType
}

func newCachedPDB(pdb *policyv1.PodDisruptionBudget, budget *pdbBudget) *cachedPDB {
	c := &cachedPDB{ownedMeta: newOwnedMeta(&pdb.ObjectMeta), budget: budget}
	if selector := pdb.Spec.Selector; selector == nil || len(selector.MatchExpressions) > 0 {
		c.rare = &pdbRare{selector: selector}
	} else if _, derived := keptSelector(selector, pdb.Labels); derived {
		c.lrpSelector = true
	} else {
		c.selector = selector.MatchLabels
	}
	return c
}

// PodDisruptionBudget is the PDB p was made from, as far as it is kept,
// sharing p's values (see cachedNetworkPolicy.NetworkPolicy).
func (p *cachedPDB) PodDisruptionBudget() *policyv1.PodDisruptionBudget {
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: p.objectMeta(),
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: p.budget.minAvailable, MaxUnavailable: p.budget.maxUnavailable,
			UnhealthyPodEvictionPolicy: p.budget.unhealthyPodEvictionPolicy,
		},
	}
	if p.rare != nil {
		pdb.Spec.Selector = p.rare.selector
	} else if p.lrpSelector {
		pdb.Spec.Selector = lrpSelector(p.labels)
	} else {
		pdb.Spec.Selector = &metav1.LabelSelector{MatchLabels: p.selector}
	}
	return pdb
}

// DeepCopyObject is runtime.Object's.
func (p *cachedPDB) DeepCopyObject() runtime.Object {
	pdb := p.PodDisruptionBudget().DeepCopy()
	return newCachedPDB(pdb, budgetOf(pdb))
}

func budgetOf(pdb *policyv1.PodDisruptionBudget) *pdbBudget {
	return &pdbBudget{minAvailable: pdb.Spec.MinAvailable, maxUnavailable: pdb.Spec.MaxUnavailable, unhealthyPodEvictionPolicy: pdb.Spec.UnhealthyPodEvictionPolicy}
}

// sharedBudgets shares PDBs' budgets: a few values among all LRPs (three
// pointers and what they point to, 60 bytes per PDB otherwise).
type sharedBudgets struct {
	seed  maphash.Seed
	table *shareTable[*pdbBudget]
}

func newSharedBudgets(clock clock.PassiveClock) *sharedBudgets {
	return &sharedBudgets{seed: maphash.MakeSeed(), table: newShareTable(clock, func(a, b *pdbBudget) bool {
		return equality.Semantic.DeepEqual(a.minAvailable, b.minAvailable) && equality.Semantic.DeepEqual(a.maxUnavailable, b.maxUnavailable) &&
			equality.Semantic.DeepEqual(a.unhealthyPodEvictionPolicy, b.unhealthyPodEvictionPolicy)
	})}
}

// share returns the shared copy of b (b itself if it cannot be hashed,
// which encoding it as JSON never fails to).
func (s *sharedBudgets) share(b *pdbBudget) *pdbBudget {
	data, err := json.Marshal(budgetKey{b.minAvailable, b.maxUnavailable, b.unhealthyPodEvictionPolicy})
	if err != nil {
		return b
	}
	return s.table.share(maphash.Bytes(s.seed, data), b)
}

type budgetKey struct {
	Min    *intstr.IntOrString                      `json:"m"`
	Max    *intstr.IntOrString                      `json:"x"`
	Policy *policyv1.UnhealthyPodEvictionPolicyType `json:"p"`
}

// transformNetworkPolicy is the leaner's transform of an LRP's policy.
func (l *leaner) transformNetworkPolicy(policy *networkingv1.NetworkPolicy) *cachedNetworkPolicy {
	leanMeta(&policy.ObjectMeta)
	l.shareLabelsAndSelector(&policy.Labels, &policy.Spec.PodSelector)
	l.mu.Lock()
	defer l.mu.Unlock()
	// Most LRPs have the same rules (the DNS rule and the foundation's
	// security groups): about 1.4 KB per LRP otherwise.
	return newCachedNetworkPolicy(policy, l.egress.share(policy.Spec.Egress, policy.Spec.PolicyTypes))
}

// transformPDB is the leaner's transform of an LRP's PDB.
func (l *leaner) transformPDB(pdb *policyv1.PodDisruptionBudget) *cachedPDB {
	leanMeta(&pdb.ObjectMeta)
	l.shareLabelsAndSelector(&pdb.Labels, pdb.Spec.Selector)
	l.mu.Lock()
	defer l.mu.Unlock()
	return newCachedPDB(pdb, l.budgets.share(budgetOf(pdb)))
}

// ownedObjectOf is the API object of an object of the owned objects'
// informers (their indexers' and their handlers'): a NetworkPolicy or PDB
// for their records, anything else as it is.
func ownedObjectOf(obj any) any {
	switch o := obj.(type) {
	case *cachedNetworkPolicy:
		return o.NetworkPolicy()
	case *cachedPDB:
		return o.PodDisruptionBudget()
	}
	return obj
}
