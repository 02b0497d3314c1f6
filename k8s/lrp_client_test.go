package k8s_test

import (
	"context"
	"errors"
	"time"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/bifrost"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

var _ = Describe("LRPClient.Desire", func() {
	const ns = "cf-workloads"
	var (
		ctx       context.Context
		clientset *fake.Clientset
		client    *k8s.LRPClient
		lrp       *models.DesireLRPRequest
		objects   *k8s.LRPObjects
		now       time.Time
	)

	BeforeEach(func() {
		ctx = context.Background()
		clientset = fake.NewClientset()
		caches, err := k8s.NewCaches(clientset, []string{ns})
		Expect(err).NotTo(HaveOccurred())
		builder := k8s.NewBuilder(config.Default().LRP)
		now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
		client = k8s.NewLRPClient(clientset, caches, builder, []string{ns}, clocktesting.NewFakePassiveClock(now))
		lrp = dockerLRP()
		lrp.Lifecycle.DockerLifecycle.RegistryUsername = "bob"
		lrp.Lifecycle.DockerLifecycle.RegistryPassword = "hunter2"
		lrp.EgressRules = []models.SecurityGroupRule{{Protocol: "tcp", Destinations: []string{"10.0.0.0/8"}, Ports: []uint32{5432}}}
		objects, err = builder.Build(bifrost.DesiredLRP(lrp), ns)
		Expect(err).NotTo(HaveOccurred())
	})

	// writes lists the clientset's writes in order.
	writes := func() []string {
		var out []string
		for _, a := range clientset.Actions() {
			if a.GetVerb() == "patch" || a.GetVerb() == "create" || a.GetVerb() == "update" || a.GetVerb() == "delete" {
				out = append(out, a.GetVerb()+" "+a.GetResource().Resource)
			}
		}
		return out
	}
	getSTS := func() *appsv1.StatefulSet {
		GinkgoHelper()
		sts, err := clientset.AppsV1().StatefulSets(ns).Get(ctx, objects.StatefulSet.Name, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		return sts
	}
	expectAllOwned := func() {
		GinkgoHelper()
		name := objects.StatefulSet.Name
		owner := k8s.OwnerReference(getSTS())
		secret, err := clientset.CoreV1().Secrets(ns).Get(ctx, name+"-registry", metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(secret.OwnerReferences).To(Equal([]metav1.OwnerReference{owner}))
		Expect(secret.Data).To(Equal(objects.RegistrySecret.Data))
		policy, err := clientset.NetworkingV1().NetworkPolicies(ns).Get(ctx, name, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(policy.OwnerReferences).To(Equal([]metav1.OwnerReference{owner}))
		Expect(policy.Spec).To(Equal(objects.EgressPolicy.Spec))
		Expect(policy.Annotations).NotTo(HaveKey(k8s.AnnotationDesiredAt), "owned: no longer a desire in progress")
		pdb, err := clientset.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, name, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(pdb.OwnerReferences).To(Equal([]metav1.OwnerReference{owner}))
	}

	It("creates the egress policy and applies the Secret before the StatefulSet, then makes the StatefulSet own them and its PDB, without reading first", func() {
		Expect(client.Desire(ctx, lagertest.NewTestLogger("desire"), bifrost.DesiredLRP(lrp))).To(Succeed())
		Expect(writes()).To(Equal([]string{
			"create networkpolicies", "patch secrets", "patch statefulsets",
			"update networkpolicies", "patch secrets", "patch poddisruptionbudgets",
		}))
		for _, a := range clientset.Actions() {
			Expect(a.GetVerb()).NotTo(Equal("get"), "the policy's create tells a new LRP")
			if patch, ok := a.(clienttesting.PatchAction); ok {
				Expect(patch.GetPatchType()).To(Equal(types.ApplyPatchType))
			}
		}
		expectAllOwned()
		Expect(getSTS().Annotations).To(HaveKeyWithValue(k8s.AnnotationEgressRules, `[{"protocol":"tcp","destinations":["10.0.0.0/8"],"ports":[5432]}]`))
	})

	It("hands the created policy's fields to the apply manager when the StatefulSet takes it over", func() {
		Expect(client.Desire(ctx, lagertest.NewTestLogger("desire"), bifrost.DesiredLRP(lrp))).To(Succeed())
		policy, err := clientset.NetworkingV1().NetworkPolicies(ns).Get(ctx, objects.StatefulSet.Name, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		var managers []string
		for _, f := range policy.ManagedFields {
			managers = append(managers, f.Manager+" "+string(f.Operation))
		}
		// The update's own change (the owner) is an Update; the rest, the
		// create's fields, the apply manager's, so that applies remove them.
		Expect(managers).To(ContainElement(k8s.FieldManager + " Apply"))
		for _, f := range policy.ManagedFields {
			if f.Operation == metav1.ManagedFieldsOperationUpdate {
				Expect(f.FieldsV1.String()).NotTo(ContainSubstring("f:spec"), "the policy's spec is applied, not updated")
			}
		}
	})

	It("reads the policy again when it changed since it was created", func() {
		conflicts := 0
		clientset.PrependReactor("update", "networkpolicies", func(clienttesting.Action) (bool, runtime.Object, error) {
			if conflicts++; conflicts > 1 {
				return false, nil, nil
			}
			return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "networking.k8s.io", Resource: "networkpolicies"}, "x", errors.New("the object has been modified"))
		})
		Expect(client.Desire(ctx, lagertest.NewTestLogger("desire"), bifrost.DesiredLRP(lrp))).To(Succeed())
		Expect(conflicts).To(Equal(2))
		expectAllOwned()
	})

	It("completes a desire that a crash cut short after the egress policy", func() {
		clientset.PrependReactor("patch", "statefulsets", func(clienttesting.Action) (bool, runtime.Object, error) {
			return true, nil, errors.New("connection reset")
		})
		clientset.PrependReactor("delete", "networkpolicies", func(clienttesting.Action) (bool, runtime.Object, error) {
			return true, nil, errors.New("crashed before cleaning up")
		})
		Expect(client.Desire(ctx, lagertest.NewTestLogger("desire"), bifrost.DesiredLRP(lrp))).NotTo(Succeed())
		clientset.ReactionChain = clientset.ReactionChain[2:]
		clientset.ClearActions()

		Expect(client.DesireNew(ctx, lagertest.NewTestLogger("desire"), bifrost.DesiredLRP(lrp))).To(Succeed(), "new: there is no StatefulSet")
		Expect(writes()).To(Equal([]string{
			"create networkpolicies", "patch secrets", "patch networkpolicies", "patch statefulsets",
			"update networkpolicies", "patch secrets", "patch poddisruptionbudgets",
		}))
		expectAllOwned()
	})

	It("stamps what it writes before the StatefulSet with the desire's time", func() {
		clientset.PrependReactor("patch", "statefulsets", func(clienttesting.Action) (bool, runtime.Object, error) {
			return true, nil, errors.New("connection reset")
		})
		Expect(client.Desire(ctx, lagertest.NewTestLogger("desire"), bifrost.DesiredLRP(lrp))).NotTo(Succeed())
		stamped := 0
		for _, a := range clientset.Actions() {
			switch a := a.(type) {
			case clienttesting.CreateAction:
				Expect(a.GetObject().(metav1.Object).GetAnnotations()).To(HaveKeyWithValue(k8s.AnnotationDesiredAt, now.Format(time.RFC3339Nano)))
				stamped++
			case clienttesting.PatchAction:
				if a.GetResource().Resource == "secrets" {
					Expect(string(a.GetPatch())).To(ContainSubstring(`"` + k8s.AnnotationDesiredAt + `":"` + now.Format(time.RFC3339Nano) + `"`))
					stamped++
				}
			}
		}
		Expect(stamped).To(Equal(2), "the policy and the registry secret")
	})

	It("removes the policy it created when a secret cannot be written", func() {
		clientset.PrependReactor("patch", "secrets", func(clienttesting.Action) (bool, runtime.Object, error) {
			return true, nil, errors.New("connection reset")
		})
		Expect(client.Desire(ctx, lagertest.NewTestLogger("desire"), bifrost.DesiredLRP(lrp))).NotTo(Succeed())
		policies, err := clientset.NetworkingV1().NetworkPolicies(ns).List(ctx, metav1.ListOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(policies.Items).To(BeEmpty())
	})

	It("ensures on a re-desire what the existing StatefulSet owns, and leaves the StatefulSet as first desired", func() {
		Expect(client.Desire(ctx, lagertest.NewTestLogger("desire"), bifrost.DesiredLRP(lrp))).To(Succeed())
		name := objects.StatefulSet.Name
		Expect(clientset.PolicyV1().PodDisruptionBudgets(ns).Delete(ctx, name, metav1.DeleteOptions{})).To(Succeed())
		Expect(clientset.CoreV1().Secrets(ns).Delete(ctx, name+"-registry", metav1.DeleteOptions{})).To(Succeed())
		policy, err := clientset.NetworkingV1().NetworkPolicies(ns).Get(ctx, name, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		policy.OwnerReferences = nil
		_, err = clientset.NetworkingV1().NetworkPolicies(ns).Update(ctx, policy, metav1.UpdateOptions{})
		Expect(err).NotTo(HaveOccurred())
		clientset.ClearActions()

		lrp.Instances = ptr.To(7) // the first desire wins
		Expect(client.Desire(ctx, lagertest.NewTestLogger("desire"), bifrost.DesiredLRP(lrp))).To(Succeed())
		Expect(writes()).NotTo(ContainElement("patch statefulsets"))
		Expect(*getSTS().Spec.Replicas).To(BeNumerically("==", 3))
		expectAllOwned()
	})

	It("tells a front that refuses re-desires (DesireNew) that the process guid is desired already", func() {
		Expect(client.DesireNew(ctx, lagertest.NewTestLogger("desire"), bifrost.DesiredLRP(lrp))).To(Succeed())
		clientset.ClearActions()
		lrp.Instances = ptr.To(7)
		Expect(client.DesireNew(ctx, lagertest.NewTestLogger("desire"), bifrost.DesiredLRP(lrp))).To(MatchError(k8s.ErrAlreadyDesired))
		Expect(writes()).NotTo(ContainElement("patch statefulsets"))
		Expect(*getSTS().Spec.Replicas).To(BeNumerically("==", 3))
		Expect(client.Desire(ctx, lagertest.NewTestLogger("desire"), bifrost.DesiredLRP(lrp))).To(Succeed(), "Desire stays idempotent")
	})

	It("removes the Secret and policy again when Kubernetes refuses the StatefulSet", func() {
		clientset.PrependReactor("patch", "statefulsets", func(clienttesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewInvalid(schema.GroupKind{Group: "apps", Kind: "StatefulSet"}, "x",
				field.ErrorList{field.Invalid(field.NewPath("spec"), "x", "bad env name")})
		})
		err := client.Desire(ctx, lagertest.NewTestLogger("desire"), bifrost.DesiredLRP(lrp))
		var invalid *models.InvalidRequestError
		Expect(errors.As(err, &invalid)).To(BeTrue(), "%v", err)
		secrets, err := clientset.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(secrets.Items).To(BeEmpty())
		policies, err := clientset.NetworkingV1().NetworkPolicies(ns).List(ctx, metav1.ListOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(policies.Items).To(BeEmpty())
	})
})
