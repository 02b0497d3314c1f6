package k8s

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/models"
)

// The StatefulSet is the record of an LRP's desired state: after a crash, a
// lost write or someone deleting an object by hand, every object the LRP
// owns must be rebuilt from it alone, because CC does not re-desire an LRP
// it sees in GET /apps. Most inputs are on it already (labels, selector,
// instances, the registry Secret's name in the pod template). Two are not:
//
//   - The egress rules (CC's security groups). They are kept as CC sent them
//     in AnnotationEgressRules, on the StatefulSet only (never the pod
//     template, so recording them restarts nothing). CC's rules rather than
//     the rendered NetworkPolicy, so a change of Iris's translation or of the
//     DNS settings reaches existing LRPs. The annotation is always written,
//     "[]" for none: a StatefulSet without it predates the record, and its
//     policy is then adopted but never rewritten (Iris cannot know the rules).
//     Annotations share a 256 KiB limit; an LRP whose security groups exceed
//     it is refused by Kubernetes as invalid (400), before anything runs.
//   - The registry credentials. They must not be copied into an annotation,
//     which anyone who may read StatefulSets can read. The owned Secret is
//     their record: the reconciler adopts it but cannot recreate it, and a
//     re-desire (which carries the credentials again) does.

// AnnotationEgressRules records CC's egress_rules of an LRP on its StatefulSet.
const AnnotationEgressRules = "cloudfoundry.org/egress_rules"

// AnnotationDesiredAt is stamped by Desire on the Secret and NetworkPolicy it
// writes before their StatefulSet exists. It tells the reconciler that such an
// object without an owner belongs to a desire in progress, not to an LRP that
// is gone; and since every desire changes it, a reconciler that decided to
// delete an orphan on an older read fails its precondition instead of deleting
// the policy of a desire that just started.
const AnnotationDesiredAt = "cloudfoundry.org/desired_at"

// OwnedObjects are what an LRP's StatefulSet should own, rebuilt from the
// StatefulSet alone.
type OwnedObjects struct {
	// EgressPolicy is nil when egress policies are off or the StatefulSet
	// carries no record of its rules (EgressRecorded false).
	EgressPolicy   *networkingv1.NetworkPolicy
	EgressRecorded bool
	// PodDisruptionBudget is nil for one instance or fewer.
	PodDisruptionBudget *policyv1.PodDisruptionBudget
	// RegistrySecretName is the docker credentials' Secret the pods pull
	// with, "" if none.
	RegistrySecretName string
	// RecipeSecretName is the recipe Secret the pods mount, "" if they run
	// no recipe; RecipeSecret is that Secret rebuilt from the StatefulSet,
	// nil when the builder has no record to rebuild it from (it is then
	// only adopted, as the registry Secret).
	RecipeSecretName string
	RecipeSecret     *corev1.Secret
}

// OwnedObjects returns the objects sts should own, with their owner
// reference set. It fails only when the recorded egress rules cannot be
// translated (an edited annotation, or rules recorded while egress policies
// were off).
func (b *Builder) OwnedObjects(sts *appsv1.StatefulSet) (*OwnedObjects, error) {
	owned := &OwnedObjects{
		PodDisruptionBudget: PodDisruptionBudget(sts),
		RegistrySecretName:  RegistrySecretName(sts),
		RecipeSecretName:    RecipeSecretName(sts),
	}
	var err error
	if owned.RecipeSecret, err = b.recipeSecretOf(sts); err != nil {
		return nil, err
	}
	raw, recorded := sts.Annotations[AnnotationEgressRules]
	owned.EgressRecorded = recorded
	if recorded && sts.Spec.Selector != nil {
		var rules []models.SecurityGroupRule
		if err := json.Unmarshal([]byte(raw), &rules); err != nil {
			return nil, fmt.Errorf("statefulset %s/%s: annotation %s: %w", sts.Namespace, sts.Name, AnnotationEgressRules, err)
		}
		policy, err := b.egressPolicy(sts.Name, sts.Namespace, sts.Labels, sts.Spec.Selector.MatchLabels, rules)
		if err != nil {
			return nil, fmt.Errorf("statefulset %s/%s: recorded egress rules: %w", sts.Namespace, sts.Name, err)
		}
		owned.EgressPolicy = policy
	}
	owner := []metav1.OwnerReference{OwnerReference(sts)}
	if owned.EgressPolicy != nil {
		owned.EgressPolicy.OwnerReferences = owner
	}
	if owned.PodDisruptionBudget != nil {
		owned.PodDisruptionBudget.OwnerReferences = owner
	}
	return owned, nil
}

