package integration_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bbsclient "code.cloudfoundry.org/bbs"
	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/google/uuid"
	natsgo "github.com/nats-io/nats.go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/iris-cf/iris/bifrost/bbs/bbstest"
	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/route"
)

// newBBSClient is the real BBS Go client, as CC's and tps-watcher's
// counterpart, over mTLS to the suite's Iris.
func newBBSClient() bbsclient.InternalClient {
	return newBBSClientTo(bbsURL)
}

// newBBSClientTo is the real BBS Go client over mTLS to url, an Iris
// serving the suite's server certificate.
func newBBSClientTo(url string) bbsclient.InternalClient {
	dir := GinkgoT().TempDir()
	caFile := filepath.Join(dir, "server-ca.crt")
	Expect(os.WriteFile(caFile, serverCA.PEM, 0o600)).To(Succeed())
	certFile, keyFile, err := clientLeaf.WriteFiles(dir, "bbs-client")
	Expect(err).NotTo(HaveOccurred())
	client, err := bbsclient.NewClient(url, caFile, certFile, keyFile, 0, 0)
	Expect(err).NotTo(HaveOccurred())
	return client
}

// bbsDockerLRP is a desired LRP as current CC builds one for a docker app
// (bbstest.DockerLRP) of app dora in space dev of org acme.
func bbsDockerLRP(instances int32, hostname string) *models.DesiredLRP {
	return bbstest.DockerLRP(uuid.NewString()+"-"+uuid.NewString(), instances, hostname,
		bbstest.Space{AppName: "dora", SpaceGUID: "space-guid", SpaceName: "dev", OrgGUID: "org-guid", OrgName: "acme"})
}

func bbsRoutes(hostname string) models.Routes { return bbstest.Routes(hostname) }

// bbsPods are the pods of a BBS LRP, by its process guid halves.
func bbsPods(lrp *models.DesiredLRP) []corev1.Pod {
	GinkgoHelper()
	return bbsPodsWith(Default, lrp)
}

func bbsPodsWith(g Gomega, lrp *models.DesiredLRP) []corev1.Pod {
	list, err := clientset.CoreV1().Pods(namespace).List(context.Background(), metav1.ListOptions{
		LabelSelector: k8s.LabelGUID + "=" + lrp.ProcessGuid[:36] + "," + k8s.LabelVersion + "=" + lrp.ProcessGuid[37:],
	})
	g.Expect(err).NotTo(HaveOccurred())
	return list.Items
}

// eventRecorder keeps every event of one lrp_instances subscription.
type eventRecorder struct {
	mu     sync.Mutex
	events []models.Event
}

func recordEvents(client bbsclient.InternalClient) *eventRecorder {
	source, err := client.SubscribeToInstanceEvents(lagertest.NewTestLogger("events"))
	Expect(err).NotTo(HaveOccurred())
	r := &eventRecorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			event, err := source.Next()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.events = append(r.events, event)
			r.mu.Unlock()
		}
	}()
	DeferCleanup(func() {
		Expect(source.Close()).To(Succeed())
		Eventually(done, 10*time.Second).Should(BeClosed())
	})
	return r
}

// of returns the recorded events about processGUID, as "<type>" or
// "<type>:<index>" for instance events, in order.
func (r *eventRecorder) of(processGUID string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, event := range r.events {
		switch e := event.(type) {
		case *models.DesiredLRPCreatedEvent:
			if e.DesiredLrp.ProcessGuid == processGUID {
				out = append(out, e.EventType())
			}
		case *models.DesiredLRPChangedEvent:
			if e.After.ProcessGuid == processGUID {
				out = append(out, e.EventType())
			}
		case *models.DesiredLRPRemovedEvent:
			if e.DesiredLrp.ProcessGuid == processGUID {
				out = append(out, e.EventType())
			}
		case *models.ActualLRPInstanceCreatedEvent:
			if e.ActualLrp.ProcessGuid == processGUID {
				out = append(out, e.EventType())
			}
		case *models.ActualLRPInstanceChangedEvent:
			if e.ProcessGuid == processGUID {
				out = append(out, e.EventType())
			}
		case *models.ActualLRPInstanceRemovedEvent:
			if e.ActualLrp.ProcessGuid == processGUID {
				out = append(out, e.EventType())
			}
		case *models.ActualLRPCrashedEvent:
			if e.ProcessGuid == processGUID {
				out = append(out, e.EventType())
			}
		}
	}
	return out
}

