package k8s_test

import (
	"context"
	"fmt"
	"os"
	"slices"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/iris-cf/iris/bifrost"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

var _ = Describe("LRPClient.SchedulingInfos", func() {
	const ns = "cf-workloads"
	var client *k8s.LRPClient

	BeforeEach(func() {
		clientset := fake.NewClientset()
		builder := k8s.NewBuilder(config.Default().LRP)
		for i := 0; i < 3; i++ {
			lrp := dockerLRP()
			lrp.GUID, lrp.Version = fmt.Sprintf("app-guid-%d", i), "v1"
			lrp.ProcessGUID, lrp.LastUpdated = lrp.GUID+"-v1", fmt.Sprintf("1700000000.%d", i)
			objects, err := builder.Build(bifrost.DesiredLRP(lrp), ns)
			Expect(err).NotTo(HaveOccurred())
			if i == 2 {
				objects.StatefulSet.DeletionTimestamp = &metav1.Time{}
			}
			_, err = clientset.AppsV1().StatefulSets(ns).Create(context.Background(), objects.StatefulSet, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
		}
		caches, err := k8s.NewCaches(clientset, []string{ns})
		Expect(err).NotTo(HaveOccurred())
		process := ifrit.Invoke(ifrit.RunFunc(caches.Run(lagertest.NewTestLogger("caches"))))
		DeferCleanup(func() {
			process.Signal(os.Interrupt)
			Eventually(process.Wait()).Should(Receive())
		})
		client = k8s.NewLRPClient(clientset, caches, builder, []string{ns}, clocktesting.NewFakePassiveClock(metav1.Now().Time))
		Eventually(client.List).Should(HaveLen(2))
	})

	It("yields what List lists, one at a time, leaving out StatefulSets being deleted, and stops when told", func() {
		var yielded []models.DesiredLRPSchedulingInfo
		for info := range client.SchedulingInfos() {
			yielded = append(yielded, *info)
		}
		Expect(yielded).To(ConsistOf(client.List()))
		Expect(yielded).To(ContainElement(models.DesiredLRPSchedulingInfo{
			DesiredLRPKey: models.DesiredLRPKey{ProcessGUID: "app-guid-1-v1"}, GUID: "app-guid-1", Version: "v1", Annotation: "1700000000.1",
		}))
		Expect(slices.ContainsFunc(yielded, func(i models.DesiredLRPSchedulingInfo) bool { return i.GUID == "app-guid-2" })).To(BeFalse())

		count := 0
		for range client.SchedulingInfos() {
			count++
			break
		}
		Expect(count).To(Equal(1))
	})
})
