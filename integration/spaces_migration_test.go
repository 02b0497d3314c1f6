package integration_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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

	"github.com/iris-cf/iris/backends/spaces"
	"github.com/iris-cf/iris/k8s"
)

// spacesIris is a second Iris, API only, whose BBS front has the real
// Diego behind it, with its placement ConfigMap, a fast migration loop and
// the ops listener's admin routes over mutual TLS.
type spacesIris struct {
	config       string
	configFile   string
	bbsURL       string
	opsURL       string
	placementMap string
	session      *gexec.Session
}

// spacesIrisConfig writes the config of a spaces Iris reaching Diego at
// diegoAddr (host:port) with placement in placementMap.
func spacesIrisConfig(diegoAddr, placementMap string) *spacesIris {
	GinkgoHelper()
	config := secondIrisConfig("api")
	// Its own API listeners: the suite's Iris holds the first one's.
	for _, url := range []string{irisURL, irisTLSURL} {
		old := strconv.Quote(url[strings.Index(url, "://")+3:])
		config = strings.Replace(config, old, strconv.Quote(freeAddress()), 1)
	}
	opsAddr := freeAddress()
	certFile, keyFile := filepath.Join(serverCertDir, "server.crt"), filepath.Join(serverCertDir, "server.key")
	clientCAFile := filepath.Join(GinkgoT().TempDir(), "ops-client-ca.crt")
	Expect(os.WriteFile(clientCAFile, clientCA.PEM, 0o600)).To(Succeed())
	config = strings.Replace(config, "ops:\n  listen_address: \"\"", fmt.Sprintf("ops:\n  listen_address: %q\n  tls_cert_file: %q\n  tls_key_file: %q\n  client_ca_file: %q",
		opsAddr, certFile, keyFile, clientCAFile), 1)
	Expect(config).To(ContainSubstring(opsAddr), "the ops section moved in the suite's config")
	_, bbsSection, _ := strings.Cut(readFile(irisConfigFile), "\nbbs:\n")
	addr := freeAddress()
	bbsSection = regexpReplaceTLSListen(bbsSection, addr)
	config += fmt.Sprintf("\nbbs:\n%s  diego:\n    url: %q\n    ca_file: %q\n    client_cert_file: %q\n    client_key_file: %q\n    placement_config_map: %q\n    default_backend: diego\n    migration:\n      interval_seconds: 1\n",
		bbsSection, "https://"+diegoAddr, os.Getenv("IRIS_BBS_CA_FILE"), os.Getenv("IRIS_BBS_CLIENT_CERT_FILE"), os.Getenv("IRIS_BBS_CLIENT_KEY_FILE"), placementMap)
	file := filepath.Join(GinkgoT().TempDir(), "iris-spaces.yml")
	Expect(os.WriteFile(file, []byte(config), 0o600)).To(Succeed())
	return &spacesIris{config: config, configFile: file, bbsURL: "https://" + addr, opsURL: "https://" + opsAddr, placementMap: placementMap}
}

// start runs it until the spec ends (SIGTERM then must drain it and exit
// 0, unless the spec killed it).
func (s *spacesIris) start() {
	GinkgoHelper()
	session, err := gexec.Start(exec.Command(irisPath, "--config", s.configFile), GinkgoWriter, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	s.session = session
	DeferCleanup(func() {
		if session.ExitCode() != -1 {
			return
		}
		session.Signal(syscall.SIGTERM)
		Eventually(session, 20*time.Second).Should(gexec.Exit(0))
	})
	client := newBBSClientTo(s.bbsURL)
	Eventually(func(g Gomega) { g.Expect(client.Ping(lagertest.NewTestLogger("ping"), "")).To(BeTrue()) }, 30*time.Second).Should(Succeed())
}

func (s *spacesIris) kill() {
	GinkgoHelper()
	s.session.Kill()
	Eventually(s.session, 10*time.Second).Should(gexec.Exit())
}

// admin calls the ops listener's admin routes with CC's client certificate
// (signed by the CA the config names as ops.client_ca_file).
func (s *spacesIris) admin(method, path string, body any) (int, []byte, error) {
	cert, err := clientLeaf.TLSCertificate()
	if err != nil {
		return 0, nil, err
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: serverCA.Pool(), Certificates: []tls.Certificate{cert},
	}}}
	defer client.CloseIdleConnections()
	var data []byte
	if body != nil {
		if data, err = json.Marshal(body); err != nil {
			return 0, nil, err
		}
	}
	req, err := http.NewRequest(method, s.opsURL+path, bytes.NewReader(data))
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	return resp.StatusCode, answer, err
}

func (s *spacesIris) place(space string, side spaces.Side) {
	GinkgoHelper()
	code, body, err := s.admin(http.MethodPut, "/admin/placement", spaces.PlacementRequest{Scope: "space", GUID: space, Backend: string(side)})
	Expect(err).NotTo(HaveOccurred())
	Expect(code).To(Equal(http.StatusNoContent), string(body))
}

