package integration_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/iris-cf/iris/k8s"
)

// Iris's own image, from scripts/image, installed by the chart as a real pod
// on the real node: the kubelet pulls it, its probes make it Ready, and it
// serves CC's mTLS API on its pod IP.
var _ = Describe("Helm chart on the real node", Ordered, func() {
	var node, tag, nodeIP, helmPath, helmHome string

	BeforeAll(func() {
		node, tag = os.Getenv("IRIS_REAL_NODE"), os.Getenv("IRIS_REAL_NODE_PLACEMENT_TAG")
		if node == "" || tag == "" {
			Skip("the cluster has no real node (IRIS_REAL_NODE is not set), so Iris's image cannot run as a pod: " +
				"the chart-install spec \"runs the image's Iris with the installed chart's config\" runs it outside the " +
				"cluster instead (scripts/cluster starts a real node where the machine allows it; see IRIS_CLUSTER_REAL_NODE)")
		}
		helmPath = filepath.Join(os.Getenv("IRIS_CLUSTER_BIN"), "helm")
		_, err := os.Stat(helmPath)
		Expect(err).NotTo(HaveOccurred(), "helm is missing from $IRIS_CLUSTER_BIN: run `scripts/cluster build`")
		helmHome = GinkgoT().TempDir()
		n, err := clientset.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				nodeIP = a.Address
			}
		}
		Expect(nodeIP).NotTo(BeEmpty())
	})

	It("runs the image as a pod on the real node, Ready through its probes, serving CC's desire over mTLS", func() {
		ctx := context.Background()
		releaseNS := createNamespace("iris-chart-pod-")
		appsNS := releaseNS + "-apps"
		DeferCleanup(func() {
			_, err := runHelm(helmPath, helmHome, "uninstall", "iris", "--namespace", releaseNS, "--wait")
			Expect(err).NotTo(HaveOccurred())
			for _, ns := range []string{appsNS, releaseNS} {
				err := clientset.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
				if err != nil && !apierrors.IsNotFound(err) {
					Expect(err).NotTo(HaveOccurred())
				}
			}
		})

		By("packaging the suite's static binary with scripts/image and pushing it to the suite's registry")
		pushIrisImage("real-node")

		By("the chart's TLS Secrets: the suite's server certificate and CC's client CA")
		_, err := clientset.CoreV1().Secrets(releaseNS).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "iris-server-tls"},
			Type:       corev1.SecretTypeTLS,
			Data: map[string][]byte{
				corev1.TLSCertKey:       []byte(readFile(filepath.Join(serverCertDir, "server.crt"))),
				corev1.TLSPrivateKeyKey: []byte(readFile(filepath.Join(serverCertDir, "server.key"))),
			},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, err = clientset.CoreV1().Secrets(releaseNS).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "iris-cc-client-ca"},
			Data:       map[string][]byte{"ca.crt": clientCA.PEM},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())

		// No kube-proxy here, so the kubernetes Service's ClusterIP leads
		// nowhere: the pod reaches the API server through a forwarder on the
		// node IP (the host's end of the node's veth; traffic stays between
		// the host and the node's namespace), by a name the API server's
		// certificate carries, which hostAliases resolves to that address.
		forwarder := forwardTCP(net.JoinHostPort(nodeIP, "0"), apiServerAddress())
		_, forwardPort, err := net.SplitHostPort(forwarder)
		Expect(err).NotTo(HaveOccurred())

		_, err = runHelm(helmPath, helmHome, "install", "iris", chartDir, "--namespace", releaseNS,
			"--set", "createNamespaces=true", "--set", "replicas=1",
			"--set", "image.repository="+oci.Host()+"/cf/iris", "--set", "image.tag=real-node",
			"--set-json", `components=["api"]`,
			"--set", "secrets.ccClient=",
			"--set", "lrp.apparmorProfile="+appArmorProfile(),
			"--set-json", fmt.Sprintf(`workloadsNamespaces=[%q]`, appsNS),
			"--set-json", fmt.Sprintf(`nodeSelector={%q:%q}`, "cloudfoundry.org/isolation-segment", tag),
			"--set-json", fmt.Sprintf(`tolerations=[{"key":%q,"operator":"Equal","value":%q,"effect":"NoSchedule"}]`, "cloudfoundry.org/isolation-segment", tag),
			"--set-json", fmt.Sprintf(`hostAliases=[{"ip":%q,"hostnames":["kubernetes.default.svc"]}]`, nodeIP),
			"--set-json", fmt.Sprintf(`extraEnv=[{"name":"KUBERNETES_SERVICE_HOST","value":"kubernetes.default.svc"},{"name":"KUBERNETES_SERVICE_PORT","value":%q}]`, forwardPort))
		Expect(err).NotTo(HaveOccurred())

		By("the kubelet pulls and runs it on the real node, and its readiness probe (/readyz) makes it Ready")
		var pod corev1.Pod
		Eventually(func(g Gomega) {
			pods, err := clientset.CoreV1().Pods(releaseNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=iris"})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(pods.Items).To(HaveLen(1))
			pod = pods.Items[0]
			g.Expect(pod.Spec.NodeName).To(Equal(node))
			g.Expect(pod.Status.ContainerStatuses).To(HaveLen(1))
			g.Expect(pod.Status.ContainerStatuses[0].State.Waiting).To(BeNil(), "%+v", pod.Status.ContainerStatuses[0].State.Waiting)
			g.Expect(isReady(pod)).To(BeTrue())
		}, 3*time.Minute, 500*time.Millisecond).Should(Succeed())
		Expect(pod.Status.ContainerStatuses[0].RestartCount).To(BeZero())
		Expect(pod.Status.ContainerStatuses[0].ImageID).To(ContainSubstring("/cf/iris@sha256:"))

		By("CC's desire, over mTLS to the pod's IP, becomes a StatefulSet, which the pod's Iris then serves")
		client := podMTLSClient()
		base := "https://" + net.JoinHostPort(pod.Status.PodIP, "8086")
		lrp := newLRP(1)
		status, body := requestWithClient(client, "PUT", base+"/apps/"+lrp.ProcessGUID, lrp)
		Expect(status).To(Equal(http.StatusAccepted), string(body))
		Expect(statefulSets(appsNS, lrp)).To(HaveLen(1))
		Expect(statefulSets(appsNS, lrp)[0].Annotations).To(HaveKeyWithValue(k8s.AnnotationProcessGUID, lrp.ProcessGUID))
		Eventually(func(g Gomega) {
			status, body := requestWithClient(client, "GET", base+"/apps/"+lrp.GUID+"/"+lrp.Version, nil)
			g.Expect(status).To(Equal(http.StatusOK), string(body))
			g.Expect(string(body)).To(ContainSubstring(lrp.ProcessGUID))
		}, 30*time.Second, 250*time.Millisecond).Should(Succeed())
		status, body = requestWithClient(client, "PUT", base+"/apps/"+lrp.GUID+"/"+lrp.Version+"/stop", nil)
		Expect(status).To(Equal(http.StatusOK), string(body))
		Eventually(func(g Gomega) { g.Expect(statefulSetsWith(g, appsNS, lrp)).To(BeEmpty()) }, 30*time.Second).Should(Succeed())

		By("without a client certificate the pod's API refuses the request")
		noCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: serverCA.Pool(), ServerName: "iris.local", MinVersion: tls.VersionTLS12,
		}}}
		status, _ = requestWithClient(noCert, "GET", base+"/apps", nil)
		Expect(status).To(Equal(http.StatusUnauthorized))
	})
})

