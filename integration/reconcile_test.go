package integration_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

// What an LRP's StatefulSet owns repairs itself: whatever happens to its
// registry Secret, egress NetworkPolicy or PDB, Iris brings it back, owned by
// the StatefulSet and as the LRP wants it.
var _ = Describe("Objects an LRP owns", func() {
	ctx := context.Background()

	// privateLRP has everything an LRP can own: registry credentials, egress
	// rules and more than one instance.
	privateLRP := func() *models.DesireLRPRequest {
		lrp := newLRP(2)
		lrp.Lifecycle.DockerLifecycle.Image = "registry.example.com:5000/team/private:1"
		lrp.Lifecycle.DockerLifecycle.RegistryUsername = "bob"
		lrp.Lifecycle.DockerLifecycle.RegistryPassword = "hunter2"
		lrp.EgressRules = []models.SecurityGroupRule{{Protocol: "tcp", Destinations: []string{"10.0.0.0/8"}, Ports: []uint32{5432}}}
		return lrp
	}
	stsName := func(lrp *models.DesireLRPRequest) string {
		return k8s.StatefulSetName(lrp.AppName, lrp.SpaceName, lrp.ProcessGUID)
	}
	ownedBy := func(g Gomega, obj metav1.Object, uid types.UID) {
		refs := obj.GetOwnerReferences()
		g.Expect(refs).To(HaveLen(1), "%s has owners %v", obj.GetName(), refs)
		g.Expect(refs[0].UID).To(Equal(uid))
		g.Expect(refs[0].Controller).To(HaveValue(BeTrue()))
	}
	getPolicy := func(name string) (*networkingv1.NetworkPolicy, error) {
		return clientset.NetworkingV1().NetworkPolicies(namespace).Get(ctx, name, metav1.GetOptions{})
	}
	// allOwned checks that the LRP's StatefulSet owns its Secret, a policy
	// with its rules, and its PDB.
	allOwned := func(lrp *models.DesireLRPRequest) func(g Gomega) {
		return func(g Gomega) {
			sts, err := clientset.AppsV1().StatefulSets(namespace).Get(ctx, stsName(lrp), metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			secret, err := clientset.CoreV1().Secrets(namespace).Get(ctx, sts.Name+"-registry", metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			ownedBy(g, secret, sts.UID)
			g.Expect(string(secret.Data[corev1.DockerConfigJsonKey])).To(ContainSubstring(`"registry.example.com:5000"`))
			policy, err := getPolicy(sts.Name)
			g.Expect(err).NotTo(HaveOccurred())
			ownedBy(g, policy, sts.UID)
			g.Expect(policy.Spec.Egress).To(HaveLen(2), "cluster DNS and the tcp rule")
			g.Expect(policy.Spec.Egress[1].To[0].IPBlock.CIDR).To(Equal("10.0.0.0/8"))
			pdb, err := clientset.PolicyV1().PodDisruptionBudgets(namespace).Get(ctx, sts.Name, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			ownedBy(g, pdb, sts.UID)
		}
	}

	It("restores a deleted PDB and NetworkPolicy, an ownerReference someone stripped, and rules someone changed", func() {
		lrp := privateLRP()
		desire(lrp)
		Eventually(allOwned(lrp), 30*time.Second).Should(Succeed())
		name := stsName(lrp)

		Expect(clientset.PolicyV1().PodDisruptionBudgets(namespace).Delete(ctx, name, metav1.DeleteOptions{})).To(Succeed())
		Expect(clientset.NetworkingV1().NetworkPolicies(namespace).Delete(ctx, name, metav1.DeleteOptions{})).To(Succeed())
		_, err := clientset.CoreV1().Secrets(namespace).Patch(ctx, name+"-registry", types.MergePatchType,
			[]byte(`{"metadata":{"ownerReferences":null}}`), metav1.PatchOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(allOwned(lrp), 30*time.Second).Should(Succeed())

		// Opened to everything by hand: the rules come back.
		_, err = clientset.NetworkingV1().NetworkPolicies(namespace).Patch(ctx, name, types.MergePatchType,
			[]byte(`{"spec":{"egress":[{}]}}`), metav1.PatchOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(allOwned(lrp), 30*time.Second).Should(Succeed())
	})

	It("completes on a re-desire what a desire killed after creating the StatefulSet left: no owners, no PDB", func() {
		lrp := privateLRP()
		desire(lrp)
		Eventually(allOwned(lrp), 30*time.Second).Should(Succeed())
		name := stsName(lrp)
		noOwner := []byte(`{"metadata":{"ownerReferences":null}}`)
		_, err := clientset.NetworkingV1().NetworkPolicies(namespace).Patch(ctx, name, types.MergePatchType, noOwner, metav1.PatchOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, err = clientset.CoreV1().Secrets(namespace).Patch(ctx, name+"-registry", types.MergePatchType, noOwner, metav1.PatchOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(clientset.PolicyV1().PodDisruptionBudgets(namespace).Delete(ctx, name, metav1.DeleteOptions{})).To(Succeed())

		desire(lrp)
		// At once: the re-desire itself completes them.
		allOwned(lrp)(Default)
	})

	It("repairs on a re-desire what only the desire can restore: a deleted registry Secret", func() {
		lrp := privateLRP()
		desire(lrp)
		Eventually(allOwned(lrp), 30*time.Second).Should(Succeed())
		name := stsName(lrp)
		Expect(clientset.CoreV1().Secrets(namespace).Delete(ctx, name+"-registry", metav1.DeleteOptions{})).To(Succeed())
		Eventually(func() bool {
			_, err := clientset.CoreV1().Secrets(namespace).Get(ctx, name+"-registry", metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		}, 10*time.Second).Should(BeTrue())

		desire(lrp)
		allOwned(lrp)(Default)
	})

	It("deletes a policy and secret whose StatefulSet is gone once no desire wrote them for the grace period", func() {
		lrp := newLRP(1)
		name := stsName(lrp)
		labels := map[string]string{k8s.LabelGUID: lrp.GUID, k8s.LabelVersion: lrp.Version, k8s.LabelSourceType: k8s.SourceTypeApp}
		longAgo := map[string]string{k8s.AnnotationDesiredAt: time.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano)}
		_, err := clientset.NetworkingV1().NetworkPolicies(namespace).Create(ctx, &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: longAgo},
			Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, err = clientset.CoreV1().Secrets(namespace).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name + "-registry", Labels: labels, Annotations: longAgo},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		// One a desire wrote just now stays: its StatefulSet is on the way.
		fresh := newLRP(1)
		freshLabels := map[string]string{k8s.LabelGUID: fresh.GUID, k8s.LabelVersion: fresh.Version, k8s.LabelSourceType: k8s.SourceTypeApp}
		_, err = clientset.NetworkingV1().NetworkPolicies(namespace).Create(ctx, &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: stsName(fresh), Labels: freshLabels},
			Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			err := clientset.NetworkingV1().NetworkPolicies(namespace).Delete(ctx, stsName(fresh), metav1.DeleteOptions{})
			Expect(err == nil || apierrors.IsNotFound(err)).To(BeTrue(), "%v", err)
		})

		Eventually(func(g Gomega) {
			_, err := getPolicy(name)
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "policy: %v", err)
			_, err = clientset.CoreV1().Secrets(namespace).Get(ctx, name+"-registry", metav1.GetOptions{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "secret: %v", err)
		}, 30*time.Second).Should(Succeed())
		_, err = getPolicy(stsName(fresh))
		Expect(err).NotTo(HaveOccurred())
	})
})
