package reconcile_test

import (
	"context"
	"encoding/json"
	"os"
	"time"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/bifrost"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/k8s/reconcile"
	"github.com/iris-cf/iris/models"
)

const ns = "cf-workloads"

// fakeCache mirrors the fake clientset's objects when refreshed, as the
// informers would once they caught up.
type fakeCache struct {
	clientset *fake.Clientset
	sts       map[string]*appsv1.StatefulSet
	policies  map[string]*networkingv1.NetworkPolicy
	pdbs      map[string]*policyv1.PodDisruptionBudget
	secrets   map[string]*corev1.Secret
}

func (c *fakeCache) refresh() {
	ctx := context.Background()
	c.sts, c.policies, c.pdbs, c.secrets = map[string]*appsv1.StatefulSet{}, map[string]*networkingv1.NetworkPolicy{}, map[string]*policyv1.PodDisruptionBudget{}, map[string]*corev1.Secret{}
	stss, err := c.clientset.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
	Expect(err).NotTo(HaveOccurred())
	for i := range stss.Items {
		c.sts[stss.Items[i].Name] = &stss.Items[i]
	}
	policies, err := c.clientset.NetworkingV1().NetworkPolicies(ns).List(ctx, metav1.ListOptions{})
	Expect(err).NotTo(HaveOccurred())
	for i := range policies.Items {
		c.policies[policies.Items[i].Name] = &policies.Items[i]
	}
	pdbs, err := c.clientset.PolicyV1().PodDisruptionBudgets(ns).List(ctx, metav1.ListOptions{})
	Expect(err).NotTo(HaveOccurred())
	for i := range pdbs.Items {
		c.pdbs[pdbs.Items[i].Name] = &pdbs.Items[i]
	}
	secrets, err := c.clientset.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	Expect(err).NotTo(HaveOccurred())
	for i := range secrets.Items {
		s := secrets.Items[i]
		s.Data = nil // the real cache keeps no data either
		c.secrets[s.Name] = &s
	}
}

func (c *fakeCache) StatefulSet(_, name string) *appsv1.StatefulSet { return c.sts[name] }
func (c *fakeCache) NetworkPolicy(_, name string) *networkingv1.NetworkPolicy {
	return c.policies[name]
}
func (c *fakeCache) PodDisruptionBudget(_, name string) *policyv1.PodDisruptionBudget {
	return c.pdbs[name]
}
func (c *fakeCache) SecretMeta(_, name string) *corev1.Secret { return c.secrets[name] }
func (c *fakeCache) EachStatefulSetKey(fn func(string)) {
	for _, s := range c.sts {
		fn(s.Namespace + "/" + s.Name)
	}
}
func (c *fakeCache) EachLRPOwnedObject(fn func(metav1.Object)) {
	for _, o := range c.policies {
		fn(o)
	}
	for _, o := range c.pdbs {
		fn(o)
	}
	for _, o := range c.secrets {
		fn(o)
	}
}
func (c *fakeCache) WaitForSync(context.Context) bool { return true }

func lrpRequest(instances int) *models.DesireLRPRequest {
	return &models.DesireLRPRequest{
		GUID: "app-guid", Version: "v1", ProcessGUID: "app-guid-v1", ProcessType: "web",
		AppGUID: "app-guid", AppName: "dora", SpaceName: "dev", Ports: []int32{8080},
		Instances: ptr.To(instances), LastUpdated: "1700000000.0",
		EgressRules: []models.SecurityGroupRule{{Protocol: "tcp", Destinations: []string{"10.0.0.0/8"}, Ports: []uint32{5432}}},
		Lifecycle: models.Lifecycle{DockerLifecycle: &models.DockerLifecycle{
			Image: "registry.example.com/team/dora:1", RegistryUsername: "bob", RegistryPassword: "hunter2",
		}},
	}
}

func owners(obj metav1.Object) []types.UID {
	var uids []types.UID
	for _, ref := range obj.GetOwnerReferences() {
		uids = append(uids, ref.UID)
	}
	return uids
}

