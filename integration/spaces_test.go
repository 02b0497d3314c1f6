package integration_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	bbsclient "code.cloudfoundry.org/bbs"
	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/google/uuid"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// tcpProxy forwards 127.0.0.1 connections to target until cut: the spec's
// way to take Diego's BBS away from Iris and give it back, without
// touching the real BBS other specs use.
type tcpProxy struct {
	target   string
	listener net.Listener
	mu       sync.Mutex
	conns    []net.Conn
	up       bool
}

func startTCPProxy(target string) *tcpProxy {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	p := &tcpProxy{target: target, listener: listener, up: true}
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			up := p.up
			if up {
				p.conns = append(p.conns, conn)
			}
			p.mu.Unlock()
			if !up {
				conn.Close()
				continue
			}
			go p.forward(conn)
		}
	}()
	DeferCleanup(func() {
		listener.Close()
		p.cut()
	})
	return p
}

func (p *tcpProxy) forward(conn net.Conn) {
	upstream, err := net.Dial("tcp", p.target)
	if err != nil {
		conn.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, upstream)
	p.mu.Unlock()
	go func() { _, _ = io.Copy(upstream, conn); upstream.Close() }()
	_, _ = io.Copy(conn, upstream)
	conn.Close()
}

// cut closes every connection and refuses new ones until restore.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = false
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *tcpProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = true
}

func (p *tcpProxy) addr() string { return p.listener.Addr().String() }

// lrpInSpace is current CC's docker LRP, tagged with space.
func lrpInSpace(space string, instances int32) *models.DesiredLRP {
	lrp := bbsDockerLRP(instances, "app-"+uuid.NewString()[:8]+".example.com")
	lrp.MetricTags["space_id"] = &models.MetricTagValue{Static: space}
	return lrp
}

// schedulingAnnotations is CC's sync list, each process's annotation (an
// error when a process is listed twice).
func schedulingAnnotations(client bbsclient.InternalClient) (map[string]string, error) {
	infos, err := client.DesiredLRPSchedulingInfos(lagertest.NewTestLogger("sync"), "", models.DesiredLRPFilter{Domain: "cf-apps"})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, info := range infos {
		if _, twice := out[info.ProcessGuid]; twice {
			return nil, fmt.Errorf("scheduling infos list %s twice", info.ProcessGuid)
		}
		out[info.ProcessGuid] = info.Annotation
	}
	return out, nil
}

// lrpAnnotations is the same from list.r3 (the whole LRPs), which the BBS
// front answers on a path of its own.
func lrpAnnotations(client bbsclient.InternalClient) (map[string]string, error) {
	lrps, err := client.DesiredLRPs(lagertest.NewTestLogger("sync"), "", models.DesiredLRPFilter{Domain: "cf-apps"})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, lrp := range lrps {
		if _, twice := out[lrp.ProcessGuid]; twice {
			return nil, fmt.Errorf("list.r3 lists %s twice", lrp.ProcessGuid)
		}
		out[lrp.ProcessGuid] = lrp.Annotation
	}
	return out, nil
}