func (s *spacesIris) spaceState(g Gomega, space string) spaces.SpaceStateJSON {
	code, body, err := s.admin(http.MethodGet, "/admin/spaces", nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(code).To(Equal(http.StatusOK), string(body))
	var states []spaces.SpaceStateJSON
	g.Expect(json.Unmarshal(body, &states)).To(Succeed())
	for _, st := range states {
		if st.Space == space {
			return st
		}
	}
	return spaces.SpaceStateJSON{Space: space}
}

// moves reads the moves the leader keeps.
func (s *spacesIris) moves(g Gomega) spaces.Moves {
	moves, err := spaces.NewConfigMapMoveStore(clientset, namespace, spaces.MigrationsConfigMap(s.placementMap)).Load(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	return moves
}

// statefulSetsOf are the live StatefulSets of the LRPs' process guids.
func statefulSetsOf(g Gomega, guids []string) []string {
	list, err := clientset.AppsV1().StatefulSets(namespace).List(context.Background(), metav1.ListOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	want := map[string]bool{}
	for _, guid := range guids {
		want[guid] = true
	}
	var out []string
	for _, sts := range list.Items {
		if want[sts.Annotations[k8s.AnnotationProcessGUID]] && sts.DeletionTimestamp == nil {
			out = append(out, sts.Name)
		}
	}
	return out
}

// onDiego are the LRPs of guids Diego desires, and their instances there.
func onDiego(g Gomega, diego bbsclient.InternalClient, guids []string) (desired []string, running, other int) {
	logger := lagertest.NewTestLogger("diego")
	infos, err := diego.DesiredLRPSchedulingInfos(logger, "", models.DesiredLRPFilter{ProcessGuids: guids})
	g.Expect(err).NotTo(HaveOccurred())
	for _, info := range infos {
		desired = append(desired, info.ProcessGuid)
	}
	actual, err := diego.ActualLRPsByProcessGuids(logger, "", guids)
	g.Expect(err).NotTo(HaveOccurred())
	for _, a := range actual {
		if a.State == models.ActualLRPStateRunning {
			running++
		} else {
			other++
		}
	}
	return desired, running, other
}

var _ = Describe("Live migration of a space between a real Diego BBS and Kubernetes", func() {
	var (
		iris   bbsclient.InternalClient
		diego  bbsclient.InternalClient
		logger *lagertest.TestLogger
		server *spacesIris
		space  string
		cell   *fakeCell
	)

	BeforeEach(func() {
		diegoURL := os.Getenv("IRIS_BBS_URL")
		if diegoURL == "" {
			Skip("no real Diego BBS in this cluster (IRIS_CLUSTER_BBS=false)")
		}
		logger = lagertest.NewTestLogger("migration")
		diego = realBBSEndpoint().client
		space = "space-mig-" + uuid.NewString()[:8]
		placementMap := "iris-space-backends-" + uuid.NewString()[:8]
		_, err := clientset.CoreV1().ConfigMaps(namespace).Create(context.Background(), &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: placementMap},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			for _, name := range []string{placementMap, spaces.MigrationsConfigMap(placementMap)} {
				err := clientset.CoreV1().ConfigMaps(namespace).Delete(context.Background(), name, metav1.DeleteOptions{})
				Expect(err == nil || apierrors.IsNotFound(err)).To(BeTrue())
			}
		})
		server = spacesIrisConfig(strings.TrimPrefix(diegoURL, "https://"), placementMap)
		server.start()
		iris = newBBSClientTo(server.bbsURL)
		cell = startFakeCell(diego)
	})

	// desireSpace desires n LRPs of one instance in the space, on Diego
	// (its placement), and waits until the cell runs them and gorouter
	// routes each.
	desireSpace := func(n int) ([]string, *gorouterView) {
		GinkgoHelper()
		var guids, hostnames []string
		lrps := make([]*models.DesiredLRP, n)
		for i := range lrps {
			lrps[i] = lrpInSpace(space, 1)
			hostname := fmt.Sprintf("mig-%d-%s.example.com", i, uuid.NewString()[:6])
			routes := bbsRoutes(hostname)
			lrps[i].Routes = &routes
			guids = append(guids, lrps[i].ProcessGuid)
			hostnames = append(hostnames, hostname)
			cell.serve(lrps[i], hostname)
		}
		view := watchGorouter(hostnames)
		for _, lrp := range lrps {
			Expect(iris.DesireLRP(logger, "", lrp)).To(Succeed())
		}
		DeferCleanup(func() {
			for _, guid := range guids {
				_ = iris.RemoveDesiredLRP(logger, "", guid)
			}
		})
		Eventually(func(g Gomega) {
			desired, running, _ := onDiego(g, diego, guids)
			g.Expect(desired).To(HaveLen(n))
			g.Expect(running).To(Equal(n))
			g.Expect(view.unrouted()).To(BeEmpty())
		}, 60*time.Second, 250*time.Millisecond).Should(Succeed())
		return guids, view
	}

	// settledOn waits until every LRP runs on side only: nothing left on
	// the other, no move left, every route registered.
	settledOn := func(side spaces.Side, guids []string, view *gorouterView, timeout time.Duration) {
		GinkgoHelper()
		Eventually(func(g Gomega) {
			desired, running, other := onDiego(g, diego, guids)
			sets := statefulSetsOf(g, guids)
			if side == spaces.Kubernetes {
				g.Expect(sets).To(HaveLen(len(guids)))
				g.Expect(desired).To(BeEmpty(), "left behind on Diego")
				g.Expect(running+other).To(BeZero(), "instances left behind on Diego")
			} else {
				g.Expect(desired).To(HaveLen(len(guids)))
				g.Expect(running).To(Equal(len(guids)))
				g.Expect(sets).To(BeEmpty(), "left behind on Kubernetes")
			}
			g.Expect(server.moves(g)).To(BeEmpty())
			g.Expect(view.unrouted()).To(BeEmpty())
			st := server.spaceState(g, space)
			g.Expect(st.State).To(Equal(string(side)))
		}, timeout, 500*time.Millisecond).Should(Succeed())
	}

	noLoss := func(sync *ccSync, view *gorouterView) {
		GinkgoHelper()
		lists, failures, wrong := sync.report()
		// The poller ran through the migration (every 200 ms; a rollback
		// caught early settles in about two seconds).
		Expect(lists).To(BeNumerically(">=", 3), "CC's sync polled")
		Expect(failures).To(BeEmpty())
		Expect(wrong).To(BeEmpty(), "every process listed exactly once in every sync")
		Expect(view.losses()).To(BeEmpty(), "every route kept an endpoint")
	}

	It("moves a space of 50 LRPs to Kubernetes and back, with every process listed once and every route routed throughout", func() {
		guids, view := desireSpace(50)
		sync := startCCSync(iris, guids, 200*time.Millisecond)

		By("moving the space to Kubernetes")
		start := time.Now()
		server.place(space, spaces.Kubernetes)
		Eventually(func(g Gomega) {
			g.Expect(server.spaceState(g, space).State).To(Equal("migrating"))
		}, 20*time.Second, 200*time.Millisecond).Should(Succeed())
		settledOn(spaces.Kubernetes, guids, view, 3*time.Minute)
		fmt.Fprintf(GinkgoWriter, "50 LRPs to Kubernetes in %s\n", time.Since(start))

		By("CC's updates after the move reach the Kubernetes copies")
		update := &models.DesiredLRPUpdate{}
		update.SetAnnotation("moved")
		Expect(iris.UpdateDesiredLRP(logger, "", guids[0], update)).To(Succeed())

		By("moving it back to Diego")
		start = time.Now()
		server.place(space, spaces.Diego)
		settledOn(spaces.Diego, guids, view, 3*time.Minute)
		fmt.Fprintf(GinkgoWriter, "50 LRPs back to Diego in %s\n", time.Since(start))
		got, err := diego.DesiredLRPByProcessGuid(logger, "", guids[0])
		Expect(err).NotTo(HaveOccurred())
		Expect(got.Annotation).To(Equal("moved"), "the full LRP went back, with CC's last update")
		noLoss(sync, view)
	})

	It("rolls a space back mid-migration: the copies go, the source keeps running", func() {
		guids, view := desireSpace(10)
		sync := startCCSync(iris, guids, 200*time.Millisecond)
		server.place(space, spaces.Kubernetes)
		Eventually(func(g Gomega) {
			g.Expect(server.moves(g)).NotTo(BeEmpty())
		}, 20*time.Second, 100*time.Millisecond).Should(Succeed())
		server.place(space, spaces.Diego)
		settledOn(spaces.Diego, guids, view, 2*time.Minute)
		Eventually(func(g Gomega) {
			for _, guid := range guids {
				g.Expect(bbsPodsWith(g, &models.DesiredLRP{ProcessGuid: guid})).To(BeEmpty())
			}
		}, 60*time.Second, 500*time.Millisecond).Should(Succeed())
		noLoss(sync, view)
	})

	It("carries a migration on after Iris is killed mid-way (the moves are kept in Kubernetes)", func() {
		guids, view := desireSpace(10)
		server.place(space, spaces.Kubernetes)
		Eventually(func(g Gomega) {
			g.Expect(server.moves(g)).NotTo(BeEmpty())
		}, 20*time.Second, 100*time.Millisecond).Should(Succeed())
		server.kill()
		moves := server.moves(Default)
		Expect(moves).NotTo(BeEmpty(), "killed mid-way")

		server.start()
		sync := startCCSync(iris, guids, 200*time.Millisecond)
		settledOn(spaces.Kubernetes, guids, view, 2*time.Minute)
		noLoss(sync, view)
	})
})
