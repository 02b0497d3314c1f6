package kubernetes_test

import (
	"context"
	"os"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/clock"

	"github.com/iris-cf/iris/actions"
	bbsk8s "github.com/iris-cf/iris/backends/kubernetes"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/k8s"
)

// A buildpack LRP as current CC desires it, through the backend over a fake
// clientset with the real builder and LRP client.
var _ = Describe("Backend with a buildpack LRP", func() {
	const ns = "cf-workloads"
	var (
		clientset *fake.Clientset
		backend   *bbsk8s.Backend
		logger    *lagertest.TestLogger
		ctx       context.Context
		lrp       *models.DesiredLRP
		builder   *k8s.Builder
	)

	BeforeEach(func() {
		ctx = context.Background()
		logger = lagertest.NewTestLogger("backend")
		clientset = fake.NewClientset()
		caches, err := k8s.NewCaches(clientset, []string{ns})
		Expect(err).NotTo(HaveOccurred())
		process := ifrit.Invoke(ifrit.RunFunc(caches.Run(logger)))
		DeferCleanup(func() {
			process.Signal(os.Interrupt)
			Eventually(process.Wait()).Should(Receive())
		})
		cfg := config.Default().LRP
		cfg.RunnerImage = "registry.example.com/cf/iris:1.2"
		builder = k8s.NewBuilder(cfg, k8s.WithRecipeSource(bbsk8s.RecipeOf))
		lrps := k8s.NewLRPClient(clientset, caches, builder, []string{ns}, clock.RealClock{})
		backend = bbsk8s.NewBackend(clientset, caches, lrps, bbsk8s.TranslateOptions{
			Stacks: map[string]string{"cflinuxfs4": "registry.example.com/cf/cflinuxfs4:1.200"},
		})
		lrp = ccBuildpackLRP(processGUID)
	})

	desired := func() *appsv1.StatefulSet {
		GinkgoHelper()
		list, err := clientset.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(list.Items).To(HaveLen(1))
		return &list.Items[0]
	}
	recipeSecretData := func(name string) []byte {
		GinkgoHelper()
		secret, err := clientset.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		return secret.Data[k8s.RecipeSecretKey]
	}

	It("runs CC's recipe with the runner in the stack's image, from a Secret the StatefulSet owns", func() {
		Expect(backend.DesireLRP(ctx, logger, lrp)).To(Succeed())
		sts := desired()
		app := sts.Spec.Template.Spec.Containers[0]
		Expect(app.Image).To(Equal("registry.example.com/cf/cflinuxfs4:1.200"))
		Expect(app.Command[:2]).To(Equal([]string{"/iris-runner/iris", "actions"}))

		secret, err := clientset.CoreV1().Secrets(ns).Get(ctx, sts.Name+"-recipe", metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(secret.OwnerReferences).To(ConsistOf(HaveField("Name", sts.Name)))
		recipe, err := actions.DecodeRecipe(secret.Data[k8s.RecipeSecretKey], actions.FormatJSON)
		Expect(err).NotTo(HaveOccurred())
		Expect(recipe.Setup).To(Equal(lrp.Setup), "the droplet download, as CC sent it")
		Expect(recipe.CachedDependencies).To(Equal(lrp.CachedDependencies), "the lifecycle")
		Expect(recipe.Action.GetCodependentAction().Actions[0].GetRunAction().Args[1]).To(Equal("bundle exec rackup config.ru -p $PORT"))
		Expect(recipe.Monitor).To(BeNil(), "CC's check definition becomes probes")
		Expect(app.LivenessProbe.TCPSocket.Port.IntValue()).To(Equal(8080))
	})

	It("rebuilds, from the stored DesiredLRP, exactly the recipe Secret the desire wrote", func() {
		Expect(backend.DesireLRP(ctx, logger, lrp)).To(Succeed())
		sts := desired()
		owned, err := builder.OwnedObjects(sts)
		Expect(err).NotTo(HaveOccurred())
		Expect(owned.RecipeSecret).NotTo(BeNil())
		Expect(owned.RecipeSecret.Data[k8s.RecipeSecretKey]).To(Equal(recipeSecretData(sts.Name + "-recipe")))
	})

	It("updates instances, routes and annotation without touching the pods' template or the recipe", func() {
		Expect(backend.DesireLRP(ctx, logger, lrp)).To(Succeed())
		before := desired()
		recipeBefore := recipeSecretData(before.Name + "-recipe")
		Eventually(func(g Gomega) {
			_, err := backend.DesiredLRPByProcessGuid(ctx, logger, processGUID)
			g.Expect(err).To(Succeed())
		}).Should(Succeed())

		routes := bbsRoutesFor("new.example.com")
		update := &models.DesiredLRPUpdate{Routes: &routes, MetricTags: map[string]*models.MetricTagValue{"app_name": {Static: "renamed"}}}
		update.SetInstances(5)
		update.SetAnnotation("1764583300.0")
		Expect(backend.UpdateDesiredLRP(ctx, logger, processGUID, update)).To(Succeed())

		after := desired()
		Expect(*after.Spec.Replicas).To(BeEquivalentTo(5))
		Expect(after.Spec.Template).To(Equal(before.Spec.Template), "a changed template would restart every instance")
		owned, err := builder.OwnedObjects(after)
		Expect(err).NotTo(HaveOccurred())
		Expect(owned.RecipeSecret.Data[k8s.RecipeSecretKey]).To(Equal(recipeBefore), "the reconciler finds nothing to rewrite")
	})

	It("refuses a buildpack LRP, creating nothing, when Iris has no runner image", func() {
		caches, err := k8s.NewCaches(clientset, []string{ns})
		Expect(err).NotTo(HaveOccurred())
		lrps := k8s.NewLRPClient(clientset, caches, k8s.NewBuilder(config.Default().LRP), []string{ns}, clock.RealClock{})
		noRunner := bbsk8s.NewBackend(clientset, caches, lrps, bbsk8s.TranslateOptions{
			Stacks: map[string]string{"cflinuxfs4": "registry.example.com/cf/cflinuxfs4:1.200"},
		})
		err = noRunner.DesireLRP(ctx, logger, lrp)
		Expect(models.ConvertError(err).Type).To(Equal(models.Error_InvalidRequest))
		Expect(err).To(MatchError(ContainSubstring("lrp.runner_image")))
		secrets, err := clientset.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(secrets.Items).To(BeEmpty())
	})
})