// RegistrySecretName returns the name of the registry Secret sts's pods pull
// with, or "" if they use none of their own.
func RegistrySecretName(sts *appsv1.StatefulSet) string {
	want := RegistrySecretNameFor(sts.Name)
	for _, ref := range sts.Spec.Template.Spec.ImagePullSecrets {
		if ref.Name == want {
			return want
		}
	}
	return ""
}

// StatefulSetNameOfOwned returns the name of the StatefulSet an LRP's
// Secret (registry or recipe), NetworkPolicy or PDB called name belongs to.
func StatefulSetNameOfOwned(obj metav1.Object) string {
	if _, isSecret := obj.(*corev1.Secret); isSecret {
		if isRecipeSecretName(obj.GetName()) {
			return strings.TrimSuffix(obj.GetName(), recipeSecretSuffix)
		}
		return strings.TrimSuffix(obj.GetName(), registrySecretSuffix)
	}
	return obj.GetName()
}

// RegistrySecretNameFor returns the name of the registry Secret of the
// StatefulSet called stsName.
func RegistrySecretNameFor(stsName string) string {
	return stsName + registrySecretSuffix
}

// OwnedBy reports whether sts is obj's controlling owner.
func OwnedBy(obj metav1.Object, sts *appsv1.StatefulSet) bool {
	ref := metav1.GetControllerOfNoCopy(obj)
	return ref != nil && ref.UID == sts.UID && ref.Kind == "StatefulSet"
}

// HasStatefulSetOwner reports whether obj names any StatefulSet as its
// controller; if that StatefulSet is gone, the garbage collector removes obj.
func HasStatefulSetOwner(obj metav1.Object) bool {
	ref := metav1.GetControllerOfNoCopy(obj)
	return ref != nil && ref.Kind == "StatefulSet" && ref.APIVersion == "apps/v1"
}

// OwnedSecret returns secret, as Iris applies it, owned by sts.
func OwnedSecret(secret *corev1.Secret, sts *appsv1.StatefulSet) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:            secret.Name,
			Namespace:       secret.Namespace,
			Labels:          secret.Labels,
			Annotations:     withoutDesiredAt(secret.Annotations),
			OwnerReferences: []metav1.OwnerReference{OwnerReference(sts)},
		},
		Type: secret.Type,
		Data: secret.Data,
	}
}

// LastDesired is when obj was last written by a desire: its desired-at stamp,
// or its creation if it has none.
func LastDesired(obj metav1.Object) time.Time {
	if stamp, err := time.Parse(time.RFC3339Nano, obj.GetAnnotations()[AnnotationDesiredAt]); err == nil {
		return stamp
	}
	return obj.GetCreationTimestamp().Time
}

func stampDesiredAt(obj metav1.Object, now time.Time) {
	annotations := map[string]string{}
	for k, v := range obj.GetAnnotations() {
		annotations[k] = v
	}
	annotations[AnnotationDesiredAt] = now.UTC().Format(time.RFC3339Nano)
	obj.SetAnnotations(annotations)
}

// OwnerReference makes sts the controlling owner of an object it owns.
func OwnerReference(sts *appsv1.StatefulSet) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion:         "apps/v1",
		Kind:               "StatefulSet",
		Name:               sts.Name,
		UID:                sts.UID,
		Controller:         ptr.To(true),
		BlockOwnerDeletion: ptr.To(true),
	}
}

// withoutDesiredAt is annotations without the desire's stamp, which an
// owned object no longer needs; nil for none left.
func withoutDesiredAt(annotations map[string]string) map[string]string {
	var out map[string]string
	for k, v := range annotations {
		if k == AnnotationDesiredAt {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}