var _ = Describe("Per-space backends: Iris in front of a real Diego BBS and Kubernetes", func() {
	var (
		iris, diego  bbsclient.InternalClient
		proxy        *tcpProxy
		logger       *lagertest.TestLogger
		k8sSpace     string
		diegoSpace   string
		placementMap string
		configFile   string
	)

	BeforeEach(func() {
		diegoURL := os.Getenv("IRIS_BBS_URL")
		if diegoURL == "" {
			Skip("no real Diego BBS in this cluster (IRIS_CLUSTER_BBS=false)")
		}
		logger = lagertest.NewTestLogger("spaces")
		diego = realBBSEndpoint().client
		proxy = startTCPProxy(strings.TrimPrefix(diegoURL, "https://"))
		k8sSpace, diegoSpace = "space-k8s-"+uuid.NewString()[:8], "space-diego-"+uuid.NewString()[:8]
		placementMap = "iris-space-backends-" + uuid.NewString()[:8]
		_, err := clientset.CoreV1().ConfigMaps(namespace).Create(context.Background(), &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: placementMap},
			Data:       map[string]string{"space." + k8sSpace: "kubernetes"},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			err := clientset.CoreV1().ConfigMaps(namespace).Delete(context.Background(), placementMap, metav1.DeleteOptions{})
			Expect(err == nil || apierrors.IsNotFound(err)).To(BeTrue())
		})

		// A second Iris, API only, whose BBS front has the real Diego
		// behind it (through the proxy) and Kubernetes for one space.
		config := secondIrisConfig("api")
		// Its own API listeners: the suite's Iris holds the first one's.
		for _, url := range []string{irisURL, irisTLSURL} {
			old := strconv.Quote(url[strings.Index(url, "://")+3:])
			config = strings.Replace(config, old, strconv.Quote(freeAddress()), 1)
		}
		suiteBBS := readFile(irisConfigFile)
		_, bbsSection, _ := strings.Cut(suiteBBS, "\nbbs:\n")
		addr := freeAddress()
		bbsSection = regexpReplaceTLSListen(bbsSection, addr)
		config += fmt.Sprintf("\nbbs:\n%s  diego:\n    url: %q\n    ca_file: %q\n    client_cert_file: %q\n    client_key_file: %q\n    placement_config_map: %q\n    default_backend: diego\n    migration:\n      interval_seconds: 1\n",
			bbsSection, "https://"+proxy.addr(), os.Getenv("IRIS_BBS_CA_FILE"), os.Getenv("IRIS_BBS_CLIENT_CERT_FILE"), os.Getenv("IRIS_BBS_CLIENT_KEY_FILE"), placementMap)
		// Diego's server certificate names 127.0.0.1, the proxy's address too.
		startExtraIris(irisPath, config)
		configFile = filepath.Join(GinkgoT().TempDir(), "iris-spaces.yml")
		Expect(os.WriteFile(configFile, []byte(config), 0o600)).To(Succeed())
		iris = newBBSClientTo("https://" + addr)
		Eventually(func(g Gomega) { g.Expect(iris.Ping(logger, "")).To(BeTrue()) }, 30*time.Second).Should(Succeed())
	})

	It("places LRPs by space, answers guid-only calls from the side that has the guid, lists both, and merges the event streams", func() {
		events := recordEvents(iris)
		onK8s, onDiego := lrpInSpace(k8sSpace, 1), lrpInSpace(diegoSpace, 1)
		Expect(iris.DesireLRP(logger, "", onK8s)).To(Succeed())
		Expect(iris.DesireLRP(logger, "", onDiego)).To(Succeed())
		DeferCleanup(func() {
			for _, guid := range []string{onK8s.ProcessGuid, onDiego.ProcessGuid} {
				if err := iris.RemoveDesiredLRP(logger, "", guid); err != nil {
					Expect(models.ConvertError(err).Type).To(Equal(models.Error_ResourceNotFound))
				}
			}
		})

		By("running the Kubernetes space's LRP as pods, and the Diego space's in Diego only")
		Eventually(func(g Gomega) { g.Expect(bbsPodsWith(g, onK8s)).To(HaveLen(1)) }, 60*time.Second).Should(Succeed())
		_, err := diego.DesiredLRPByProcessGuid(logger, "", onK8s.ProcessGuid)
		Expect(bbsErrorType(err)).To(Equal(models.Error_ResourceNotFound))
		stored, err := diego.DesiredLRPByProcessGuid(logger, "", onDiego.ProcessGuid)
		Expect(err).NotTo(HaveOccurred())
		Expect(stored.Annotation).To(Equal(onDiego.Annotation))
		Expect(bbsPods(onDiego)).To(BeEmpty())

		By("listing both in CC's sync, each once, with CC's annotation")
		annotations, err := schedulingAnnotations(iris)
		Expect(err).NotTo(HaveOccurred())
		Expect(annotations).To(HaveKeyWithValue(onK8s.ProcessGuid, onK8s.Annotation))
		Expect(annotations).To(HaveKeyWithValue(onDiego.ProcessGuid, onDiego.Annotation))
		annotations, err = lrpAnnotations(iris)
		Expect(err).NotTo(HaveOccurred())
		Expect(annotations).To(HaveKeyWithValue(onK8s.ProcessGuid, onK8s.Annotation))
		Expect(annotations).To(HaveKeyWithValue(onDiego.ProcessGuid, onDiego.Annotation))

		By("refusing the Diego guid in the Kubernetes space: one process never runs twice")
		twin := lrpInSpace(k8sSpace, 1)
		twin.ProcessGuid = onDiego.ProcessGuid
		Expect(bbsErrorType(iris.DesireLRP(logger, "", twin))).To(Equal(models.Error_ResourceExists))

		By("sending guid-only calls to the side that has the guid")
		two := int32(2)
		Expect(iris.UpdateDesiredLRP(logger, "", onDiego.ProcessGuid, &models.DesiredLRPUpdate{OptionalInstances: &models.DesiredLRPUpdate_Instances{Instances: two}})).To(Succeed())
		stored, err = diego.DesiredLRPByProcessGuid(logger, "", onDiego.ProcessGuid)
		Expect(err).NotTo(HaveOccurred())
		Expect(stored.Instances).To(Equal(two))
		got, err := iris.DesiredLRPByProcessGuid(logger, "", onDiego.ProcessGuid)
		Expect(err).NotTo(HaveOccurred())
		Expect(got.Instances).To(Equal(two))
		Eventually(func(g Gomega) {
			actual, err := iris.ActualLRPs(logger, "", models.ActualLRPFilter{ProcessGuid: onDiego.ProcessGuid})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(actual).To(HaveLen(2), "Diego's instances (UNCLAIMED: no cells here)")
		}, 30*time.Second).Should(Succeed())

		By("relaying Diego's events into Iris's one stream beside Iris's own")
		Eventually(func() []string { return events.of(onDiego.ProcessGuid) }, 30*time.Second).Should(ContainElements(
			"desired_lrp_created", "desired_lrp_changed"))
		Eventually(func(g Gomega) { g.Expect(events.of(onK8s.ProcessGuid)).To(ContainElement("desired_lrp_created")) }, 30*time.Second).Should(Succeed())

		By("removing each from its own side")
		Expect(iris.RemoveDesiredLRP(logger, "", onDiego.ProcessGuid)).To(Succeed())
		_, err = diego.DesiredLRPByProcessGuid(logger, "", onDiego.ProcessGuid)
		Expect(bbsErrorType(err)).To(Equal(models.Error_ResourceNotFound))
		Expect(iris.RemoveDesiredLRP(logger, "", onK8s.ProcessGuid)).To(Succeed())
		Eventually(func(g Gomega) { g.Expect(bbsPodsWith(g, onK8s)).To(BeEmpty()) }, 60*time.Second).Should(Succeed())
		Expect(bbsErrorType(iris.RemoveDesiredLRP(logger, "", onK8s.ProcessGuid))).To(Equal(models.Error_ResourceNotFound))
	})

	It("fails lists as a whole while Diego is unreachable, ends event streams, and recovers", func() {
		onK8s := lrpInSpace(k8sSpace, 0)
		Expect(iris.DesireLRP(logger, "", onK8s)).To(Succeed())
		DeferCleanup(func() { _ = iris.RemoveDesiredLRP(logger, "", onK8s.ProcessGuid) })
		Eventually(func(g Gomega) {
			annotations, err := schedulingAnnotations(iris)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(annotations).To(HaveKey(onK8s.ProcessGuid))
		}, 30*time.Second).Should(Succeed())

		source, err := iris.SubscribeToInstanceEvents(logger)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(source.Close)
		ended := make(chan error, 1)
		go func() {
			for {
				if _, err := source.Next(); err != nil {
					ended <- err
					return
				}
			}
		}()

		proxy.cut()
		_, err = schedulingAnnotations(iris)
		Expect(err).To(HaveOccurred(), "a list without Diego's LRPs would make CC re-desire them")
		Expect(err.Error()).To(ContainSubstring("diego"))
		_, err = lrpAnnotations(iris)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("diego"))
		Eventually(ended, 30*time.Second).Should(Receive(), "subscribers resubscribe and list again after Diego's stream broke")

		By("a desire in a Kubernetes space still works: the guid is checked against Diego only once it is back")
		proxy.restore()
		Eventually(func(g Gomega) {
			annotations, err := schedulingAnnotations(iris)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(annotations).To(HaveKey(onK8s.ProcessGuid))
			annotations, err = lrpAnnotations(iris)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(annotations).To(HaveKey(onK8s.ProcessGuid))
		}, 30*time.Second).Should(Succeed())
	})

	It("follows the operator's placement changes (iris spaces set) for new desires, and lists what runs where (iris spaces list)", func() {
		onDiego := lrpInSpace(diegoSpace, 2)
		Expect(iris.DesireLRP(logger, "", onDiego)).To(Succeed())
		DeferCleanup(func() { _ = iris.RemoveDesiredLRP(logger, "", onDiego.ProcessGuid) })

		spacesCLI := func(args ...string) string {
			GinkgoHelper()
			session, err := gexec.Start(exec.Command(irisPath, append([]string{"spaces", "--config", configFile}, args...)...), GinkgoWriter, GinkgoWriter)
			Expect(err).NotTo(HaveOccurred())
			Eventually(session, 60*time.Second).Should(gexec.Exit(0))
			return string(session.Out.Contents())
		}
		Expect(spacesCLI("set", "space", diegoSpace, "kubernetes")).To(ContainSubstring("space." + diegoSpace + " → kubernetes"))
		cm, err := clientset.CoreV1().ConfigMaps(namespace).Get(context.Background(), placementMap, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(cm.Data).To(HaveKeyWithValue("space."+diegoSpace, "kubernetes"))
		lrp := lrpInSpace(diegoSpace, 0)
		// Placement applies to the next desire; poll until this Iris saw it.
		Eventually(func(g Gomega) {
			probe := lrpInSpace(diegoSpace, 0)
			g.Expect(iris.DesireLRP(logger, "", probe)).To(Succeed())
			defer func() { _ = iris.RemoveDesiredLRP(logger, "", probe.ProcessGuid) }()
			_, err := diego.DesiredLRPByProcessGuid(logger, "", probe.ProcessGuid)
			g.Expect(bbsErrorType(err)).To(Equal(models.Error_ResourceNotFound))
		}, 30*time.Second).Should(Succeed())
		Expect(iris.DesireLRP(logger, "", lrp)).To(Succeed())
		DeferCleanup(func() { _ = iris.RemoveDesiredLRP(logger, "", lrp.ProcessGuid) })
		Eventually(func(g Gomega) {
			_, err = iris.DesiredLRPByProcessGuid(logger, "", lrp.ProcessGuid)
			g.Expect(err).NotTo(HaveOccurred())
		}, 30*time.Second).Should(Succeed())
		_, err = diego.DesiredLRPByProcessGuid(logger, "", lrp.ProcessGuid)
		Expect(bbsErrorType(err)).To(Equal(models.Error_ResourceNotFound), "the space's new LRPs run on Kubernetes now")

		By("migrating the space's running LRP too, and listing it on Kubernetes only once moved")
		Eventually(func(g Gomega) {
			g.Expect(spacesCLI("list")).To(MatchRegexp(`(?m)^%s\s+kubernetes\s+kubernetes\s+2\s+2\s+0\s+0\s+0\s+0\s+0\s*$`, diegoSpace))
		}, 90*time.Second, time.Second).Should(Succeed())
		By("moving back: the 0-instance LRP moves at once; Diego never runs the other copy (no cell in this spec), so it stays copying, the Kubernetes copy kept")
		Expect(spacesCLI("unset", "space", diegoSpace)).To(ContainSubstring("removed"))
		Eventually(func(g Gomega) {
			g.Expect(spacesCLI("list")).To(MatchRegexp(`(?m)^%s\s+diego\s+migrating\s+1\s+2\s+2\s+2\s+1\s+0\s+0\s*$`, diegoSpace))
		}, 60*time.Second, time.Second).Should(Succeed())
	})
})

// regexpReplaceTLSListen points the suite's bbs section at addr.
func regexpReplaceTLSListen(section, addr string) string {
	var out []string
	for _, line := range strings.Split(section, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "tls_listen_address:") {
			line = "  tls_listen_address: " + strconv.Quote(addr)
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}