func (r *eventRecorder) crashes(processGUID string) []*models.ActualLRPCrashedEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*models.ActualLRPCrashedEvent
	for _, event := range r.events {
		if e, ok := event.(*models.ActualLRPCrashedEvent); ok && e.ProcessGuid == processGUID {
			out = append(out, e)
		}
	}
	return out
}

func bbsErrorType(err error) models.Error_Type {
	Expect(err).To(HaveOccurred())
	return models.ConvertError(err).Type
}

var _ = Describe("The BBS front on a real cluster", func() {
	var (
		client bbsclient.InternalClient
		logger *lagertest.TestLogger
	)

	BeforeEach(func() {
		client = newBBSClient()
		logger = lagertest.NewTestLogger("bbs-it")
	})

	It("runs a docker LRP through CC's calls: desire, list actual LRPs with pod IPs, update, retire, remove, with events", func() {
		events := recordEvents(client)
		lrp := bbsDockerLRP(2, "dora-bbs.example.com")
		conn, err := natsgo.Connect(nats.URL())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(conn.Close)
		routes := &recorder{appGUID: lrp.LogGuid}
		_, err = conn.Subscribe(route.SubjectRegister, routes.handle(route.SubjectRegister))
		Expect(err).NotTo(HaveOccurred())
		Expect(conn.Flush()).To(Succeed())
		Expect(client.DesireLRP(logger, "trace", lrp)).To(Succeed())

		By("running an instance per pod, listed with the pod's IP, node and uid")
		var actual []*models.ActualLRP
		Eventually(func(g Gomega) {
			var err error
			actual, err = client.ActualLRPs(logger, "trace", models.ActualLRPFilter{ProcessGuid: lrp.ProcessGuid})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(actual).To(HaveLen(2))
			for _, a := range actual {
				g.Expect(a.State).To(Equal(models.ActualLRPStateRunning))
				g.Expect(a.GetRoutable()).To(BeTrue())
			}
		}, 60*time.Second).Should(Succeed())
		byName := map[string]corev1.Pod{}
		for _, pod := range bbsPods(lrp) {
			byName[string(pod.UID)] = pod
		}
		for i, a := range actual {
			Expect(a.Index).To(BeEquivalentTo(i))
			Expect(a.Domain).To(Equal("cf-apps"))
			pod, ok := byName[a.InstanceGuid]
			Expect(ok).To(BeTrue(), "instance guid %s is no pod's uid", a.InstanceGuid)
			Expect(a.CellId).To(Equal(pod.Spec.NodeName))
			Expect(a.Address).To(Equal(pod.Status.PodIP))
			Expect(a.InstanceAddress).To(Equal(pod.Status.PodIP))
			Expect(a.PreferredAddress).To(Equal(models.ActualLRPNetInfo_PreferredAddressInstance))
			Expect(a.Ports).To(ConsistOf(models.NewPortMapping(8080, 8080)))
		}
		By("registering its cf-router hostnames with gorouter, as OPI LRPs")
		Eventually(func() []string { return uris(routes.registers()) }, 30*time.Second).Should(ContainElements(
			"dora-bbs.example.com@0", "dora-bbs.example.com@1"))

		byGuids, err := client.ActualLRPsByProcessGuids(logger, "trace", []string{lrp.ProcessGuid})
		Expect(err).NotTo(HaveOccurred())
		Expect(byGuids).To(HaveLen(2))
		byCell, err := client.ActualLRPs(logger, "trace", models.ActualLRPFilter{CellID: actual[0].CellId})
		Expect(err).NotTo(HaveOccurred())
		Expect(byCell).To(ContainElement(HaveField("ActualLRPInstanceKey.InstanceGuid", actual[0].InstanceGuid)))

		By("serving the LRP back as desired, without its image credentials")
		got, err := client.DesiredLRPByProcessGuid(logger, "trace", lrp.ProcessGuid)
		Expect(err).NotTo(HaveOccurred())
		Expect(got.Instances).To(BeEquivalentTo(2))
		Expect(got.Annotation).To(Equal("1764583200.0"))
		Expect(got.RootFs).To(Equal(lrp.RootFs))
		Expect(string(*(*got.Routes)["cf-router"])).To(Equal(string(*(*lrp.Routes)["cf-router"])))
		Expect(got.MetricTags).To(HaveKeyWithValue("space_id", &models.MetricTagValue{Static: "space-guid"}))
		Expect(got.ModificationTag.Epoch).NotTo(BeEmpty())
		Expect(got.ModificationTag.Index).To(BeZero())
		epoch := got.ModificationTag.Epoch
		infos, err := client.DesiredLRPSchedulingInfos(logger, "trace", models.DesiredLRPFilter{Domain: "cf-apps"})
		Expect(err).NotTo(HaveOccurred())
		Expect(infos).To(ContainElement(And(
			HaveField("DesiredLRPKey.ProcessGuid", lrp.ProcessGuid),
			HaveField("Annotation", "1764583200.0"),
			HaveField("Instances", BeEquivalentTo(2)),
		)))
		routing, err := client.DesiredLRPRoutingInfos(logger, "trace", models.DesiredLRPFilter{ProcessGuids: []string{lrp.ProcessGuid}})
		Expect(err).NotTo(HaveOccurred())
		Expect(routing).To(HaveLen(1))
		Expect(routing[0].Routes).NotTo(BeNil())

		By("updating instances, routes and annotation")
		newRoutes := bbsRoutes("dora-bbs-2.example.com")
		update := &models.DesiredLRPUpdate{Routes: &newRoutes}
		update.SetInstances(3)
		update.SetAnnotation("1764583300.0")
		Expect(client.UpdateDesiredLRP(logger, "trace", lrp.ProcessGuid, update)).To(Succeed())
		Eventually(func(g Gomega) {
			got, err := client.DesiredLRPByProcessGuid(logger, "trace", lrp.ProcessGuid)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got.Instances).To(BeEquivalentTo(3))
			g.Expect(got.Annotation).To(Equal("1764583300.0"))
			g.Expect(string(*(*got.Routes)["cf-router"])).To(ContainSubstring("dora-bbs-2.example.com"))
			g.Expect(got.ModificationTag).To(Equal(&models.ModificationTag{Epoch: epoch, Index: 1}))
		}, 10*time.Second).Should(Succeed())
		Eventually(func(g Gomega) {
			actual, err := client.ActualLRPs(logger, "trace", models.ActualLRPFilter{ProcessGuid: lrp.ProcessGuid})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(actual).To(HaveLen(3))
			g.Expect(actual).To(HaveEach(HaveField("State", models.ActualLRPStateRunning)))
		}, 60*time.Second).Should(Succeed())

		By("retiring one instance, which a new one replaces")
		index := int32(1)
		before, err := client.ActualLRPs(logger, "trace", models.ActualLRPFilter{ProcessGuid: lrp.ProcessGuid, Index: &index})
		Expect(err).NotTo(HaveOccurred())
		Expect(before).To(HaveLen(1))
		Expect(client.RetireActualLRP(logger, "trace", &before[0].ActualLRPKey)).To(Succeed())
		Eventually(func(g Gomega) {
			after, err := client.ActualLRPs(logger, "trace", models.ActualLRPFilter{ProcessGuid: lrp.ProcessGuid, Index: &index})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(after).To(HaveLen(1))
			g.Expect(after[0].InstanceGuid).NotTo(Equal(before[0].InstanceGuid))
			g.Expect(after[0].State).To(Equal(models.ActualLRPStateRunning))
		}, 60*time.Second).Should(Succeed())

		By("removing it and everything it owns")
		Expect(client.RemoveDesiredLRP(logger, "trace", lrp.ProcessGuid)).To(Succeed())
		Eventually(func(g Gomega) {
			_, err := client.DesiredLRPByProcessGuid(logger, "trace", lrp.ProcessGuid)
			g.Expect(bbsErrorType(err)).To(Equal(models.Error_ResourceNotFound))
		}, 10*time.Second).Should(Succeed())
		Eventually(func(g Gomega) []corev1.Pod { return bbsPodsWith(g, lrp) }, 60*time.Second).Should(BeEmpty())

		By("having told the subscriber each change once, in order")
		// Instances: 2 desired, 1 more by the update, 1 replacing the
		// retired one; removed: the retired one, then all 3. The
		// StatefulSet controller may start one more pod while the removal
		// propagates: every instance created is removed, once.
		count := func(seen []string, eventType string) int {
			n := 0
			for _, s := range seen {
				if s == eventType {
					n++
				}
			}
			return n
		}
		var seen []string
		Eventually(func(g Gomega) {
			seen = events.of(lrp.ProcessGuid)
			g.Expect(count(seen, models.EventTypeDesiredLRPRemoved)).To(Equal(1))
			g.Expect(count(seen, models.EventTypeActualLRPInstanceRemoved)).To(BeNumerically(">=", 4))
			g.Expect(count(seen, models.EventTypeActualLRPInstanceRemoved)).To(Equal(count(seen, models.EventTypeActualLRPInstanceCreated)))
		}, 30*time.Second).Should(Succeed())
		Consistently(func(g Gomega) { g.Expect(events.of(lrp.ProcessGuid)).To(Equal(seen), "nothing more after the removal") }, "2s").Should(Succeed())
		Expect(seen[0]).To(Equal(models.EventTypeDesiredLRPCreated))
		Expect(count(seen, models.EventTypeDesiredLRPCreated)).To(Equal(1))
		Expect(count(seen, models.EventTypeDesiredLRPChanged)).To(BeNumerically(">=", 1), "the update")
		Expect(count(seen, models.EventTypeActualLRPInstanceChanged)).To(BeNumerically(">=", 4), "each instance went RUNNING")
		Expect(slices.Index(seen, models.EventTypeActualLRPInstanceCreated)).To(BeNumerically("<", slices.Index(seen, models.EventTypeActualLRPInstanceChanged)))
	})

	It("reports a container crash as an actual LRP crashed event and a CRASHED instance", func() {
		events := recordEvents(client)
		lrp := bbsDockerLRP(1, "dora-crash.example.com")
		Expect(client.DesireLRP(logger, "trace", lrp)).To(Succeed())
		DeferCleanup(func() { _ = client.RemoveDesiredLRP(logger, "trace", lrp.ProcessGuid) })
		Eventually(func(g Gomega) {
			actual, err := client.ActualLRPs(logger, "trace", models.ActualLRPFilter{ProcessGuid: lrp.ProcessGuid})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(actual).To(ConsistOf(HaveField("State", models.ActualLRPStateRunning)))
		}, 60*time.Second).Should(Succeed())

		// Play the kubelet: the container exited with 3 and is backing off.
		Eventually(func(g Gomega) error {
			pods := bbsPodsWith(g, lrp)
			if len(pods) != 1 {
				return errFewPods
			}
			pod := pods[0]
			s := &pod.Status.ContainerStatuses[0]
			s.Ready, s.RestartCount = false, 1
			s.LastTerminationState = terminated(3, "Error", "containerd://bbs-exit-3")
			s.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
			_, err := clientset.CoreV1().Pods(namespace).UpdateStatus(context.Background(), &pod, metav1.UpdateOptions{})
			return err
		}, 10*time.Second).Should(Succeed())

		Eventually(func(g Gomega) {
			crashes := events.crashes(lrp.ProcessGuid)
			g.Expect(crashes).To(HaveLen(1))
			g.Expect(crashes[0].CrashCount).To(BeEquivalentTo(1))
			g.Expect(crashes[0].CrashReason).To(Equal("APP/PROC/WEB: Exited with status 3"))
		}, 30*time.Second).Should(Succeed())
		Consistently(func(g Gomega) { g.Expect(events.crashes(lrp.ProcessGuid)).To(HaveLen(1), "one crash, once") }, "2s").Should(Succeed())
		actual, err := client.ActualLRPs(logger, "trace", models.ActualLRPFilter{ProcessGuid: lrp.ProcessGuid})
		Expect(err).NotTo(HaveOccurred())
		Expect(actual).To(ConsistOf(And(HaveField("State", models.ActualLRPStateCrashed), HaveField("CrashCount", BeEquivalentTo(1)))))
	})

	It("answers a duplicate desire with ResourceExists and unknown guids with ResourceNotFound", func() {
		lrp := bbsDockerLRP(1, "dora-dup.example.com")
		Expect(client.DesireLRP(logger, "trace", lrp)).To(Succeed())
		DeferCleanup(func() { _ = client.RemoveDesiredLRP(logger, "trace", lrp.ProcessGuid) })
		Eventually(func(g Gomega) {
			err := client.DesireLRP(logger, "trace", lrp)
			g.Expect(bbsErrorType(err)).To(Equal(models.Error_ResourceExists))
			g.Expect(err.Error()).To(Equal("the requested resource already exists"))
		}, 10*time.Second).Should(Succeed())

		unknown := uuid.NewString() + "-" + uuid.NewString()
		_, err := client.DesiredLRPByProcessGuid(logger, "trace", unknown)
		Expect(bbsErrorType(err)).To(Equal(models.Error_ResourceNotFound))
		Expect(err.Error()).To(Equal("the requested resource could not be found"))
		update := &models.DesiredLRPUpdate{}
		update.SetInstances(2)
		Expect(bbsErrorType(client.UpdateDesiredLRP(logger, "trace", unknown, update))).To(Equal(models.Error_ResourceNotFound))
		Expect(bbsErrorType(client.RemoveDesiredLRP(logger, "trace", unknown))).To(Equal(models.Error_ResourceNotFound))
		key := models.NewActualLRPKey(unknown, 0, "cf-apps")
		Expect(bbsErrorType(client.RetireActualLRP(logger, "trace", &key))).To(Equal(models.Error_ResourceNotFound))
	})

	DescribeTable("refuses invalid LRPs with InvalidRequest and creates nothing",
		func(change func(*models.DesiredLRP), message string) {
			lrp := bbsDockerLRP(1, "dora-invalid.example.com")
			appGUID := lrp.ProcessGuid[:36]
			change(lrp)
			err := client.DesireLRP(logger, "trace", lrp)
			Expect(bbsErrorType(err)).To(Equal(models.Error_InvalidRequest))
			Expect(err.Error()).To(ContainSubstring(message))
			list, err := clientset.AppsV1().StatefulSets(namespace).List(context.Background(), metav1.ListOptions{
				LabelSelector: k8s.LabelGUID + "=" + appGUID,
			})
			Expect(err).NotTo(HaveOccurred())
			Expect(list.Items).To(BeEmpty())
		},
		Entry("a buildpack app on a stack this Iris has no image for (bbs.stacks)", func(l *models.DesiredLRP) {
			l.RootFs = "preloaded:cflinuxfs3"
			l.Setup = models.WrapAction(models.Serial(&models.DownloadAction{
				From: "http://cloud-controller-ng.service.cf.internal:9022/internal/v2/droplets/x/y/download", To: ".", CacheKey: "droplets-x", User: "vcap",
			}))
		}, `no image for stack "cflinuxfs3"`),
		Entry("a stack this Iris has no image for (bbs.stacks)", func(l *models.DesiredLRP) { l.RootFs = "preloaded:cflinuxfs3" },
			`no image for stack "cflinuxfs3"`),
		Entry("privileged, which this Iris does not allow", func(l *models.DesiredLRP) { l.Privileged = true },
			"privileged containers are not allowed"),
		Entry("more than one placement tag, which Iris cannot place by", func(l *models.DesiredLRP) { l.PlacementTags = []string{"a", "b"} },
			"placement_tags"),
		Entry("BBS's own validation: no process guid", func(l *models.DesiredLRP) { l.ProcessGuid = "" },
			"Invalid field: process_guid"),
	)
})

// errFewPods makes a polled lookup retry until the LRP's pod exists.
var errFewPods = errors.New("the LRP's pod is not there yet")
