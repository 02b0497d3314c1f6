package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/models"
	"github.com/iris-cf/iris/route"
)

// recorder keeps every router.register / router.unregister for one app.
type recorder struct {
	mu       sync.Mutex
	appGUID  string
	register []route.RegistryMessage
	unreg    []route.RegistryMessage
}

func (r *recorder) handle(subject string) func(*natsgo.Msg) {
	return func(m *natsgo.Msg) {
		var msg route.RegistryMessage
		if json.Unmarshal(m.Data, &msg) != nil || msg.App != r.appGUID {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if subject == route.SubjectRegister {
			r.register = append(r.register, msg)
		} else {
			r.unreg = append(r.unreg, msg)
		}
	}
}

func (r *recorder) registers() []route.RegistryMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]route.RegistryMessage(nil), r.register...)
}

func (r *recorder) unregisters() []route.RegistryMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]route.RegistryMessage(nil), r.unreg...)
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.register, r.unreg = nil, nil
}

func uris(msgs []route.RegistryMessage) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.URIs[0]+"@"+m.PrivateInstanceIndex)
	}
	return out
}

// The interval from router.start and the NATS restart affect every LRP's
// emits, so these specs run in order and alone.
var _ = Describe("Routes to gorouter over NATS", Ordered, Serial, func() {
	var (
		conn *natsgo.Conn
		rec  *recorder
		lrp  *models.DesireLRPRequest
	)

	BeforeAll(func() {
		var err error
		conn, err = natsgo.Connect(nats.URL(), natsgo.MaxReconnects(-1), natsgo.ReconnectWait(100*time.Millisecond))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(conn.Close)

		lrp = newLRP(2)
		lrp.Ports = []int32{8080, 9090}
		lrp.Routes = models.Routes{"cf-router": json.RawMessage(`[{"hostname":"dora.example.com","port":8080},{"hostname":"admin.example.com","port":9090}]`)}
		rec = &recorder{appGUID: lrp.AppGUID}
		_, err = conn.Subscribe(route.SubjectRegister, rec.handle(route.SubjectRegister))
		Expect(err).NotTo(HaveOccurred())
		_, err = conn.Subscribe(route.SubjectUnregister, rec.handle(route.SubjectUnregister))
		Expect(err).NotTo(HaveOccurred())
		Expect(conn.Flush()).To(Succeed())
	})

	It("registers each route of each instance exactly once when it becomes ready", func() {
		desire(lrp)
		Eventually(func() []string { return uris(rec.registers()) }, 30*time.Second).Should(ConsistOf(
			"dora.example.com@0", "dora.example.com@1", "admin.example.com@0", "admin.example.com@1"))
		Consistently(func() int { return len(rec.registers()) }, 2*time.Second).Should(Equal(4))

		podsByIndex := map[string]corev1.Pod{}
		for _, p := range pods(namespace, lrp) {
			podsByIndex[p.Labels["apps.kubernetes.io/pod-index"]] = p
		}
		for _, m := range rec.registers() {
			pod := podsByIndex[m.PrivateInstanceIndex]
			Expect(m.Host).To(Equal(pod.Status.PodIP))
			Expect(m.App).To(Equal(lrp.AppGUID))
			Expect(m.PrivateInstanceID).To(Equal(string(pod.UID)))
			Expect(m.ServerCertDomainSAN).To(Equal(string(pod.UID)))
			Expect(m.EndpointUpdatedAtNs).To(BeNumerically(">", 0))
			if m.URIs[0] == "dora.example.com" {
				Expect(m.Port).To(Equal(uint32(8080)))
			} else {
				Expect(m.Port).To(Equal(uint32(9090)), "each route goes to its own port")
			}
			Expect(m.Tags).To(HaveKeyWithValue("component", "route-emitter"))
			Expect(m.Tags).To(HaveKeyWithValue("app_id", lrp.AppGUID))
			Expect(m.Tags).To(HaveKeyWithValue("source_id", lrp.AppGUID))
			Expect(m.Tags).To(HaveKeyWithValue("process_type", "web"))
			Expect(m.Tags).To(HaveKeyWithValue("instance_id", m.PrivateInstanceIndex))
			Expect(m.Tags).To(HaveKeyWithValue("space_id", "space-guid"))
			Expect(m.Tags).To(HaveKeyWithValue("organization_name", "acme"))
		}
		Expect(rec.unregisters()).To(BeEmpty())
	})

	It("on a route update unregisters removed routes and registers new ones", func() {
		rec.reset()
		update(lrp, models.DesiredLRPUpdate{Instances: ptr.To(2), Annotation: "2.0",
			Routes: models.Routes{"cf-router": json.RawMessage(`[{"hostname":"dora.example.com","port":8080},{"hostname":"new.example.com","port":8080}]`)}})
		Eventually(func() []string { return uris(rec.registers()) }, 10*time.Second).Should(ConsistOf("new.example.com@0", "new.example.com@1"))
		Eventually(func() []string { return uris(rec.unregisters()) }, 10*time.Second).Should(ConsistOf("admin.example.com@0", "admin.example.com@1"))
	})

	It("unregisters an instance that stops being ready, and one scaled away", func() {
		rec.reset()
		pod, err := clientset.CoreV1().Pods(namespace).Get(context.Background(), theStatefulSet(lrp).Name+"-0", metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		for i, c := range pod.Status.Conditions {
			if c.Type == corev1.PodReady {
				pod.Status.Conditions[i].Status = corev1.ConditionFalse
			}
		}
		_, err = clientset.CoreV1().Pods(namespace).UpdateStatus(context.Background(), pod, metav1.UpdateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() []string { return uris(rec.unregisters()) }, 10*time.Second).Should(ConsistOf("dora.example.com@0", "new.example.com@0"))

		rec.reset()
		update(lrp, models.DesiredLRPUpdate{Instances: ptr.To(1), Annotation: "3.0"})
		Eventually(func() []string { return uris(rec.unregisters()) }, 30*time.Second).Should(ConsistOf("dora.example.com@1", "new.example.com@1"))
		Expect(rec.registers()).To(BeEmpty())
	})

	It("re-emits every registration at the interval router.start asks for", func() {
		update(lrp, models.DesiredLRPUpdate{Instances: ptr.To(2), Annotation: "4.0"})
		Eventually(func() []string { return uris(rec.registers()) }, 30*time.Second).Should(ContainElements("dora.example.com@1"))
		// Instance 0 is still not ready (set above): only instance 1 is routable.
		rec.reset()
		greeting := `{"id":"router-1","hosts":["127.0.0.1"],"minimumRegisterIntervalInSeconds":1,"pruneThresholdInSeconds":3}`
		Expect(conn.Publish(route.SubjectStart, []byte(greeting))).To(Succeed())
		Eventually(func() int { return len(rec.registers()) }, 10*time.Second).Should(BeNumerically(">=", 6), "a greeting and then a pass every second")
		for _, m := range rec.registers() {
			Expect(m.PrivateInstanceIndex).To(Equal("1"))
		}
		Expect(conn.Publish(route.SubjectStart, []byte(`{"id":"router-1","minimumRegisterIntervalInSeconds":300}`))).To(Succeed())
	})

	It("re-registers everything after NATS restarts", func() {
		rec.reset()
		nats.Restart()
		Eventually(conn.IsConnected, 10*time.Second).Should(BeTrue())
		Eventually(func() []string { return uris(rec.registers()) }, 10*time.Second).Should(ContainElements("dora.example.com@1", "new.example.com@1"))
	})

	It("fails over to a standby emitter: one publisher at a time, and what went away meanwhile is unregistered", func() {
		// A second Iris running only the route emitter waits for its Lease;
		// its ops listener counts what it publishes.
		standbyOps := freeAddress()
		standbyConfig := strings.Replace(secondIrisConfig("route"), "ops:\n  listen_address: \"\"", "ops:\n  listen_address: "+strconv.Quote(standbyOps), 1)
		Expect(standbyConfig).To(ContainSubstring(standbyOps))
		standby := startExtraIris(irisPath, standbyConfig)
		Eventually(standby, 10*time.Second).Should(gbytes.Say("campaigning"))
		standbyPublished := func() string {
			resp, err := http.Get("http://" + standbyOps + "/metrics")
			if err != nil {
				return err.Error()
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return regexp.MustCompile(`(?m)^iris_nats_messages_published_total .*$`).FindString(string(body))
		}

		// Both processes see the new instance become ready; only the
		// leader registers it.
		rec.reset()
		indexTwo := func(msgs []route.RegistryMessage) int {
			n := 0
			for _, m := range msgs {
				if m.PrivateInstanceIndex == "2" {
					n++
				}
			}
			return n
		}
		update(lrp, models.DesiredLRPUpdate{Instances: ptr.To(3), Annotation: "5.0"})
		Eventually(func() int { return indexTwo(rec.registers()) }, 30*time.Second).Should(BeNumerically(">=", 2), "one message per route")
		Consistently(standbyPublished, 2*time.Second).Should(Equal("iris_nats_messages_published_total 0"), "a standby publishes nothing")

		// The leader dies without releasing the Lease. While nobody leads,
		// instance 2 is scaled away: only the standby can tell gorouter.
		killIris()
		sts := theStatefulSet(lrp)
		_, err := clientset.AppsV1().StatefulSets(namespace).Patch(context.Background(), sts.Name, types.MergePatchType,
			[]byte(`{"spec":{"replicas":2}}`), metav1.PatchOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() bool {
			pod, err := clientset.CoreV1().Pods(namespace).Get(context.Background(), sts.Name+"-2", metav1.GetOptions{})
			return apierrors.IsNotFound(err) || (err == nil && pod.DeletionTimestamp != nil)
		}, 10*time.Second).Should(BeTrue())
		Expect(string(standby.Out.Contents())).NotTo(ContainSubstring("leading"), "the handover must not have happened yet for this spec to test it")

		Eventually(standby, 20*time.Second).Should(gbytes.Say("leading"))
		Eventually(func() int { return indexTwo(rec.unregisters()) }, 10*time.Second).Should(Equal(2))
		Expect(standbyPublished()).NotTo(Equal("iris_nats_messages_published_total 0"))

		// The old leader comes back as a standby of the route Lease (and,
		// once the dead one's expires, leader of the reporters').
		startIris()
		Eventually(irisSession, 20*time.Second).Should(gbytes.Say("leading"))
	})
})

var _ = Describe("Routes over NATS with TLS and credentials", func() {
	It("connects with a client certificate and a user, and registers there", func() {
		dir := GinkgoT().TempDir()
		natsCA := newCA("nats-ca")
		serverLeaf, err := natsCA.Issue("127.0.0.1")
		Expect(err).NotTo(HaveOccurred())
		serverCert, serverKey, err := serverLeaf.WriteFiles(dir, "nats-server")
		Expect(err).NotTo(HaveOccurred())
		clientLeaf, err := natsCA.Issue("iris")
		Expect(err).NotTo(HaveOccurred())
		clientCert, clientKey, err := clientLeaf.WriteFiles(dir, "nats-client")
		Expect(err).NotTo(HaveOccurred())
		caFile := filepath.Join(dir, "nats-ca.crt")
		Expect(os.WriteFile(caFile, natsCA.PEM, 0o600)).To(Succeed())

		secure := startNATS("--tls", "--tlscert", serverCert, "--tlskey", serverKey, "--tlscacert", caFile, "--tlsverify",
			"--user", "router", "--pass", "s3cret")
		secure.scheme = "tls"
		DeferCleanup(secure.Stop)

		conn, err := natsgo.Connect(secure.URL(), natsgo.RootCAs(caFile), natsgo.ClientCert(clientCert, clientKey), natsgo.UserInfo("router", "s3cret"))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(conn.Close)
		lrp := newLRP(1)
		rec := &recorder{appGUID: lrp.AppGUID}
		_, err = conn.Subscribe(route.SubjectRegister, rec.handle(route.SubjectRegister))
		Expect(err).NotTo(HaveOccurred())
		Expect(conn.Flush()).To(Succeed())

		// A second Iris running only the route emitter, against the secure NATS.
		// The password comes from a file, as the chart mounts it from a Secret.
		passwordFile := filepath.Join(dir, "nats-password")
		Expect(os.WriteFile(passwordFile, []byte("s3cret\n"), 0o600)).To(Succeed())
		// Its own route Lease: the suite's Iris holds the shared one.
		config := strings.Replace(secondIrisConfig("route"), "leader_election:", "leader_election:\n  route_emitter_name: iris-route-emitter-tls", 1)
		config = strings.Replace(config, "nats_servers: ["+strconv.Quote(nats.URL())+"]", fmt.Sprintf(
			"nats_servers: [%q]\n  nats_username: router\n  nats_password_file: %q\n  nats_ca_cert_file: %q\n  nats_cert_file: %q\n  nats_key_file: %q",
			secure.URL(), passwordFile, caFile, clientCert, clientKey), 1)
		startExtraIris(irisPath, config)

		desire(lrp)
		Eventually(func() []string { return uris(rec.registers()) }, 30*time.Second).Should(ContainElement("dora.example.com@0"))
	})
})
