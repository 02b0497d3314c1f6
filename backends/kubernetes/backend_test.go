package kubernetes_test

import (
	"context"
	"os"
	"sync"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/clock"

	bbsk8s "github.com/iris-cf/iris/backends/kubernetes"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/k8s"
)

// recordingPublisher keeps what the feed publishes.
type recordingPublisher struct {
	mu     sync.Mutex
	events []models.Event
}

func (p *recordingPublisher) Publish(e models.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, e)
}

func (p *recordingPublisher) types() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, e := range p.events {
		out = append(out, e.EventType())
	}
	return out
}

// The backend over a fake clientset: the real builder, LRP client and
// informer caches, so what is checked is what the objects say.
var _ = Describe("Backend", func() {
	const ns = "cf-workloads"
	var (
		clientset *fake.Clientset
		backend   *bbsk8s.Backend
		published *recordingPublisher
		logger    *lagertest.TestLogger
		ctx       context.Context
		lrp       *models.DesiredLRP
	)

	BeforeEach(func() {
		ctx = context.Background()
		logger = lagertest.NewTestLogger("backend")
		clientset = fake.NewClientset()
		caches, err := k8s.NewCaches(clientset, []string{ns})
		Expect(err).NotTo(HaveOccurred())
		published = &recordingPublisher{}
		_, err = bbsk8s.NewFeed(logger, caches, published)
		Expect(err).NotTo(HaveOccurred())
		process := ifrit.Invoke(ifrit.RunFunc(caches.Run(logger)))
		DeferCleanup(func() {
			process.Signal(os.Interrupt)
			Eventually(process.Wait()).Should(Receive())
		})
		lrps := k8s.NewLRPClient(clientset, caches, k8s.NewBuilder(config.Default().LRP), []string{ns}, clock.RealClock{})
		backend = bbsk8s.NewBackend(clientset, caches, lrps, bbsk8s.TranslateOptions{})
		lrp = ccDockerLRP(processGUID, "")
		lrp.PlacementTags = nil
	})

	desired := func() *appsv1.StatefulSet {
		list, err := clientset.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(list.Items).To(HaveLen(1))
		return &list.Items[0]
	}

	desire := func() {
		Expect(backend.DesireLRP(ctx, logger, lrp)).To(Succeed())
		Eventually(func() error {
			_, err := backend.DesiredLRPByProcessGuid(ctx, logger, processGUID)
			return err
		}).Should(Succeed())
	}

	It("builds the StatefulSet from the translated LRP, keeping the credentials out of the stored LRP", func() {
		desire()
		sts := desired()
		Expect(*sts.Spec.Replicas).To(BeEquivalentTo(2))
		Expect(sts.Labels).To(HaveKeyWithValue(k8s.LabelSpaceGUID, spaceGUID))
		Expect(sts.Annotations).To(HaveKeyWithValue(bbsk8s.AnnotationDomain, "cf-apps"))
		Expect(sts.Spec.Template.Annotations).To(HaveKeyWithValue(bbsk8s.AnnotationDomain, "cf-apps"))
		Expect(sts.Spec.Template.Annotations).NotTo(HaveKey(bbsk8s.AnnotationDesiredLRP))
		app := sts.Spec.Template.Spec.Containers[0]
		Expect(app.Image).To(Equal("registry.example:5000/team/app:1.25"))
		Expect(app.Command).To(BeEmpty())
		Expect(app.LivenessProbe.TCPSocket.Port.IntVal).To(BeEquivalentTo(8080))
		Expect(app.LivenessProbe.TimeoutSeconds).To(BeEquivalentTo(2))
		Expect(app.ReadinessProbe.PeriodSeconds).To(BeEquivalentTo(5))
		Expect(app.StartupProbe.FailureThreshold).To(BeEquivalentTo(45))
		Expect(sts.Spec.Template.Spec.ImagePullSecrets).To(HaveLen(1))

		got, err := backend.DesiredLRPByProcessGuid(ctx, logger, processGUID)
		Expect(err).NotTo(HaveOccurred())
		Expect(got.ImageUsername).To(BeEmpty())
		Expect(got.ImagePassword).To(BeEmpty())
		Expect(got.RootFs).To(Equal(lrp.RootFs))
		Expect(got.ModificationTag.Index).To(BeZero())
		Expect(sts.Annotations[bbsk8s.AnnotationDesiredLRP]).NotTo(ContainSubstring("czNjcmV0")) // base64("s3cret")
	})

	It("answers a second desire with ResourceExists and unknown guids with ResourceNotFound", func() {
		desire()
		Expect(backend.DesireLRP(ctx, logger, lrp)).To(MatchError(models.ErrResourceExists))
		_, err := backend.DesiredLRPByProcessGuid(ctx, logger, "nope-1")
		Expect(err).To(MatchError(models.ErrResourceNotFound))
		Expect(backend.RemoveDesiredLRP(ctx, logger, "nope-1")).To(MatchError(models.ErrResourceNotFound))
		Expect(backend.UpdateDesiredLRP(ctx, logger, "nope-1", &models.DesiredLRPUpdate{})).To(MatchError(models.ErrResourceNotFound))
		key := models.NewActualLRPKey("nope-1", 0, "cf-apps")
		Expect(backend.RetireActualLRP(ctx, logger, &key)).To(MatchError(models.ErrResourceNotFound))
	})

	It("creates nothing for an LRP it refuses", func() {
		lrp.RootFs = "preloaded:cflinuxfs4"
		err := backend.DesireLRP(ctx, logger, lrp)
		Expect(models.ConvertError(err).Type).To(Equal(models.Error_InvalidRequest))
		secrets, err := clientset.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(secrets.Items).To(BeEmpty())
		list, err := clientset.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(list.Items).To(BeEmpty())
	})

	It("updates instances, routes, annotation and metric tags, bumping the modification tag", func() {
		desire()
		routes := bbsRoutesFor("new.example.com")
		update := &models.DesiredLRPUpdate{Routes: &routes, MetricTags: map[string]*models.MetricTagValue{"app_name": {Static: "renamed"}}}
		update.SetInstances(5)
		update.SetAnnotation("1764583300.0")
		Expect(backend.UpdateDesiredLRP(ctx, logger, processGUID, update)).To(Succeed())
		sts := desired()
		Expect(*sts.Spec.Replicas).To(BeEquivalentTo(5))
		Expect(sts.Annotations[k8s.AnnotationRoutes]).To(ContainSubstring("new.example.com"))
		Expect(sts.Annotations[k8s.AnnotationLastUpdated]).To(Equal("1764583300.0"))
		Eventually(func(g Gomega) {
			got, err := backend.DesiredLRPByProcessGuid(ctx, logger, processGUID)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got.Instances).To(BeEquivalentTo(5))
			g.Expect(got.Annotation).To(Equal("1764583300.0"))
			g.Expect(got.MetricTags).To(HaveKeyWithValue("app_name", &models.MetricTagValue{Static: "renamed"}))
			g.Expect(got.ModificationTag.Index).To(BeEquivalentTo(1))
		}).Should(Succeed())
		pdb, err := clientset.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, sts.Name, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(pdb.OwnerReferences).To(HaveLen(1))

		infos, err := backend.DesiredLRPSchedulingInfos(ctx, logger, models.DesiredLRPFilter{Domain: "cf-apps"})
		Expect(err).NotTo(HaveOccurred())
		Expect(infos).To(HaveLen(1))
		Expect(infos[0].Annotation).To(Equal("1764583300.0"))
		other, err := backend.DesiredLRPSchedulingInfos(ctx, logger, models.DesiredLRPFilter{Domain: "cf-tasks"})
		Expect(err).NotTo(HaveOccurred())
		Expect(other).To(BeEmpty())
	})

	It("lists the actual LRPs of several process guids ordered by guid and index", func() {
		desire()
		sts := desired()
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: sts.Name + "-1", Namespace: ns, UID: types.UID("pod-uid-1"),
				Labels:      map[string]string{k8s.PodIndexLabel: "1", k8s.LabelSourceType: k8s.SourceTypeApp},
				Annotations: sts.Spec.Template.Annotations,
			},
			Spec:   corev1.PodSpec{NodeName: "node-1", Containers: sts.Spec.Template.Spec.Containers},
			Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}},
		}
		_, err := clientset.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())

		Eventually(func(g Gomega) {
			actual, err := backend.ActualLRPsByProcessGuids(ctx, logger, models.ActualLRPsByProcessGuidsFilter{ProcessGuids: []string{"zzz-unknown", processGUID, "aaa-unknown"}})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(actual).To(HaveLen(2))
			g.Expect(actual[0].Index).To(BeEquivalentTo(0))
			g.Expect(actual[0].State).To(Equal(models.ActualLRPStateUnclaimed))
			g.Expect(actual[1].Index).To(BeEquivalentTo(1))
			g.Expect(actual[1].State).To(Equal(models.ActualLRPStateClaimed))
			g.Expect(actual[1].InstanceGuid).To(Equal("pod-uid-1"), "the pod's instance, after the unclaimed one")
		}).Should(Succeed())
	})

	It("lists actual LRPs from pods (unclaimed where there is none) and publishes their events", func() {
		desire()
		sts := desired()
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: sts.Name + "-0", Namespace: ns, UID: types.UID("pod-uid-0"),
				Labels:      sts.Spec.Template.Labels,
				Annotations: sts.Spec.Template.Annotations,
			},
			Spec: corev1.PodSpec{NodeName: "node-1", Containers: sts.Spec.Template.Spec.Containers},
			Status: corev1.PodStatus{
				Phase: corev1.PodRunning, PodIP: "10.1.2.3",
				Conditions: []corev1.PodCondition{
					{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
					{Type: corev1.PodReady, Status: corev1.ConditionTrue},
				},
				ContainerStatuses: []corev1.ContainerStatus{{
					Name: k8s.AppContainerName, Ready: true,
					State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
				}},
			},
		}
		pod.Labels = map[string]string{k8s.PodIndexLabel: "0", k8s.LabelSourceType: k8s.SourceTypeApp}
		_, err := clientset.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())

		var actual []*models.ActualLRP
		Eventually(func(g Gomega) {
			actual, err = backend.ActualLRPs(ctx, logger, models.ActualLRPFilter{ProcessGuid: processGUID})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(actual).To(HaveLen(2))
			g.Expect(actual[0].State).To(Equal(models.ActualLRPStateRunning))
		}).Should(Succeed())
		Expect(actual[0].InstanceGuid).To(Equal("pod-uid-0"))
		Expect(actual[0].CellId).To(Equal("node-1"))
		Expect(actual[0].Address).To(Equal("10.1.2.3"))
		Expect(actual[0].InstanceAddress).To(Equal("10.1.2.3"))
		Expect(actual[0].PreferredAddress).To(Equal(models.ActualLRPNetInfo_PreferredAddressInstance))
		Expect(actual[0].Ports).To(ConsistOf(models.NewPortMapping(8080, 8080), models.NewPortMapping(2222, 2222)))
		Expect(actual[0].GetRoutable()).To(BeTrue())
		Expect(actual[1].State).To(Equal(models.ActualLRPStateUnclaimed))
		Expect(actual[1].Index).To(BeEquivalentTo(1))

		onOtherCell, err := backend.ActualLRPs(ctx, logger, models.ActualLRPFilter{CellID: "node-2"})
		Expect(err).NotTo(HaveOccurred())
		Expect(onOtherCell).To(BeEmpty())

		By("a crash: the container restarted after exiting 3")
		pod.Status.ContainerStatuses[0].RestartCount = 1
		pod.Status.ContainerStatuses[0].Ready = false
		pod.Status.ContainerStatuses[0].LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3}}
		pod.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
		_, err = clientset.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(published.types).Should(Equal([]string{
			models.EventTypeDesiredLRPCreated,
			models.EventTypeActualLRPInstanceCreated,
			models.EventTypeActualLRPInstanceChanged,
			models.EventTypeActualLRPCrashed,
		}))
		crash := published.events[3].(*models.ActualLRPCrashedEvent)
		Expect(crash.CrashCount).To(BeEquivalentTo(1))
		Expect(crash.CrashReason).To(Equal("APP/PROC/WEB: Exited with status 3"))
		changed := published.events[2].(*models.ActualLRPInstanceChangedEvent)
		Expect(changed.Before.GetRoutable()).To(BeTrue())
		Expect(changed.After.GetRoutable()).To(BeFalse())

		By("retiring deletes the pod")
		key := models.NewActualLRPKey(processGUID, 0, "cf-apps")
		Expect(backend.RetireActualLRP(ctx, logger, &key)).To(Succeed())
		_, err = clientset.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		Expect(err).To(HaveOccurred())
		Eventually(published.types).Should(ContainElement(models.EventTypeActualLRPInstanceRemoved))

		By("removing deletes the StatefulSet")
		Expect(backend.RemoveDesiredLRP(ctx, logger, processGUID)).To(Succeed())
		list, err := clientset.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(list.Items).To(BeEmpty())
		Eventually(published.types).Should(ContainElement(models.EventTypeDesiredLRPRemoved))
	})
})