// pushIrisImage packages the suite's static binary as Iris's image with
// scripts/image, pushes it to the suite's registry as cf/iris:tag, and
// returns the pushed image by digest, so that a node that pulled an older
// image of the same tag runs this one.
func pushIrisImage(tag string) string {
	GinkgoHelper()
	ref := oci.Host() + "/cf/iris:" + tag
	build := exec.Command("go", "run", "./scripts/image", "-binary", irisPath, "-platforms", "linux/"+runtime.GOARCH, "-push", ref, "-insecure")
	build.Dir = ".."
	out, err := build.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
	parsed, err := name.ParseReference(ref, name.Insecure)
	Expect(err).NotTo(HaveOccurred())
	desc, err := remote.Head(parsed)
	Expect(err).NotTo(HaveOccurred())
	return parsed.Context().Digest(desc.Digest.String()).String()
}

// podMTLSClient is CC's client for Iris in a pod: the suite's client
// certificate, Iris's server CA, and the name in Iris's certificate (the
// pod is dialled by IP).
func podMTLSClient() *http.Client {
	GinkgoHelper()
	cert, err := clientLeaf.TLSCertificate()
	Expect(err).NotTo(HaveOccurred())
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: serverCA.Pool(), Certificates: []tls.Certificate{cert}, ServerName: "iris.local", MinVersion: tls.VersionTLS12,
	}}}
}

// requestWithClient sends body as JSON (nil: none) and returns the status
// and body; a transport error is status 0 with the error as body.
func requestWithClient(client *http.Client, method, url string, body any) (int, []byte) {
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		Expect(err).NotTo(HaveOccurred())
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, reader)
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	return resp.StatusCode, data
}

// apiServerAddress is host:port of the API server in the suite's kubeconfig.
func apiServerAddress() string {
	GinkgoHelper()
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	Expect(err).NotTo(HaveOccurred())
	u, err := url.Parse(cfg.Host)
	Expect(err).NotTo(HaveOccurred())
	return u.Host
}

// forwardTCP listens on listen and copies every connection to and from
// target until the spec ends; it returns the address it listens on.
func forwardTCP(listen, target string) string {
	GinkgoHelper()
	l, err := net.Listen("tcp", listen)
	Expect(err).NotTo(HaveOccurred())
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	track := func(c net.Conn, add bool) {
		mu.Lock()
		defer mu.Unlock()
		if add {
			open[c] = true
		} else {
			delete(open, c)
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := l.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer in.Close()
				out, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer out.Close()
				track(in, true)
				track(out, true)
				defer track(in, false)
				defer track(out, false)
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(out, in); done <- struct{}{} }()
				go func() { _, _ = io.Copy(in, out); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	DeferCleanup(func() {
		l.Close()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String()
}
