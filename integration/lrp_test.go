package integration_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

var _ = Describe("LRPs on a real cluster", func() {
	Describe("desire", func() {
		It("runs N instances with CF's env, probes, resources, security context and labels", func() {
			lrp := newLRP(3)
			desire(lrp)

			Eventually(runningPods(namespace, lrp), 30*time.Second).Should(Equal(3))
			Eventually(states(lrp), 30*time.Second).Should(Equal([]string{"RUNNING", "RUNNING", "RUNNING"}))

			indices := map[string]bool{}
			for _, pod := range pods(namespace, lrp) {
				Expect(pod.Status.PodIP).NotTo(BeEmpty())
				Expect(pod.Spec.NodeName).NotTo(BeEmpty())
				Expect(pod.Labels).To(HaveKeyWithValue(k8s.LabelSourceType, "APP"))
				Expect(pod.Labels).To(HaveKeyWithValue(k8s.LabelAppGUID, lrp.AppGUID))
				Expect(pod.Labels).To(HaveKeyWithValue(k8s.LabelProcessType, "web"))
				Expect(pod.Labels).To(HaveKeyWithValue(k8s.LabelSpaceGUID, "space-guid"))
				Expect(pod.Annotations).To(HaveKeyWithValue(k8s.AnnotationProcessGUID, lrp.ProcessGUID))
				// CF_INSTANCE_INDEX reads this label; the StatefulSet controller sets it.
				indices[pod.Labels[k8s.PodIndexLabel]] = true

				spec := pod.Spec
				Expect(*spec.AutomountServiceAccountToken).To(BeFalse())
				Expect(*spec.SecurityContext.RunAsNonRoot).To(BeTrue())
				Expect(spec.SecurityContext.SeccompProfile.Type).To(Equal(corev1.SeccompProfileTypeRuntimeDefault))
				app := spec.Containers[0]
				Expect(app.Image).To(Equal("cloudfoundry/dora:latest"))
				Expect(*app.SecurityContext.AllowPrivilegeEscalation).To(BeFalse())
				Expect(app.SecurityContext.Capabilities.Drop).To(ConsistOf(corev1.Capability("ALL")))
				Expect(app.Resources.Limits.Memory().Value()).To(Equal(int64(128 << 20)))
				Expect(app.Resources.Requests.Memory().Value()).To(Equal(int64(128 << 20)))
				Expect(app.Resources.Limits.StorageEphemeral().Value()).To(Equal(int64(256 << 20)))
				Expect(app.Resources.Requests.Cpu().MilliValue()).To(Equal(int64(20)))
				Expect(app.StartupProbe.TCPSocket.Port).To(Equal(intstr.FromInt32(8080)))
				Expect(app.LivenessProbe.TCPSocket.Port).To(Equal(intstr.FromInt32(8080)))
				Expect(app.StartupProbe.PeriodSeconds * app.StartupProbe.FailureThreshold).To(Equal(int32(60)))

				env := map[string]corev1.EnvVar{}
				for _, e := range app.Env {
					env[e.Name] = e
				}
				Expect(env["VCAP_APPLICATION"].Value).To(Equal(`{"application_name":"dora"}`))
				Expect(env["CF_INSTANCE_INDEX"].ValueFrom.FieldRef.FieldPath).To(Equal("metadata.labels['apps.kubernetes.io/pod-index']"))
				Expect(env["CF_INSTANCE_INTERNAL_IP"].ValueFrom.FieldRef.FieldPath).To(Equal("status.podIP"))
				Expect(env["CF_INSTANCE_PORT"].Value).To(Equal("8080"))
				Expect(env["CF_INSTANCE_ADDR"].Value).To(Equal("$(CF_INSTANCE_INTERNAL_IP):8080"))
				Expect(env).To(HaveKey("CF_INSTANCE_GUID"))
				Expect(env).To(HaveKey("CF_INSTANCE_IP"))
				Expect(env).To(HaveKey("CF_INSTANCE_PORTS"))
			}
			Expect(indices).To(Equal(map[string]bool{"0": true, "1": true, "2": true}))

			sts := theStatefulSet(lrp)
			Expect(len(sts.Name)).To(BeNumerically("<=", 63))
			pdb, err := clientset.PolicyV1().PodDisruptionBudgets(namespace).Get(context.Background(), sts.Name, metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())
			Expect(pdb.Spec.MinAvailable.IntValue()).To(Equal(1))
			Expect(pdb.OwnerReferences[0].UID).To(Equal(sts.UID))
		})

		It("creates one StatefulSet however often the same LRP is desired, even concurrently", func() {
			lrp := newLRP(1)
			var wg sync.WaitGroup
			for i := 0; i < 5; i++ {
				wg.Add(1)
				go func() {
					defer GinkgoRecover()
					defer wg.Done()
					desire(lrp)
				}()
			}
			wg.Wait()
			desire(lrp)
			Expect(statefulSets(namespace, lrp)).To(HaveLen(1))
			Eventually(runningPods(namespace, lrp), 30*time.Second).Should(Equal(1))
			Consistently(func(g Gomega) int { return len(podsWith(g, namespace, lrp)) }, 2*time.Second).Should(Equal(1))
		})

		It("pulls private images with a registry secret owned by the StatefulSet", func() {
			lrp := newLRP(1)
			lrp.Lifecycle.DockerLifecycle.Image = "registry.example.com:5000/team/private:1"
			lrp.Lifecycle.DockerLifecycle.RegistryUsername = "bob"
			lrp.Lifecycle.DockerLifecycle.RegistryPassword = "hunter2"
			desire(lrp)

			sts := theStatefulSet(lrp)
			Expect(sts.Spec.Template.Spec.ImagePullSecrets).To(HaveLen(1))
			secret, err := clientset.CoreV1().Secrets(namespace).Get(context.Background(), sts.Spec.Template.Spec.ImagePullSecrets[0].Name, metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())
			Expect(secret.Type).To(Equal(corev1.SecretTypeDockerConfigJson))
			Expect(string(secret.Data[corev1.DockerConfigJsonKey])).To(ContainSubstring(`"registry.example.com:5000"`))
			Expect(secret.OwnerReferences).To(HaveLen(1))
			Expect(secret.OwnerReferences[0].UID).To(Equal(sts.UID))

			status, _ := request("PUT", "/apps/"+lrp.GUID+"/"+lrp.Version+"/stop", nil)
			Expect(status).To(Equal(http.StatusOK))
			Eventually(func(g Gomega) []corev1.Secret { return secretsWith(g, namespace, lrp) }, 30*time.Second).Should(BeEmpty())
		})

		It("limits egress to the space's security groups with a NetworkPolicy owned by the StatefulSet", func() {
			lrp := newLRP(2)
			// As CC's OPI client serialises the running security groups.
			Expect(json.Unmarshal([]byte(`[
				{"protocol":"tcp","destinations":["10.0.0.0/8"],"ports":[5432,3306]},
				{"protocol":"udp","destinations":["10.10.0.1-10.10.0.3"],"portRange":{"start":8000,"end":9000}},
				{"protocol":"all","destinations":["2001:db8::/64"],"log":true},
				{"protocol":"icmp","destinations":["0.0.0.0/0"],"icmpInfo":{"type":0,"code":0}}
			]`), &lrp.EgressRules)).To(Succeed())
			desire(lrp)

			sts := theStatefulSet(lrp)
			policies := networkPolicies(namespace, lrp)
			Expect(policies).To(HaveLen(1))
			policy := policies[0]
			Expect(policy.Name).To(Equal(sts.Name))
			Expect(policy.OwnerReferences).To(HaveLen(1))
			Expect(policy.OwnerReferences[0].UID).To(Equal(sts.UID))
			Expect(policy.Spec.PolicyTypes).To(ConsistOf(networkingv1.PolicyTypeEgress))
			Expect(policy.Annotations[k8s.AnnotationUnenforcedEgressRules]).To(ContainSubstring(`"icmp"`))

			// The policy selects exactly the LRP's running instances.
			Eventually(runningPods(namespace, lrp), 30*time.Second).Should(Equal(2))
			selector, err := metav1.LabelSelectorAsSelector(&policy.Spec.PodSelector)
			Expect(err).NotTo(HaveOccurred())
			selected, err := clientset.CoreV1().Pods(namespace).List(context.Background(), metav1.ListOptions{LabelSelector: selector.String()})
			Expect(err).NotTo(HaveOccurred())
			Expect(selected.Items).To(HaveLen(2))

			// DNS, then the three rules a NetworkPolicy can express, as the
			// API server stored them.
			Expect(policy.Spec.Egress).To(HaveLen(4))
			Expect(policy.Spec.Egress[1].To[0].IPBlock.CIDR).To(Equal("10.0.0.0/8"))
			Expect(policy.Spec.Egress[1].Ports).To(HaveLen(2))
			Expect(policy.Spec.Egress[2].To).To(HaveLen(2), "10.10.0.1/32 and 10.10.0.2/31")
			Expect(policy.Spec.Egress[2].Ports[0].EndPort).To(HaveValue(BeEquivalentTo(9000)))
			Expect(policy.Spec.Egress[3].To[0].IPBlock.CIDR).To(Equal("2001:db8::/64"))
			Expect(policy.Spec.Egress[3].Ports).To(BeEmpty())

			status, _ := request("PUT", "/apps/"+lrp.GUID+"/"+lrp.Version+"/stop", nil)
			Expect(status).To(Equal(http.StatusOK))
			Eventually(func(g Gomega) []networkingv1.NetworkPolicy { return networkPoliciesWith(g, namespace, lrp) }, 30*time.Second).Should(BeEmpty())
		})

		It("honours the namespace CC names, if Iris watches it", func() {
			lrp := newLRP(1)
			lrp.Namespace = otherNamespace
			desire(lrp)
			Expect(statefulSets(otherNamespace, lrp)).To(HaveLen(1))
			Eventually(states(lrp), 30*time.Second).Should(Equal([]string{"RUNNING"}))
		})

		It("runs a buildpack droplet from the configured registry through the launcher", func() {
			lrp := newLRP(1)
			lrp.Lifecycle = models.Lifecycle{BuildpackLifecycle: &models.BuildpackLifecycle{DropletGUID: "droplet", DropletHash: "sha1", StartCommand: "./run"}}
			desire(lrp)
			app := theStatefulSet(lrp).Spec.Template.Spec.Containers[0]
			Expect(app.Image).To(Equal("127.0.0.1:5000/cloudfoundry/droplet:sha1"))
			Expect(app.Command).To(Equal([]string{"/lifecycle/launcher", "app", "./run", ""}))
			Expect(theStatefulSet(lrp).Spec.Template.Spec.ImagePullSecrets).To(ConsistOf(corev1.LocalObjectReference{Name: "droplet-registry"}))
			Eventually(runningPods(namespace, lrp), 30*time.Second).Should(Equal(1))
		})
	})

	Describe("bad input", func() {
		// Each case must be answered 400 with a message and leave nothing behind.
		DescribeTable("is rejected with 400 and creates nothing",
			func(mutate func(*models.DesireLRPRequest) any, message string) {
				lrp := newLRP(1)
				lrp.Lifecycle.DockerLifecycle.RegistryUsername = "bob"
				lrp.Lifecycle.DockerLifecycle.RegistryPassword = "secret"
				body := mutate(lrp)
				status, resp := request("PUT", "/apps/"+lrp.ProcessGUID, body)
				Expect(status).To(Equal(http.StatusBadRequest), string(resp))
				var e models.ErrorResponse
				Expect(json.Unmarshal(resp, &e)).To(Succeed())
				Expect(e.Error.Message).To(ContainSubstring(message))

				Consistently(func(g Gomega) int {
					return len(statefulSetsWith(g, namespace, lrp)) + len(statefulSetsWith(g, otherNamespace, lrp)) +
						len(secretsWith(g, namespace, lrp)) + len(secretsWith(g, otherNamespace, lrp)) +
						len(networkPoliciesWith(g, namespace, lrp)) + len(networkPoliciesWith(g, otherNamespace, lrp))
				}, time.Second).Should(BeZero())
			},
			Entry("malformed JSON", func(*models.DesireLRPRequest) any { return `{"guid": "x",` }, "malformed JSON"),
			Entry("missing guid", func(l *models.DesireLRPRequest) any { l.GUID = ""; return l }, "guid and version are required"),
			Entry("missing version", func(l *models.DesireLRPRequest) any { l.Version = ""; return l }, "guid and version are required"),
			Entry("negative instances", func(l *models.DesireLRPRequest) any { l.Instances = ptr.To(-1); return l }, "must not be negative"),
			Entry("no lifecycle", func(l *models.DesireLRPRequest) any { l.Lifecycle = models.Lifecycle{}; return l }, "one of docker_lifecycle or buildpack_lifecycle"),
			Entry("both lifecycles", func(l *models.DesireLRPRequest) any {
				l.Lifecycle.BuildpackLifecycle = &models.BuildpackLifecycle{DropletGUID: "d", DropletHash: "h"}
				return l
			}, "not both"),
			Entry("unknown lifecycle", func(l *models.DesireLRPRequest) any {
				return strings.Replace(string(mustJSON(l)), `"docker_lifecycle"`, `"windows_lifecycle"`, 1)
			}, "one of docker_lifecycle or buildpack_lifecycle"),
			Entry("body over the limit", func(l *models.DesireLRPRequest) any {
				l.Environment["BIG"] = strings.Repeat("x", 70000)
				return l
			}, "exceeds"),
			Entry("a namespace Iris does not manage", func(l *models.DesireLRPRequest) any { l.Namespace = "kube-system"; return l }, "not one of Iris's workloads namespaces"),
			Entry("an egress rule Iris cannot enforce", func(l *models.DesireLRPRequest) any {
				l.EgressRules = []models.SecurityGroupRule{{Protocol: "tcp", Destinations: []string{"db.example.com"}, Ports: []uint32{5432}}}
				return l
			}, `egress_rules[0]: destination "db.example.com"`),
			Entry("egress rules that are not a list of rules", func(l *models.DesireLRPRequest) any {
				return strings.Replace(string(mustJSON(l)), `"egress_rules":null`, `"egress_rules":{"protocol":"all"}`, 1)
			}, "egress_rules"),
			// Kubernetes itself rejects this; the registry secret and egress
			// policy made first must be removed again.
			Entry("an environment name Kubernetes refuses", func(l *models.DesireLRPRequest) any { l.Environment["A=B"] = "x"; return l }, "invalid LRP"),
		)
	})

	Describe("get", func() {
		It("returns the desired LRP in CC's shape", func() {
			lrp := newLRP(2)
			desire(lrp)
			status, body := request("GET", "/apps/"+lrp.GUID+"/"+lrp.Version, nil)
			Expect(status).To(Equal(http.StatusOK))
			Expect(body).To(MatchJSON(fmt.Sprintf(`{"desired_lrp":{"process_guid":%q,"instances":2,"annotation":"1700000000.0",
				"routes":{"cf-router":[{"hostname":"dora.example.com","port":8080}]}}}`, lrp.ProcessGUID)))
		})

		It("answers 404 for an unknown LRP", func() {
			status, body := request("GET", "/apps/no-such-guid/v1", nil)
			Expect(status).To(Equal(http.StatusNotFound))
			Expect(string(body)).To(ContainSubstring(`"message"`))
			status, _ = request("GET", "/apps/no-such-guid/v1/instances", nil)
			Expect(status).To(Equal(http.StatusNotFound))
		})
	})

	Describe("update", func() {
		It("scales up, down and to zero, keeping the LRP and its PDB in step", func() {
			lrp := newLRP(1)
			desire(lrp)
			Eventually(runningPods(namespace, lrp), 30*time.Second).Should(Equal(1))
			name := theStatefulSet(lrp).Name
			pdbExists := func() bool {
				_, err := clientset.PolicyV1().PodDisruptionBudgets(namespace).Get(context.Background(), name, metav1.GetOptions{})
				return err == nil
			}
			Expect(pdbExists()).To(BeFalse())

			update(lrp, models.DesiredLRPUpdate{Instances: ptr.To(4), Annotation: "1700000001.0"})
			Eventually(runningPods(namespace, lrp), 30*time.Second).Should(Equal(4))
			Expect(pdbExists()).To(BeTrue())

			update(lrp, models.DesiredLRPUpdate{Instances: ptr.To(2), Annotation: "1700000002.0"})
			Eventually(func(g Gomega) int { return len(podsWith(g, namespace, lrp)) }, 30*time.Second).Should(Equal(2))

			update(lrp, models.DesiredLRPUpdate{Instances: ptr.To(0), Annotation: "1700000003.0"})
			Eventually(func(g Gomega) int { return len(podsWith(g, namespace, lrp)) }, 30*time.Second).Should(BeZero())
			Expect(pdbExists()).To(BeFalse())
			Expect(statefulSets(namespace, lrp)).To(HaveLen(1), "scaling to zero keeps the LRP")
			Eventually(getInstances(lrp), 10*time.Second).Should(BeEmpty(), "the pod cache catches up with the deletions")

			status, body := request("GET", "/apps/"+lrp.GUID+"/"+lrp.Version, nil)
			Expect(status).To(Equal(http.StatusOK))
			var resp models.DesiredLRPResponse
			Expect(json.Unmarshal(body, &resp)).To(Succeed())
			Expect(resp.DesiredLRP.Instances).To(BeZero())
			Expect(resp.DesiredLRP.Annotation).To(Equal("1700000003.0"))
		})

		It("replaces routes and last_updated without restarting instances", func() {
			lrp := newLRP(2)
			desire(lrp)
			Eventually(runningPods(namespace, lrp), 30*time.Second).Should(Equal(2))
			uids := podUIDs(lrp)

			update(lrp, models.DesiredLRPUpdate{
				Instances:  ptr.To(2),
				Routes:     models.Routes{"cf-router": json.RawMessage(`[{"hostname":"new.example.com","port":8080},{"hostname":"other.example.com","port":8080}]`)},
				Annotation: "1700000100.0",
			})
			sts := theStatefulSet(lrp)
			Expect(sts.Annotations[k8s.AnnotationRoutes]).To(MatchJSON(`{"cf-router":[{"hostname":"new.example.com","port":8080},{"hostname":"other.example.com","port":8080}]}`))
			Expect(sts.Annotations[k8s.AnnotationLastUpdated]).To(Equal("1700000100.0"))

			Eventually(func(g Gomega) string {
				_, body := requestWith(g, irisURL, "GET", "/apps/"+lrp.GUID+"/"+lrp.Version, nil)
				return string(body)
			}, 10*time.Second).Should(ContainSubstring("new.example.com"))
			Consistently(func(g Gomega) []string { return podUIDsWith(g, lrp) }, 2*time.Second).Should(ConsistOf(uids))
		})

		It("answers 404 for an unknown LRP", func() {
			status, _ := request("POST", "/apps/nope-v1", models.UpdateDesiredLRPRequest{GUID: "nope", Version: "v1", Update: models.DesiredLRPUpdate{Instances: ptr.To(1)}})
			Expect(status).To(Equal(http.StatusNotFound))
		})
	})

	Describe("stop", func() {
		It("removes the LRP and its instances", func() {
			lrp := newLRP(2)
			desire(lrp)
			Eventually(runningPods(namespace, lrp), 30*time.Second).Should(Equal(2))

			status, _ := request("PUT", "/apps/"+lrp.GUID+"/"+lrp.Version+"/stop", nil)
			Expect(status).To(Equal(http.StatusOK))
			Eventually(func(g Gomega) int { return len(statefulSetsWith(g, namespace, lrp)) }, 30*time.Second).Should(BeZero())
			Eventually(func(g Gomega) int { return len(podsWith(g, namespace, lrp)) }, 60*time.Second).Should(BeZero())
			Eventually(func(g Gomega) int {
				status, _ := requestWith(g, irisURL, "GET", "/apps/"+lrp.GUID+"/"+lrp.Version, nil)
				return status
			}, 10*time.Second).Should(Equal(http.StatusNotFound))

			status, _ = request("PUT", "/apps/"+lrp.GUID+"/"+lrp.Version+"/stop", nil)
			Expect(status).To(Equal(http.StatusNotFound))
		})

		It("restarts one instance and rejects an index out of range", func() {
			lrp := newLRP(2)
			desire(lrp)
			Eventually(runningPods(namespace, lrp), 30*time.Second).Should(Equal(2))
			before := podUIDsByIndex(lrp)

			status, _ := request("PUT", "/apps/"+lrp.GUID+"/"+lrp.Version+"/stop/1", nil)
			Expect(status).To(Equal(http.StatusOK))
			Eventually(func(g Gomega) bool {
				after := podUIDsByIndexWith(g, lrp)
				return after["1"] != "" && after["1"] != before["1"]
			}, 30*time.Second).Should(BeTrue())
			Expect(podUIDsByIndex(lrp)["0"]).To(Equal(before["0"]))
			Eventually(runningPods(namespace, lrp), 30*time.Second).Should(Equal(2))

			status, body := request("PUT", "/apps/"+lrp.GUID+"/"+lrp.Version+"/stop/2", nil)
			Expect(status).To(Equal(http.StatusBadRequest))
			Expect(string(body)).To(ContainSubstring("out of range"))
		})
	})

	Describe("isolation segments", Serial, func() {
		It("runs an isolated LRP only on its segment's nodes, the others elsewhere, and reports a segment without nodes", func() {
			ctx := context.Background()
			nodes, err := clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			Expect(err).NotTo(HaveOccurred())
			Expect(len(nodes.Items)).To(BeNumerically(">=", 2))
			isolated := nodes.Items[0].Name
			setLabel := func(value string) {
				patch := fmt.Sprintf(`{"metadata":{"labels":{"cloudfoundry.org/isolation-segment":%s}}}`, value)
				_, err := clientset.CoreV1().Nodes().Patch(ctx, isolated, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
				Expect(err).NotTo(HaveOccurred())
			}
			setLabel(`"PCI_zone"`)
			DeferCleanup(setLabel, "null")

			nodesOf := func(lrp *models.DesireLRPRequest) []string {
				var names []string
				for _, p := range pods(namespace, lrp) {
					names = append(names, p.Spec.NodeName)
				}
				return names
			}
			pci := newLRP(2)
			pci.PlacementTags = []string{"PCI zone"} // CC's segment name; nodes carry it as a label value
			shared := newLRP(3)
			desire(pci)
			desire(shared)
			Eventually(runningPods(namespace, pci), 30*time.Second).Should(Equal(2))
			Eventually(runningPods(namespace, shared), 30*time.Second).Should(Equal(3))
			Expect(nodesOf(pci)).To(HaveEach(isolated))
			Expect(nodesOf(shared)).NotTo(ContainElement(isolated))

			nowhere := newLRP(1)
			nowhere.PlacementTags = []string{"no-such-segment"}
			desire(nowhere)
			Eventually(getInstances(nowhere), 30*time.Second).Should(ConsistOf(And(
				HaveField("State", models.InstanceUnclaimed),
				HaveField("PlacementError", "found no compatible cell"),
			)))
		})
	})

	Describe("instances", func() {
		It("reports an instance no node has memory for as UNCLAIMED with the placement error", func() {
			lrp := newLRP(1)
			lrp.MemoryMB = 10 * 1024 * 1024 // 10 TiB: more than any node has
			desire(lrp)
			Eventually(getInstances(lrp), 30*time.Second).Should(ConsistOf(
				And(
					HaveField("Index", 0),
					HaveField("State", models.InstanceUnclaimed),
					HaveField("PlacementError", "insufficient resources: memory"),
				)))
		})

		It("reports a crashed instance as CRASHED and the others RUNNING, with since", func() {
			lrp := newLRP(2)
			desire(lrp)
			Eventually(states(lrp), 30*time.Second).Should(Equal([]string{"RUNNING", "RUNNING"}))
			for _, inst := range getInstances(lrp)(Default) {
				Expect(inst.Since).To(BeNumerically(">", time.Now().Add(-5*time.Minute).UnixNano()))
			}

			// Play the kubelet: the app container of instance 1 exits.
			pod, err := clientset.CoreV1().Pods(namespace).Get(context.Background(), theStatefulSet(lrp).Name+"-1", metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())
			pod.Status.ContainerStatuses[0].Ready = false
			pod.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
			_, err = clientset.CoreV1().Pods(namespace).UpdateStatus(context.Background(), pod, metav1.UpdateOptions{})
			Expect(err).NotTo(HaveOccurred())
			Eventually(states(lrp), 10*time.Second).Should(Equal([]string{"RUNNING", "CRASHED"}))
		})
	})

	Describe("list", func() {
		It("lists 200 LRPs from the cache with their annotations", func() {
			lrps := make([]*models.DesireLRPRequest, 200)
			var wg sync.WaitGroup
			work := make(chan int)
			for w := 0; w < 10; w++ {
				wg.Add(1)
				go func() {
					defer GinkgoRecover()
					defer wg.Done()
					for i := range work {
						lrp := newLRP(0)
						lrp.LastUpdated = "1700000000." + strconv.Itoa(i)
						desire(lrp)
						lrps[i] = lrp
					}
				}()
			}
			for i := range lrps {
				work <- i
			}
			close(work)
			wg.Wait()

			want := map[string]string{}
			for _, lrp := range lrps {
				want[lrp.ProcessGUID] = lrp.LastUpdated
			}
			Eventually(func(g Gomega) map[string]string {
				status, body := requestWith(g, irisURL, "GET", "/apps", nil)
				g.Expect(status).To(Equal(http.StatusOK))
				var resp models.DesiredLRPSchedulingInfosResponse
				g.Expect(json.Unmarshal(body, &resp)).To(Succeed())
				got := map[string]string{}
				for _, info := range resp.DesiredLRPSchedulingInfos {
					if _, ours := want[info.DesiredLRPKey.ProcessGUID]; ours {
						g.Expect(info.DesiredLRPKey.ProcessGUID).To(Equal(info.GUID + "-" + info.Version))
						got[info.DesiredLRPKey.ProcessGUID] = info.Annotation
					}
				}
				return got
			}, 30*time.Second).Should(Equal(want))
		})
	})

	Describe("mTLS", func() {
		It("serves CC's client certificate and refuses others", func() {
			resp, err := mtlsClient(clientLeaf).Get(irisTLSURL + "/apps")
			Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			Expect(resp.StatusCode).To(Equal(http.StatusOK))

			// Without a certificate (staging pods have none) the handshake
			// succeeds, and every route but a staging's completion, with
			// its token, answers 401.
			resp, err = mtlsClient(nil).Get(irisTLSURL + "/apps")
			Expect(err).NotTo(HaveOccurred())
			body, err := io.ReadAll(resp.Body)
			Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			Expect(resp.StatusCode).To(Equal(http.StatusUnauthorized), "a client without a certificate must be refused")
			Expect(string(body)).To(ContainSubstring("a client certificate is required"))

			// A certificate from another CA, presented anyway, fails the handshake.
			strangerLeaf, err := newCA("stranger").Issue("mallory")
			Expect(err).NotTo(HaveOccurred())
			stranger, err := strangerLeaf.TLSCertificate()
			Expect(err).NotTo(HaveOccurred())
			client := mtlsClient(nil)
			client.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &stranger, nil }
			_, err = client.Get(irisTLSURL + "/apps")
			Expect(err).To(HaveOccurred(), "a certificate from another CA must be refused")
		})
	})
})

func podUIDs(lrp *models.DesireLRPRequest) []string {
	GinkgoHelper()
	return podUIDsWith(Default, lrp)
}

func podUIDsWith(g Gomega, lrp *models.DesireLRPRequest) []string {
	var uids []string
	for _, p := range podsWith(g, namespace, lrp) {
		uids = append(uids, string(p.UID))
	}
	return uids
}

func podUIDsByIndex(lrp *models.DesireLRPRequest) map[string]string {
	GinkgoHelper()
	return podUIDsByIndexWith(Default, lrp)
}

func podUIDsByIndexWith(g Gomega, lrp *models.DesireLRPRequest) map[string]string {
	out := map[string]string{}
	for _, p := range podsWith(g, namespace, lrp) {
		if p.DeletionTimestamp == nil {
			out[p.Labels[k8s.PodIndexLabel]] = string(p.UID)
		}
	}
	return out
}

func mustJSON(v any) []byte {
	data, err := json.Marshal(v)
	Expect(err).NotTo(HaveOccurred())
	return data
}
