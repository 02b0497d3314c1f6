package spaces_test

import (
	"context"
	"os"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/iris-cf/iris/backends/spaces"
)

var _ = Describe("ConfigMapPlacement", func() {
	var (
		clientset *fake.Clientset
		placement *spaces.ConfigMapPlacement
	)

	start := func() {
		var err error
		placement, err = spaces.NewConfigMapPlacement(lagertest.NewTestLogger("placement"), clientset, "cf-system", "iris-space-backends", spaces.Diego)
		Expect(err).NotTo(HaveOccurred())
		process := ifrit.Invoke(placement)
		DeferCleanup(func() {
			process.Signal(os.Interrupt)
			Eventually(process.Wait()).Should(Receive(BeNil()))
		})
	}
	configMap := func(data map[string]string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "cf-system", Name: "iris-space-backends"}, Data: data}
	}

	It("sends every space to the configured default while there is no ConfigMap", func() {
		clientset = fake.NewClientset()
		start()
		Expect(placement.SideFor("org", "space")).To(Equal(spaces.Diego))
	})

	It("prefers the space's setting over its org's, over the ConfigMap's default, and follows changes", func() {
		clientset = fake.NewClientset(configMap(map[string]string{
			"default":     "kubernetes",
			"org.org-a":   "diego",
			"space.sp-1":  "kubernetes",
			"space.sp-2":  "Kubernetes ", // a typo: ignored, so sp-2 follows its org
			"space.other": "diego",
		}), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "cf-system", Name: "unrelated"}, Data: map[string]string{"default": "diego"}})
		start()
		Expect(placement.SideFor("org-a", "sp-1")).To(Equal(spaces.Kubernetes))
		Expect(placement.SideFor("org-a", "sp-2")).To(Equal(spaces.Diego))
		Expect(placement.SideFor("org-b", "sp-3")).To(Equal(spaces.Kubernetes))
		Expect(placement.SideFor("", "")).To(Equal(spaces.Kubernetes))

		_, err := clientset.CoreV1().ConfigMaps("cf-system").Update(context.Background(), configMap(map[string]string{"space.sp-3": "diego"}), metav1.UpdateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func(g Gomega) { g.Expect(placement.SideFor("org-b", "sp-3")).To(Equal(spaces.Diego)) }).Should(Succeed())
		Expect(placement.SideFor("org-a", "sp-1")).To(Equal(spaces.Diego), "back to the fallback: no default any more")

		Expect(clientset.CoreV1().ConfigMaps("cf-system").Delete(context.Background(), "iris-space-backends", metav1.DeleteOptions{})).To(Succeed())
		Eventually(func(g Gomega) { g.Expect(placement.SideFor("org-b", "sp-3")).To(Equal(spaces.Diego)) }).Should(Succeed())
	})
})
