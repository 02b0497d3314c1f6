package kubernetes_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	bbsk8s "github.com/iris-cf/iris/backends/kubernetes"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/k8s"
)

// The sync lists (scheduling and routing infos) answer from LRPs decoded
// once per StatefulSet version. The fake clientset keeps UID and resource
// version as written, so these specs set them as the API server would.
var _ = Describe("Sync lists at scale", func() {
	const ns = "cf-workloads"
	var (
		clientset *fake.Clientset
		backend   *bbsk8s.Backend
		logger    *lagertest.TestLogger
		ctx       context.Context
		builder   *k8s.Builder
	)

	BeforeEach(func() {
		ctx = context.Background()
		logger = lagertest.NewTestLogger("summaries")
		clientset = fake.NewClientset()
		caches, err := k8s.NewCaches(clientset, []string{ns})
		Expect(err).NotTo(HaveOccurred())
		process := ifrit.Invoke(ifrit.RunFunc(caches.Run(logger)))
		DeferCleanup(func() {
			process.Signal(os.Interrupt)
			Eventually(process.Wait()).Should(Receive())
		})
		builder = k8s.NewBuilder(config.Default().LRP)
		lrps := k8s.NewLRPClient(clientset, caches, builder, []string{ns}, clock.RealClock{})
		backend = bbsk8s.NewBackend(clientset, caches, lrps, bbsk8s.TranslateOptions{})
	})

	// statefulSet is the StatefulSet a desire of lrp makes, as stored by
	// the API server with uid and resource version.
	statefulSet := func(lrp *models.DesiredLRP, uid, resourceVersion string) *appsv1.StatefulSet {
		w, err := bbsk8s.DesiredWorkload(lrp, bbsk8s.TranslateOptions{})
		Expect(err).NotTo(HaveOccurred())
		objects, err := builder.Build(w, ns)
		Expect(err).NotTo(HaveOccurred())
		sts := objects.StatefulSet
		sts.UID, sts.ResourceVersion = types.UID(uid), resourceVersion
		return sts
	}
	lrpWith := func(processGUID, annotation string) *models.DesiredLRP {
		lrp := ccDockerLRP(processGUID, "")
		lrp.PlacementTags = nil
		lrp.Annotation = annotation
		return lrp
	}
	schedulingInfos := func(g Gomega) map[string]*models.DesiredLRPSchedulingInfo {
		infos, err := backend.DesiredLRPSchedulingInfos(ctx, logger, models.DesiredLRPFilter{Domain: "cf-apps"})
		g.Expect(err).NotTo(HaveOccurred())
		byGUID := map[string]*models.DesiredLRPSchedulingInfo{}
		for _, info := range infos {
			byGUID[info.ProcessGuid] = info
		}
		return byGUID
	}
	schedulingInfo := func(g Gomega, processGUID string) *models.DesiredLRPSchedulingInfo {
		infos := schedulingInfos(g)
		g.Expect(infos).To(HaveKey(processGUID))
		return infos[processGUID]
	}
	update := func(sts *appsv1.StatefulSet) {
		_, err := clientset.AppsV1().StatefulSets(ns).Update(ctx, sts, metav1.UpdateOptions{})
		Expect(err).NotTo(HaveOccurred())
	}

	It("answers from the records as cached, and keeps a decoded summary only of a record whose info is not its guid's, re-read when its resource version changes", func() {
		first, second := processGUID, "6b1c7e36-5b7a-4a4e-9d55-1f4f2a1e9c01-0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
		stsA := statefulSet(lrpWith(first, "v1"), "uid-a", "10")
		_, err := clientset.AppsV1().StatefulSets(ns).Create(ctx, stsA, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		stsB := statefulSet(lrpWith(second, "other"), "uid-b", "11")
		_, err = clientset.AppsV1().StatefulSets(ns).Create(ctx, stsB, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func(g Gomega) {
			infos := schedulingInfos(g)
			g.Expect(infos).To(HaveLen(2))
			g.Expect(schedulingInfo(g, first).Annotation).To(Equal("v1"))
		}).Should(Succeed())

		// Same resource version, different stored LRP (the API server
		// never serves that): a record read as cached is listed as it is,
		// since nothing of it is kept beside the cache.
		sameVersion := statefulSet(lrpWith(first, "v2"), "uid-a", "10")
		sameVersion.Name = stsA.Name
		update(sameVersion)
		Eventually(func(g Gomega) {
			g.Expect(schedulingInfo(g, first).Annotation).To(Equal("v2"))
		}).Should(Succeed())

		// A record whose process_guid annotation is not its info's is
		// decoded into a kept summary, listed under the record's guid, and
		// kept while its resource version stands: this is what shows that
		// such a record is not decoded again on every list.
		third := "7c2d8f47-6c8b-4b5f-8e66-2a5a3b2f0d12-1d2e3f4a-5b6c-4d7e-9f80-ab1c2d3e4f50"
		stsC := statefulSet(lrpWith(third, "c1"), "uid-c", "20")
		stsC.Annotations[k8s.AnnotationProcessGUID] = "edited-by-hand"
		_, err = clientset.AppsV1().StatefulSets(ns).Create(ctx, stsC, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func(g Gomega) {
			g.Expect(schedulingInfos(g)).To(HaveLen(3))
			g.Expect(schedulingInfo(g, third).Annotation).To(Equal("c1"))
		}).Should(Succeed())
		sameC := statefulSet(lrpWith(third, "c2"), "uid-c", "20")
		sameC.Name, sameC.Annotations[k8s.AnnotationProcessGUID] = stsC.Name, "edited-by-hand"
		update(sameC)
		Consistently(func(g Gomega) {
			g.Expect(schedulingInfo(g, third).Annotation).To(Equal("c1"))
		}, "300ms").Should(Succeed())
		newC := sameC.DeepCopy()
		newC.ResourceVersion = "21"
		update(newC)
		Eventually(func(g Gomega) {
			g.Expect(schedulingInfo(g, third).Annotation).To(Equal("c2"))
		}).Should(Succeed())

		// A new version (an update, a scale) is decoded again.
		newVersion := sameVersion.DeepCopy()
		newVersion.ResourceVersion = "12"
		newVersion.Spec.Replicas = ptr.To[int32](7)
		update(newVersion)
		Eventually(func(g Gomega) {
			info := schedulingInfo(g, first)
			g.Expect(info.Annotation).To(Equal("v2"))
			g.Expect(info.Instances).To(BeEquivalentTo(7))
		}).Should(Succeed())
		routing, err := backend.DesiredLRPRoutingInfos(ctx, logger, models.DesiredLRPFilter{ProcessGuids: []string{first}})
		Expect(err).NotTo(HaveOccurred())
		Expect(routing).To(HaveLen(1))
		Expect(routing[0].Instances).To(BeEquivalentTo(7))
		Expect(*routing[0].Routes).To(HaveKey("cf-router"))
		Expect(routing[0].MetricTags).To(HaveKeyWithValue("app_name", &models.MetricTagValue{Static: "dora"}))
		// Rebuilt from the kept scheduling info and metric tags, it is BBS's own routing info of the LRP.
		stored, ok, err := bbsk8s.StoredDesiredLRP(newVersion)
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(BeTrue())
		Expect(*routing[0]).To(Equal(stored.DesiredLRPRoutingInfo()))
		Expect(schedulingInfo(Default, second).Annotation).To(Equal("other"))
	})

	It("keeps each scheduling info encoded, in the list's order and filter, current with its version", func() {
		first, second := processGUID, "6b1c7e36-5b7a-4a4e-9d55-1f4f2a1e9c01-0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
		stsA := statefulSet(lrpWith(first, "v1"), "uid-a", "10")
		_, err := clientset.AppsV1().StatefulSets(ns).Create(ctx, stsA, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, err = clientset.AppsV1().StatefulSets(ns).Create(ctx, statefulSet(lrpWith(second, "other"), "uid-b", "11"), metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		decodedList := func(g Gomega, filter models.DesiredLRPFilter) []*models.DesiredLRPSchedulingInfo {
			encoded, err := backend.EncodedSchedulingInfos(ctx, logger, filter)
			g.Expect(err).NotTo(HaveOccurred())
			var out []*models.DesiredLRPSchedulingInfo
			for _, e := range encoded {
				info := &models.DesiredLRPSchedulingInfo{}
				g.Expect(info.Unmarshal(e)).To(Succeed())
				out = append(out, info)
			}
			return out
		}
		Eventually(func(g Gomega) {
			// What the handler would write encoding the decoded list.
			want, err := backend.DesiredLRPSchedulingInfos(ctx, logger, models.DesiredLRPFilter{Domain: "cf-apps"})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(want).To(HaveLen(2))
			encoded, err := backend.EncodedSchedulingInfos(ctx, logger, models.DesiredLRPFilter{Domain: "cf-apps"})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(encoded).To(HaveLen(2))
			// Compared decoded: gogo encodes routes in map order.
			for i, info := range want {
				wantBytes, err := info.Marshal()
				g.Expect(err).NotTo(HaveOccurred())
				wantDecoded, gotDecoded := &models.DesiredLRPSchedulingInfo{}, &models.DesiredLRPSchedulingInfo{}
				g.Expect(wantDecoded.Unmarshal(wantBytes)).To(Succeed())
				g.Expect(gotDecoded.Unmarshal(encoded[i])).To(Succeed())
				g.Expect(gotDecoded).To(Equal(wantDecoded))
			}
		}).Should(Succeed())
		Expect(decodedList(Default, models.DesiredLRPFilter{Domain: "cf-tasks"})).To(BeEmpty())
		Expect(decodedList(Default, models.DesiredLRPFilter{ProcessGuids: []string{second}})).To(ConsistOf(HaveField("Annotation", "other")))

		newVersion := statefulSet(lrpWith(first, "v2"), "uid-a", "12")
		newVersion.Name = stsA.Name
		update(newVersion)
		Eventually(func(g Gomega) []*models.DesiredLRPSchedulingInfo {
			return decodedList(g, models.DesiredLRPFilter{ProcessGuids: []string{first}})
		}).Should(ConsistOf(HaveField("Annotation", "v2")))
	})

	It("orders the encoded list by process guid, guids that share their first bytes included", func() {
		var guids []string
		for i, prefix := range []string{"aaaaaaaa", "aaaaaaab", "0000000f", "aaaaaaaa", "aaaaaaab", "aaaaaaaa", "f0000000"} {
			guid := fmt.Sprintf("%s-5b7a-4a4e-9d55-%012x-0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", prefix, (7-i)*1000)
			guids = append(guids, guid)
			_, err := clientset.AppsV1().StatefulSets(ns).Create(ctx, statefulSet(lrpWith(guid, "a"), fmt.Sprint("uid-", i), fmt.Sprint(30+i)), metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
		}
		slices.Sort(guids)
		Eventually(func(g Gomega) []string {
			encoded, err := backend.EncodedSchedulingInfos(ctx, logger, models.DesiredLRPFilter{Domain: "cf-apps"})
			g.Expect(err).NotTo(HaveOccurred())
			var order []string
			for _, e := range encoded {
				info := &models.DesiredLRPSchedulingInfo{}
				g.Expect(info.Unmarshal(e)).To(Succeed())
				order = append(order, info.ProcessGuid)
			}
			return order
		}).Should(Equal(guids))

		// The whole LRPs, handed over one at a time, in the same order; an
		// error from fn ends the pass.
		var streamed []string
		Expect(backend.EachDesiredLRP(ctx, logger, models.DesiredLRPFilter{Domain: "cf-apps"}, func(lrp *models.DesiredLRP) error {
			streamed = append(streamed, lrp.ProcessGuid)
			return nil
		})).To(Succeed())
		Expect(streamed).To(Equal(guids))
		calls := 0
		stop := errors.New("client gone")
		Expect(backend.EachDesiredLRP(ctx, logger, models.DesiredLRPFilter{}, func(*models.DesiredLRP) error {
			calls++
			return stop
		})).To(MatchError(stop))
		Expect(calls).To(Equal(1))
	})

	It("forgets deleted StatefulSets and serves a recreated one under its new uid", func() {
		sts := statefulSet(lrpWith(processGUID, "first life"), "uid-1", "20")
		_, err := clientset.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func(g Gomega) { g.Expect(schedulingInfos(g)).To(HaveLen(1)) }).Should(Succeed())

		Expect(clientset.AppsV1().StatefulSets(ns).Delete(ctx, sts.Name, metav1.DeleteOptions{})).To(Succeed())
		Eventually(func(g Gomega) { g.Expect(schedulingInfos(g)).To(BeEmpty()) }).Should(Succeed())

		// Same name, and even the same resource version number, but a new
		// object: nothing of the first one is served.
		again := statefulSet(lrpWith(processGUID, "second life"), "uid-2", "20")
		_, err = clientset.AppsV1().StatefulSets(ns).Create(ctx, again, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func(g Gomega) {
			g.Expect(schedulingInfo(g, processGUID).Annotation).To(Equal("second life"))
		}).Should(Succeed())
	})

	It("answers a list of one domain and then of another alike", func() {
		apps := statefulSet(lrpWith(processGUID, "app"), "uid-app", "30")
		other := lrpWith("6b1c7e36-5b7a-4a4e-9d55-1f4f2a1e9c01-0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "other")
		other.Domain = "other-domain"
		_, err := clientset.AppsV1().StatefulSets(ns).Create(ctx, apps, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, err = clientset.AppsV1().StatefulSets(ns).Create(ctx, statefulSet(other, "uid-other", "31"), metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func(g Gomega) {
			all, err := backend.DesiredLRPSchedulingInfos(ctx, logger, models.DesiredLRPFilter{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(all).To(HaveLen(2))
		}).Should(Succeed())
		for i := 0; i < 2; i++ {
			infos, err := backend.DesiredLRPSchedulingInfos(ctx, logger, models.DesiredLRPFilter{Domain: "other-domain"})
			Expect(err).NotTo(HaveOccurred())
			Expect(infos).To(HaveLen(1))
			Expect(infos[0].Annotation).To(Equal("other"))
			Expect(schedulingInfos(Default)).To(HaveLen(1))
			Expect(schedulingInfo(Default, processGUID).Annotation).To(Equal("app"))
		}
	})
})
