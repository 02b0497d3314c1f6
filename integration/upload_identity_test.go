package integration_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/google/uuid"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/iris-cf/iris/bifrost/bbs/bbstest"
	"github.com/iris-cf/iris/k8s"
)

// Uploads with a client identity the tenant cannot read: an Iris with
// staging.upload_identity_secret_name gives a staging pod an upload
// sidecar that alone mounts the identity Secret. KWOK runs no containers,
// so the spec plays the kubelet for both: it lays out the pod's volumes
// on the host (emptyDirs as directories, Secrets as their files, read from
// the API), runs the sidecar's command with the iris binary under test,
// waits for its socket (the sidecar's startup probe), then runs the stack
// container's command as runRecipePod does. The test cc-uploader refuses
// any connection without a client certificate of its client CA.
var _ = Describe("Uploads from recipe pods through the upload sidecar", Serial, Label("bbs-tasks", "upload-identity"), func() {
	const identitySecret = "iris-upload-identity"

	It("stages a staging TaskDefinition as CC builds it with uploads to a cc-uploader that requires mTLS: droplet arrives, CC gets the result", func() {
		requireMountNamespaces()
		logger := lagertest.NewTestLogger("upload-identity")
		cc.SetStatus(http.StatusOK)

		uploader := startMTLSUploader()
		Expect(clientset.CoreV1().Secrets(namespace).Create(context.Background(), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: identitySecret},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{"tls.crt": uploader.clientCert, "tls.key": uploader.clientKey, "ca.crt": uploader.serverCA},
		}, metav1.CreateOptions{})).Error().NotTo(HaveOccurred())
		DeferCleanup(func() {
			_ = clientset.CoreV1().Secrets(namespace).Delete(context.Background(), identitySecret, metav1.DeleteOptions{})
		})
		restartIrisWith("staging:\n", "staging:\n  upload_identity_secret_name: "+identitySecret+"\n")

		assets := startAssetServer()
		bits := zipBytes(map[string]string{"start": "#!/bin/sh\necho app\n"})
		assets.put("/package.zip", bits)
		assets.put("/buildpack.zip", zipBytes(map[string]string{"bin/detect": "#!/bin/sh\necho test-buildpack\n"}))
		assets.put("/lifecycle.tgz", tgz(map[string]string{"builder": `#!/bin/sh
set -e
for arg in "$@"; do case "$arg" in
  -buildDir=*) build="${arg#-buildDir=}" ;;
  -outputDroplet=*) droplet="${arg#-outputDroplet=}" ;;
  -outputMetadata=*) metadata="${arg#-outputMetadata=}" ;;
  -outputBuildArtifactsCache=*) cache="${arg#-outputBuildArtifactsCache=}" ;;
esac; done
tar -czf "$droplet" -C "$build" .
echo cache > "$cache"
printf '{"lifecycle_type":"buildpack","lifecycle_metadata":{"detected_buildpack":"test"},"process_types":{"web":"./start"},"execution_metadata":""}' > "$metadata"
`}))
		guid := uuid.NewString()
		def := bbstest.BuildpackStaging(bbstest.Staging{
			Task: bbstest.Task{Space: bbstest.Space{AppName: "dora", SpaceGUID: "space-guid", SpaceName: "dev", OrgGUID: "org-guid", OrgName: "acme"},
				AppGUID: uuid.NewString(), CallbackURL: cc.URL() + "/internal/v3/staging/" + guid + "/build_completed?start=true",
				LifecycleURL: assets.URL + "/lifecycle.tgz"},
			Stack:      "cflinuxfs4-test",
			PackageURL: assets.URL + "/package.zip", PackageSHA256: sha256Of(bits),
			BuildpackURL: assets.URL + "/buildpack.zip", BuildpackKey: "test-buildpack-key",
			// As CC builds them: cc-uploader's URLs, CC's own in the query.
			DropletUploadURL: uploader.URL + "/v1/droplet/" + guid + "?cc-droplet-upload-uri=http%3A%2F%2Fcc.internal%2Finternal%2Fv4%2Fdroplets%2F" + guid + "%2Fupload&timeout=900",
			CacheUploadURL:   uploader.URL + "/v1/build_artifacts/" + guid + "?cc-build-artifacts-upload-uri=http%3A%2F%2Fcc.internal%2Fcache&timeout=900",
		})
		Expect(newBBSClient().DesireTask(logger, "staging", guid, "cf-app-staging", def)).To(Succeed())

		Expect(runRecipePodWithUploader(guid, identitySecret)).To(Equal(0))

		droplets := uploader.received("/v1/droplet/" + guid)
		Expect(droplets).To(HaveLen(1))
		Expect(droplets[0][:2]).To(Equal([]byte{0x1f, 0x8b}), "the builder's droplet (a tgz)")
		Expect(uploader.received("/v1/build_artifacts/" + guid)).To(HaveLen(1))
		Expect(uploader.clientNames()).To(ConsistOf("cc-uploader-client"), "every upload presented the identity")

		var body map[string]any
		Eventually(func(g Gomega) {
			requests := ccRequestsTo("/internal/v3/staging/" + guid + "/build_completed")
			g.Expect(requests).To(HaveLen(1))
			g.Expect(json.Unmarshal(requests[0].Body, &body)).To(Succeed())
		}, 30*time.Second).Should(Succeed())
		Expect(body).To(HaveKeyWithValue("failed", false))
		var result map[string]any
		Expect(json.Unmarshal([]byte(body["result"].(string)), &result)).To(Succeed())
		Expect(result).To(HaveKeyWithValue("process_types", map[string]any{"web": "./start"}))
	})
})

