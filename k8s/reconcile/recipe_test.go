package reconcile_test

import (
	"context"
	"time"

	bbsmodels "code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/iris-cf/iris/actions"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/k8s/reconcile"
	"github.com/iris-cf/iris/workload"
)

func recipeLRP() *workload.DesiredLRP {
	return &workload.DesiredLRP{
		ProcessGUID: "app-guid-v1", GUID: "app-guid", Version: "v1", AppGUID: "app-guid", AppName: "dora", SpaceName: "dev",
		Instances: 1, Ports: []int32{8080},
		Process: workload.Process{Image: "registry.example.com/cf/cflinuxfs4:1", Stack: "cflinuxfs4", Recipe: &actions.Recipe{
			Setup: bbsmodels.WrapAction(&bbsmodels.DownloadAction{From: "http://cc/droplet", To: ".", CacheKey: "droplets-app-guid-v1", User: "vcap"}),
			Action: bbsmodels.WrapAction(&bbsmodels.RunAction{Path: "/tmp/lifecycle/launcher", Args: []string{"app", "./server", ""}, User: "vcap",
				Env: []*bbsmodels.EnvironmentVariable{{Name: "VCAP_SERVICES", Value: `{"db":[{"credentials":{"password":"p"}}]}`}}}),
		}},
	}
}

var _ = Describe("Reconciler.Sync of a recipe LRP", func() {
	var (
		ctx        context.Context
		clientset  *fake.Clientset
		cache      *fakeCache
		clock      *clocktesting.FakeClock
		reconciler *reconcile.Reconciler
		objects    *k8s.LRPObjects
		sts        *appsv1.StatefulSet
		key        string
		recorded   *actions.Recipe
	)

	BeforeEach(func() {
		ctx = context.Background()
		clientset = fake.NewClientset()
		cache = &fakeCache{clientset: clientset}
		cfg := config.Default().LRP
		cfg.RunnerImage = "registry.example.com/cf/iris:1"
		lrp := recipeLRP()
		recorded = lrp.Process.Recipe
		// The record the front keeps on the StatefulSet (the BBS front:
		// its stored DesiredLRP).
		source := func(*appsv1.StatefulSet) (*actions.Recipe, bool, error) { return recorded, true, nil }
		builder := k8s.NewBuilder(cfg, k8s.WithRecipeSource(source))
		clock = clocktesting.NewFakeClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
		reconciler = reconcile.NewWithCache(lagertest.NewTestLogger("reconcile"), clientset, cache, builder, clock,
			reconcile.Options{OrphanGracePeriod: 5 * time.Minute, DesireGracePeriod: 10 * time.Second, Workers: 1})
		var err error
		objects, err = builder.Build(lrp, ns)
		Expect(err).NotTo(HaveOccurred())
		objects.StatefulSet.UID = "sts-uid"
		sts = objects.StatefulSet
		key = ns + "/" + sts.Name
	})

	sync := func() {
		GinkgoHelper()
		cache.refresh()
		clientset.ClearActions()
		_, err := reconciler.Sync(ctx, key)
		Expect(err).NotTo(HaveOccurred())
	}
	getRecipe := func() (*corev1.Secret, error) {
		return clientset.CoreV1().Secrets(ns).Get(ctx, objects.RecipeSecret.Name, metav1.GetOptions{})
	}

	Context("when the StatefulSet exists", func() {
		BeforeEach(func() {
			_, err := clientset.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
		})

		It("rebuilds a deleted recipe Secret from the StatefulSet's record, owned by it", func() {
			sync()
			secret, err := getRecipe()
			Expect(err).NotTo(HaveOccurred())
			Expect(owners(secret)).To(Equal([]types.UID{"sts-uid"}))
			Expect(secret.Data).To(Equal(objects.RecipeSecret.Data))
			Expect(secret.Labels).To(Equal(sts.Labels))

			sync()
			Expect(writes(clientset)).To(BeEmpty(), "in order: nothing to write")
		})

		It("adopts the Secret a desire wrote, and rewrites one whose recipe drifted", func() {
			_, err := k8s.Apply(ctx, clientset, objects.RecipeSecret)
			Expect(err).NotTo(HaveOccurred())
			sync()
			secret, err := getRecipe()
			Expect(err).NotTo(HaveOccurred())
			Expect(owners(secret)).To(Equal([]types.UID{"sts-uid"}))

			secret.Data[k8s.RecipeSecretKey] = []byte(`{"action":{"run":{"path":"/bin/evil","user":"vcap"}}}`)
			secret.Annotations[k8s.AnnotationRecipeSHA256] = "0000"
			_, err = clientset.CoreV1().Secrets(ns).Update(ctx, secret, metav1.UpdateOptions{})
			Expect(err).NotTo(HaveOccurred())
			sync()
			secret, err = getRecipe()
			Expect(err).NotTo(HaveOccurred())
			Expect(secret.Data).To(Equal(objects.RecipeSecret.Data))
		})
	})

	It("deletes the recipe Secret of a StatefulSet that is gone, once the grace period passed", func() {
		// As a desire writes it before its StatefulSet: stamped.
		objects.RecipeSecret.Annotations[k8s.AnnotationDesiredAt] = clock.Now().Format(time.RFC3339Nano)
		_, err := k8s.Apply(ctx, clientset, objects.RecipeSecret)
		Expect(err).NotTo(HaveOccurred())
		sync()
		_, err = getRecipe()
		Expect(err).NotTo(HaveOccurred(), "a desire may be writing it")

		clock.Step(6 * time.Minute)
		sync()
		_, err = getRecipe()
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "%v", err)
	})
})