// What CC does right after a desire must see the desire, although the
// backend reads from informer caches: here caches that never run, so
// every read of a single LRP must reach the API.
var _ = Describe("Backend reading its own writes", func() {
	const ns = "cf-workloads"
	var (
		backend *bbsk8s.Backend
		logger  *lagertest.TestLogger
		ctx     context.Context
		lrp     *models.DesiredLRP
	)

	BeforeEach(func() {
		ctx = context.Background()
		logger = lagertest.NewTestLogger("backend")
		clientset := fake.NewClientset()
		caches, err := k8s.NewCaches(clientset, []string{ns})
		Expect(err).NotTo(HaveOccurred())
		lrps := k8s.NewLRPClient(clientset, caches, k8s.NewBuilder(config.Default().LRP), []string{ns}, clock.RealClock{})
		backend = bbsk8s.NewBackend(clientset, caches, lrps, bbsk8s.TranslateOptions{})
		lrp = ccDockerLRP(processGUID, "")
		lrp.PlacementTags = nil
		Expect(backend.DesireLRP(ctx, logger, lrp)).To(Succeed())
	})

	It("answers a second desire with ResourceExists", func() {
		Expect(backend.DesireLRP(ctx, logger, lrp)).To(MatchError(models.ErrResourceExists))
	})

	It("serves the LRP and its unclaimed instances", func() {
		got, err := backend.DesiredLRPByProcessGuid(ctx, logger, processGUID)
		Expect(err).NotTo(HaveOccurred())
		Expect(got.ProcessGuid).To(Equal(processGUID))
		actual, err := backend.ActualLRPs(ctx, logger, models.ActualLRPFilter{ProcessGuid: processGUID})
		Expect(err).NotTo(HaveOccurred())
		Expect(actual).To(HaveLen(2))
		Expect(actual).To(HaveEach(HaveField("State", models.ActualLRPStateUnclaimed)))
	})

	It("updates and removes it", func() {
		update := &models.DesiredLRPUpdate{}
		update.SetInstances(3)
		Expect(backend.UpdateDesiredLRP(ctx, logger, processGUID, update)).To(Succeed())
		got, err := backend.DesiredLRPByProcessGuid(ctx, logger, processGUID)
		Expect(err).NotTo(HaveOccurred())
		Expect(got.Instances).To(BeEquivalentTo(3))
		Expect(backend.RemoveDesiredLRP(ctx, logger, processGUID)).To(Succeed())
		_, err = backend.DesiredLRPByProcessGuid(ctx, logger, processGUID)
		Expect(err).To(MatchError(models.ErrResourceNotFound))
	})

	It("retires an instance without a pod yet, as BBS retires an UNCLAIMED one, but no index beyond the instances", func() {
		key := models.NewActualLRPKey(processGUID, 1, "cf-apps")
		Expect(backend.RetireActualLRP(ctx, logger, &key)).To(Succeed())
		key.Index = 2
		Expect(backend.RetireActualLRP(ctx, logger, &key)).To(MatchError(models.ErrResourceNotFound))
		key.Index = -1
		Expect(backend.RetireActualLRP(ctx, logger, &key)).To(MatchError(models.ErrResourceNotFound))
	})

	It("still answers ResourceNotFound for guids it never made, of any shape", func() {
		for _, guid := range []string{"nope-1", "no-dash", processGUID[:36] + "-other"} {
			_, err := backend.DesiredLRPByProcessGuid(ctx, logger, guid)
			Expect(err).To(MatchError(models.ErrResourceNotFound), guid)
		}
	})
})

func bbsRoutesFor(hostname string) models.Routes {
	lrp := ccDockerLRP(processGUID, "")
	routes := *lrp.Routes
	raw := []byte(`[{"hostnames":["` + hostname + `"],"port":8080}]`)
	r := routes["cf-router"]
	*r = raw
	return routes
}