// writes are the clientset's actions that change something.
func writes(clientset *fake.Clientset) []string {
	var out []string
	for _, a := range clientset.Actions() {
		if a.GetVerb() != "get" && a.GetVerb() != "list" && a.GetVerb() != "watch" {
			out = append(out, a.GetVerb()+" "+a.GetResource().Resource)
		}
	}
	return out
}

var _ = Describe("Reconciler.Sync", func() {
	var (
		ctx        context.Context
		clientset  *fake.Clientset
		cache      *fakeCache
		builder    *k8s.Builder
		clock      *clocktesting.FakeClock
		reconciler *reconcile.Reconciler
		objects    *k8s.LRPObjects
		sts        *appsv1.StatefulSet
		key        string
		instances  int
	)

	BeforeEach(func() {
		instances = 3
	})

	JustBeforeEach(func() {
		ctx = context.Background()
		clientset = fake.NewClientset()
		cache = &fakeCache{clientset: clientset}
		builder = k8s.NewBuilder(config.Default().LRP)
		clock = clocktesting.NewFakeClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
		reconciler = reconcile.NewWithCache(lagertest.NewTestLogger("reconcile"), clientset, cache, builder, clock,
			reconcile.Options{OrphanGracePeriod: 5 * time.Minute, DesireGracePeriod: 10 * time.Second, Workers: 1})
		var err error
		objects, err = builder.Build(bifrost.DesiredLRP(lrpRequest(instances)), ns)
		Expect(err).NotTo(HaveOccurred())
		objects.StatefulSet.UID = "sts-uid"
		sts = objects.StatefulSet
		key = ns + "/" + sts.Name
	})

	create := func(obj metav1.Object) {
		GinkgoHelper()
		_, err := k8s.Apply(ctx, clientset, obj)
		Expect(err).NotTo(HaveOccurred())
	}
	sync := func() time.Duration {
		GinkgoHelper()
		cache.refresh()
		clientset.ClearActions()
		after, err := reconciler.Sync(ctx, key)
		Expect(err).NotTo(HaveOccurred())
		return after
	}
	getPolicy := func() (*networkingv1.NetworkPolicy, error) {
		return clientset.NetworkingV1().NetworkPolicies(ns).Get(ctx, sts.Name, metav1.GetOptions{})
	}
	getPDB := func() (*policyv1.PodDisruptionBudget, error) {
		return clientset.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, sts.Name, metav1.GetOptions{})
	}
	getSecret := func() (*corev1.Secret, error) {
		return clientset.CoreV1().Secrets(ns).Get(ctx, objects.RegistrySecret.Name, metav1.GetOptions{})
	}

	Context("when the StatefulSet exists", func() {
		JustBeforeEach(func() {
			// The fake tracker keeps the UID it is given.
			_, err := clientset.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
		})

		It("creates the missing NetworkPolicy and PDB from the StatefulSet alone, owned by it", func() {
			create(objects.RegistrySecret)
			sync()
			policy, err := getPolicy()
			Expect(err).NotTo(HaveOccurred())
			Expect(owners(policy)).To(Equal([]types.UID{"sts-uid"}))
			Expect(policy.Spec.Egress).To(HaveLen(2), "cluster DNS and the recorded tcp rule")
			Expect(policy.Spec.Egress[1].To[0].IPBlock.CIDR).To(Equal("10.0.0.0/8"))
			Expect(policy.Spec.PodSelector.MatchLabels).To(Equal(sts.Spec.Selector.MatchLabels))
			pdb, err := getPDB()
			Expect(err).NotTo(HaveOccurred())
			Expect(owners(pdb)).To(Equal([]types.UID{"sts-uid"}))
			Expect(pdb.Spec.MinAvailable.IntValue()).To(Equal(1))
			Expect(reconciler.Repairs()).To(BeNumerically("==", 3), "policy, PDB, and the unowned secret")
		})

		It("leaves a StatefulSet created a moment ago to the desire that created it", func() {
			created, err := clientset.AppsV1().StatefulSets(ns).Get(ctx, sts.Name, metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())
			created.CreationTimestamp = metav1.NewTime(clock.Now().Add(-4 * time.Second))
			_, err = clientset.AppsV1().StatefulSets(ns).Update(ctx, created, metav1.UpdateOptions{})
			Expect(err).NotTo(HaveOccurred())
			Expect(sync()).To(Equal(6 * time.Second))
			Expect(writes(clientset)).To(BeEmpty())

			clock.Step(6 * time.Second)
			Expect(sync()).To(BeZero())
			Expect(writes(clientset)).To(ContainElements("patch networkpolicies", "patch poddisruptionbudgets"))
		})

		It("writes nothing when everything is in order, however often it runs", func() {
			create(objects.RegistrySecret)
			sync()
			Expect(writes(clientset)).NotTo(BeEmpty())
			sync()
			Expect(writes(clientset)).To(BeEmpty())
			sync()
			Expect(writes(clientset)).To(BeEmpty())
		})

		It("adopts an unowned policy and restores rules someone changed", func() {
			edited := objects.EgressPolicy.DeepCopy()
			edited.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{}} // everything allowed
			_, err := clientset.NetworkingV1().NetworkPolicies(ns).Create(ctx, edited, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			create(objects.RegistrySecret)
			sync()
			policy, err := getPolicy()
			Expect(err).NotTo(HaveOccurred())
			Expect(owners(policy)).To(Equal([]types.UID{"sts-uid"}))
			Expect(policy.Spec.Egress).To(Equal(objects.EgressPolicy.Spec.Egress))
		})

		It("restores an owned policy whose rules drifted", func() {
			create(objects.RegistrySecret)
			sync()
			policy, err := getPolicy()
			Expect(err).NotTo(HaveOccurred())
			policy.Spec.Egress = policy.Spec.Egress[:1]
			_, err = clientset.NetworkingV1().NetworkPolicies(ns).Update(ctx, policy, metav1.UpdateOptions{})
			Expect(err).NotTo(HaveOccurred())
			sync()
			Expect(writes(clientset)).To(ConsistOf("patch networkpolicies"))
			policy, err = getPolicy()
			Expect(err).NotTo(HaveOccurred())
			Expect(policy.Spec.Egress).To(HaveLen(2))
		})

		It("adopts the registry Secret, keeping the credentials it is the only record of", func() {
			create(objects.RegistrySecret)
			sync()
			secret, err := getSecret()
			Expect(err).NotTo(HaveOccurred())
			Expect(owners(secret)).To(Equal([]types.UID{"sts-uid"}))
			Expect(secret.Data).To(Equal(objects.RegistrySecret.Data))
			Expect(secret.Type).To(Equal(corev1.SecretTypeDockerConfigJson))
		})

		It("cannot recreate a missing registry Secret and does not retry it", func() {
			Expect(sync()).To(BeZero())
			_, err := getSecret()
			Expect(apierrors.IsNotFound(err)).To(BeTrue())
		})

		Context("with one instance", func() {
			BeforeEach(func() { instances = 1 })

			It("deletes a PDB left from when it had more", func() {
				create(objects.RegistrySecret)
				pdb := k8s.PodDisruptionBudget(&appsv1.StatefulSet{ObjectMeta: sts.ObjectMeta, Spec: appsv1.StatefulSetSpec{Replicas: ptr.To(int32(2)), Selector: sts.Spec.Selector}})
				pdb.OwnerReferences = []metav1.OwnerReference{k8s.OwnerReference(sts)}
				create(pdb)
				sync()
				_, err := getPDB()
				Expect(apierrors.IsNotFound(err)).To(BeTrue())
				Expect(reconciler.Deletions()).To(BeNumerically("==", 1))
			})
		})

		Context("created before its egress rules were recorded", func() {
			JustBeforeEach(func() {
				legacy, err := clientset.AppsV1().StatefulSets(ns).Get(ctx, sts.Name, metav1.GetOptions{})
				Expect(err).NotTo(HaveOccurred())
				delete(legacy.Annotations, k8s.AnnotationEgressRules)
				_, err = clientset.AppsV1().StatefulSets(ns).Update(ctx, legacy, metav1.UpdateOptions{})
				Expect(err).NotTo(HaveOccurred())
			})

			It("adopts its policy as it is, the only copy of its rules", func() {
				create(objects.RegistrySecret)
				custom := objects.EgressPolicy.DeepCopy()
				custom.Spec.Egress = custom.Spec.Egress[1:]
				create(custom)
				sync()
				policy, err := getPolicy()
				Expect(err).NotTo(HaveOccurred())
				Expect(owners(policy)).To(Equal([]types.UID{"sts-uid"}))
				Expect(policy.Spec.Egress).To(Equal(custom.Spec.Egress))
			})

			It("creates no policy it cannot know the rules of", func() {
				create(objects.RegistrySecret)
				sync()
				_, err := getPolicy()
				Expect(apierrors.IsNotFound(err)).To(BeTrue())
			})
		})
	})

	Context("when the StatefulSet is gone", func() {
		It("deletes an unowned policy and secret once no desire wrote them for the grace period", func() {
			policy := objects.EgressPolicy.DeepCopy()
			secret := objects.RegistrySecret.DeepCopy()
			for _, obj := range []metav1.Object{policy, secret} {
				obj.SetAnnotations(map[string]string{k8s.AnnotationDesiredAt: clock.Now().Add(-time.Minute).Format(time.RFC3339Nano)})
				create(obj)
			}
			Expect(sync()).To(Equal(4 * time.Minute))
			Expect(writes(clientset)).To(BeEmpty())

			clock.Step(4 * time.Minute)
			Expect(sync()).To(BeZero())
			Expect(writes(clientset)).To(ConsistOf("delete networkpolicies", "delete secrets"))
			_, err := getPolicy()
			Expect(apierrors.IsNotFound(err)).To(BeTrue())
			_, err = getSecret()
			Expect(apierrors.IsNotFound(err)).To(BeTrue())
		})

		It("leaves objects with an owner to the garbage collector", func() {
			policy := objects.EgressPolicy.DeepCopy()
			policy.OwnerReferences = []metav1.OwnerReference{k8s.OwnerReference(sts)}
			create(policy)
			clock.Step(time.Hour)
			Expect(sync()).To(BeZero())
			Expect(writes(clientset)).To(BeEmpty())
		})

		It("deletes nothing while the StatefulSet exists but the cache has not seen it", func() {
			policy := objects.EgressPolicy.DeepCopy()
			create(policy)
			clock.Step(time.Hour)
			cache.refresh()
			_, err := clientset.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			clientset.ClearActions()
			after, err := reconciler.Sync(ctx, key)
			Expect(err).NotTo(HaveOccurred())
			Expect(after).To(BeNumerically(">", 0))
			Expect(writes(clientset)).To(BeEmpty())
		})
	})

	It("keeps repairing after being stopped and started again", func() {
		_, err := clientset.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		create(objects.RegistrySecret)
		for round := 0; round < 3; round++ {
			_ = clientset.PolicyV1().PodDisruptionBudgets(ns).Delete(ctx, sts.Name, metav1.DeleteOptions{})
			cache.refresh()
			process := ifrit.Invoke(reconciler)
			Eventually(func(g Gomega) {
				_, err := getPDB()
				g.Expect(err).NotTo(HaveOccurred())
			}).Should(Succeed(), "round %d", round)
			process.Signal(os.Interrupt)
			Eventually(process.Wait()).Should(Receive(BeNil()))
		}
	})
})

var _ = Describe("the egress record", func() {
	It("is CC's rules as sent, on the StatefulSet only, so recording them restarts nothing", func() {
		objects, err := k8s.NewBuilder(config.Default().LRP).Build(bifrost.DesiredLRP(lrpRequest(1)), ns)
		Expect(err).NotTo(HaveOccurred())
		var recorded []models.SecurityGroupRule
		Expect(json.Unmarshal([]byte(objects.StatefulSet.Annotations[k8s.AnnotationEgressRules]), &recorded)).To(Succeed())
		Expect(recorded).To(Equal(lrpRequest(1).EgressRules))
		Expect(objects.StatefulSet.Spec.Template.Annotations).NotTo(HaveKey(k8s.AnnotationEgressRules))
	})
})
