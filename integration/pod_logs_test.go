package integration_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"code.cloudfoundry.org/go-loggregator/v9/rpc/loggregator_v2"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
)

// The pods/log source, for clusters without the agent: a second Iris runs
// only the pod-logs component. KWOK serves `kubectl logs` from a CRI file
// that a kwok.x-k8s.io Logs object names.
var _ = Describe("App logs through the pods/log API", func() {
	It("follows an instance's log through the API server and ships each line once", func() {
		lrp := runningLRP(1)
		pod := pods(namespace, lrp)[0]
		dir := GinkgoT().TempDir()
		app := &criLog{path: filepath.Join(dir, "app.log")}
		app.out("before iris started") // older than the leader's start: not replayed

		restConfig, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
		Expect(err).NotTo(HaveOccurred())
		dyn, err := dynamic.NewForConfig(restConfig)
		Expect(err).NotTo(HaveOccurred())
		logsObject := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "kwok.x-k8s.io/v1alpha1",
			"kind":       "Logs",
			"metadata":   map[string]any{"name": pod.Name, "namespace": namespace},
			"spec": map[string]any{"logs": []any{map[string]any{
				"containers": []any{"app"}, "logsFile": app.path, "follow": true,
			}}},
		}}
		_, err = dyn.Resource(schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "logs"}).
			Namespace(namespace).Create(context.Background(), logsObject, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())

		configFile := filepath.Join(dir, "pod-logs.yml")
		Expect(os.WriteFile(configFile, []byte(ingress.baseConfig()+`
components: [pod-logs]
leader_election:
  name: iris-pod-logs-test
  lease_duration_seconds: 6
  renew_deadline_seconds: 4
  retry_period_seconds: 1
`), 0o600)).To(Succeed())
		session, err := gexec.Start(exec.Command(irisPath, "--config", configFile), GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { stopLogAgent(session) })
		Eventually(session.Out, 15*time.Second).Should(gbytes.Say(`"iris.leader.leading"`))
		// The container started before the leader, so it is read from the
		// moment the streamer started: once a marker written now arrives,
		// every later line is newer than that.
		const marker = "marker"
		Eventually(func(g Gomega) {
			app.out(marker)
			g.Expect(ingress.payloads(lrp.AppGUID, "APP/PROC/WEB")).To(ContainElement(marker))
		}, 20*time.Second, 500*time.Millisecond).Should(Succeed())

		app.out("first via the API")
		app.write("stderr", "F", "second via the API")
		lines := func() []string {
			var out []string
			for _, line := range ingress.payloads(lrp.AppGUID, "APP/PROC/WEB") {
				if line != marker {
					out = append(out, line)
				}
			}
			return out
		}
		Eventually(lines, 20*time.Second).Should(Equal([]string{"first via the API", "second via the API"}))
		app.out("third, followed")
		Eventually(lines, 10*time.Second).Should(HaveLen(3))
		Consistently(lines, 2*time.Second).Should(Equal([]string{"first via the API", "second via the API", "third, followed"}))
		var second *loggregator_v2.Envelope
		for _, e := range ingress.logs(lrp.AppGUID, "APP/PROC/WEB") {
			if string(e.GetLog().GetPayload()) == "second via the API" {
				second = e
			}
		}
		Expect(second).NotTo(BeNil())
		Expect(second.GetLog().Type).To(Equal(loggregator_v2.Log_OUT), "the pods/log API does not tell stdout from stderr")
		Expect(second.InstanceId).To(Equal("0"))
	})
})