// restartIrisWith restarts the suite's Iris with old replaced by new in
// its config until the spec ends.
func restartIrisWith(old, new string) {
	GinkgoHelper()
	stopIris()
	Expect(readFile(irisConfigFile)).To(ContainSubstring(old))
	Expect(os.WriteFile(irisConfigFile, []byte(strings.Replace(readFile(irisConfigFile), old, new, 1)), 0o600)).To(Succeed())
	DeferCleanup(func() {
		// startIris may have moved the listeners: undo the change only.
		Expect(os.WriteFile(irisConfigFile, []byte(strings.Replace(readFile(irisConfigFile), new, old, 1)), 0o600)).To(Succeed())
		if irisSession.ExitCode() == -1 {
			terminateIris()
		}
		startIris()
	})
	startIris()
}

// mtlsUploader stands in for cc-uploader: it takes POSTs only from
// clients with a certificate of its client CA.
type mtlsUploader struct {
	*httptest.Server
	// serverCA verifies it; clientCert and clientKey are an identity it accepts.
	serverCA, clientCert, clientKey []byte
	mu                              sync.Mutex
	uploaded                        map[string][][]byte
	clients                         map[string]bool
}

func startMTLSUploader() *mtlsUploader {
	GinkgoHelper()
	return startMTLSUploaderOn("127.0.0.1:0")
}

// startMTLSUploaderOn is startMTLSUploader listening on listen (ip:port),
// e.g. the real node's IP, which its server certificate names.
func startMTLSUploaderOn(listen string) *mtlsUploader {
	GinkgoHelper()
	listener, err := net.Listen("tcp", listen)
	Expect(err).NotTo(HaveOccurred())
	host, _, err := net.SplitHostPort(listen)
	Expect(err).NotTo(HaveOccurred())
	ip := net.ParseIP(host)
	Expect(ip).NotTo(BeNil(), "an IP to listen on: "+listen)
	serverCA, clientCA := newCA("cc-uploader-server-ca"), newCA("cc-uploader-client-ca")
	serverLeaf, err := serverCA.Issue("cc-uploader.service.cf.internal", ip)
	Expect(err).NotTo(HaveOccurred())
	serverCert, err := serverLeaf.TLSCertificate()
	Expect(err).NotTo(HaveOccurred())
	clientLeaf, err := clientCA.Issue("cc-uploader-client")
	Expect(err).NotTo(HaveOccurred())
	u := &mtlsUploader{serverCA: serverCA.PEM, clientCert: clientLeaf.CertPEM, clientKey: clientLeaf.KeyPEM,
		uploaded: map[string][][]byte{}, clients: map[string]bool{}}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil || r.Method != http.MethodPost {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		u.mu.Lock()
		defer u.mu.Unlock()
		u.uploaded[r.URL.Path] = append(u.uploaded[r.URL.Path], body)
		u.clients[r.TLS.PeerCertificates[0].Subject.CommonName] = true
		w.WriteHeader(http.StatusCreated)
	}))
	u.Listener.Close()
	u.Listener = listener
	u.TLS = &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCA.Pool(),
		MinVersion:   tls.VersionTLS12,
	}
	u.StartTLS()
	DeferCleanup(u.Close)
	return u
}

func (u *mtlsUploader) received(path string) [][]byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.uploaded[path]
}

func (u *mtlsUploader) clientNames() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var names []string
	for name := range u.clients {
		names = append(names, name)
	}
	return names
}

// runRecipePodWithUploader plays the kubelet for a BBS task's pod with the
// upload sidecar: the pod's volumes become host directories, the sidecar
// runs its command (Iris's image: the iris binary under test), and once its
// socket is there the task container runs its command (the runner) in a
// mount namespace with a private /tmp; the outcome goes into the pod's
// status. The sidecar is then stopped as Kubernetes stops it (SIGTERM)
// and must exit 0. It returns the runner's exit code.
func runRecipePodWithUploader(guid, identitySecret string) int {
	GinkgoHelper()
	var pod corev1.Pod
	Eventually(func(g Gomega) {
		pods := recipePods(g, guid)
		g.Expect(pods).To(HaveLen(1))
		g.Expect(pods[0].Status.Phase).To(Equal(corev1.PodRunning))
		pod = pods[0]
	}, 30*time.Second).Should(Succeed())

	Expect(pod.Spec.InitContainers).To(HaveLen(2))
	Expect(pod.Spec.InitContainers[0].Name).To(Equal(k8s.RunnerInitContainerName))
	sidecar := pod.Spec.InitContainers[1]
	Expect(sidecar.Name).To(Equal(k8s.UploadProxyContainerName))
	Expect(sidecar.Image).To(Equal(testRunnerImage))
	Expect(sidecar.RestartPolicy).To(HaveValue(Equal(corev1.ContainerRestartPolicyAlways)))
	container := pod.Spec.Containers[0]
	Expect(container.Name).To(Equal(k8s.TaskContainerName))

	// The pod's volumes on the host, outside /tmp (the runner's namespace
	// mounts a fresh /tmp).
	dir, err := os.MkdirTemp("/var/tmp", "iris-upload-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	volumes := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		path := filepath.Join(dir, v.Name)
		Expect(os.Mkdir(path, 0o755)).To(Succeed())
		volumes[v.Name] = path
		if v.Secret == nil {
			continue
		}
		if v.Name == k8s.UploadIdentityVolumeName {
			Expect(v.Secret.SecretName).To(Equal(identitySecret))
		}
		secret, err := clientset.CoreV1().Secrets(namespace).Get(context.Background(), v.Secret.SecretName, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		for key, value := range secret.Data {
			Expect(os.WriteFile(filepath.Join(path, key), value, 0o600)).To(Succeed())
		}
	}
	for _, m := range container.VolumeMounts {
		Expect(m.Name).NotTo(Equal(k8s.UploadIdentityVolumeName), "the stack's container, where buildpacks run, must not see the identity")
	}
	binary := filepath.Join(volumes[k8s.RunnerVolumeName], "iris")
	Expect(os.WriteFile(binary, []byte(readFile(irisPath)), 0o755)).To(Succeed())
	report := filepath.Join(dir, "termination-log")
	// hostArgs is a container's command as it runs on the host: the iris
	// binary, and paths under the container's mounts in their host
	// directories.
	hostArgs := func(c corev1.Container) []string {
		args := make([]string, len(c.Command))
		for i, arg := range c.Command {
			switch arg {
			case "/usr/local/bin/iris", k8s.RunnerBinary:
				arg = binary
			case k8s.RunnerReportFile:
				arg = report
			}
			for _, m := range c.VolumeMounts {
				if rest, ok := strings.CutPrefix(arg, m.MountPath+"/"); ok {
					arg = filepath.Join(volumes[m.Name], rest)
				}
			}
			args[i] = arg
		}
		return args
	}

	sidecarArgs := hostArgs(sidecar)
	proxy, err := gexec.Start(exec.Command(sidecarArgs[0], sidecarArgs[1:]...), GinkgoWriter, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { proxy.Kill().Wait() })
	// The startup probe: the recipe's container starts once the socket is there.
	socket := filepath.Join(volumes[k8s.UploadProxyVolumeName], filepath.Base(k8s.UploadProxySocket))
	Eventually(func(g Gomega) {
		g.Expect(proxy.ExitCode()).To(Equal(-1), "the sidecar exited")
		g.Expect(socket).To(BeAnExistingFile())
	}, 30*time.Second).Should(Succeed())

	args := hostArgs(container)
	Expect(args).To(ContainElements("--upload-proxy", socket))
	// The stack's passwd has vcap, CC's run-action user: here it is the
	// runner's own user, as in the pod (vcap is the pod's uid).
	passwd := filepath.Join(dir, "passwd")
	Expect(os.WriteFile(passwd, []byte(vcapIsRunnerPasswd), 0o644)).To(Succeed())
	cmd := exec.Command("unshare", append([]string{"-m", "--propagation", "private", "sh", "-c", `mount -t tmpfs tmpfs /tmp && mount --bind "$0" /etc/passwd && exec "$@"`, passwd}, args...)...)
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "CF_INSTANCE_GUID=" + string(pod.UID), "CF_INSTANCE_INTERNAL_IP=" + pod.Status.PodIP}
	session, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	Eventually(session, 2*time.Minute).Should(gexec.Exit())

	// Kubernetes stops the sidecar after the main container: it drains and exits 0.
	proxy.Signal(syscall.SIGTERM)
	Eventually(proxy, 30*time.Second).Should(gexec.Exit(0))

	message, err := os.ReadFile(report)
	Expect(err).NotTo(HaveOccurred())
	if len(message) > 4096 {
		message = message[:4096]
	}
	terminateRecipePod(pod.Name, guid, container.Image, session.ExitCode(), message)
	return session.ExitCode()
}
