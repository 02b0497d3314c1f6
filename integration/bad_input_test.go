package integration_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

// Input that once got through (issue 12): each request must be answered 400
// with a message that names the problem, and leave nothing in the cluster.
var _ = Describe("Bad input", func() {
	// objectsOfApp counts everything Iris could have made for an app, in
	// both workloads namespaces, by the app guid label every object carries.
	objectsOfApp := func(g Gomega, appGUID string) int {
		ctx := context.Background()
		opts := metav1.ListOptions{LabelSelector: k8s.LabelAppGUID + "=" + appGUID}
		n := 0
		for _, ns := range []string{namespace, otherNamespace} {
			sts, err := clientset.AppsV1().StatefulSets(ns).List(ctx, opts)
			g.Expect(err).NotTo(HaveOccurred())
			secrets, err := clientset.CoreV1().Secrets(ns).List(ctx, opts)
			g.Expect(err).NotTo(HaveOccurred())
			policies, err := clientset.NetworkingV1().NetworkPolicies(ns).List(ctx, opts)
			g.Expect(err).NotTo(HaveOccurred())
			pdbs, err := clientset.PolicyV1().PodDisruptionBudgets(ns).List(ctx, opts)
			g.Expect(err).NotTo(HaveOccurred())
			jobs, err := clientset.BatchV1().Jobs(ns).List(ctx, opts)
			g.Expect(err).NotTo(HaveOccurred())
			pods, err := clientset.CoreV1().Pods(ns).List(ctx, opts)
			g.Expect(err).NotTo(HaveOccurred())
			n += len(sts.Items) + len(secrets.Items) + len(policies.Items) + len(pdbs.Items) + len(jobs.Items) + len(pods.Items)
		}
		return n
	}

	// rejected sends the request to the Iris at base and checks the answer
	// and that nothing of appGUID exists afterwards.
	rejected := func(base, method, path string, body any, appGUID, message string) {
		GinkgoHelper()
		status, resp := requestTo(base, method, path, body)
		Expect(status).To(Equal(http.StatusBadRequest), string(resp))
		// Read as the CC client of the path does: its stager and task
		// clients a top-level message, the LRP calls error.message.
		if strings.HasPrefix(path, "/stage/") || strings.HasPrefix(path, "/tasks/") {
			var e models.MessageResponse
			Expect(json.Unmarshal(resp, &e)).To(Succeed(), string(resp))
			Expect(e.Message).To(ContainSubstring(message))
		} else {
			var e models.ErrorResponse
			Expect(json.Unmarshal(resp, &e)).To(Succeed(), string(resp))
			Expect(e.Error.Message).To(ContainSubstring(message))
		}
		Consistently(func(g Gomega) int { return objectsOfApp(g, appGUID) }, time.Second, 200*time.Millisecond).Should(BeZero())
	}

	DescribeTable("a desire",
		func(mutate func(*models.DesireLRPRequest) (path string, body any), message string) {
			lrp := newLRP(1)
			path, body := mutate(lrp)
			rejected(irisURL, "PUT", path, body, lrp.AppGUID, message)
		},
		Entry("a billion instances", func(l *models.DesireLRPRequest) (string, any) {
			l.Instances = ptr.To(1_000_000_000)
			return "/apps/" + l.ProcessGUID, l
		}, "instances must be at most 1000 (lrp.max_instances), got 1000000000"),
		Entry("4294967297 instances, 1 as an int32", func(l *models.DesireLRPRequest) (string, any) {
			l.Instances = ptr.To(4294967297)
			return "/apps/" + l.ProcessGUID, l
		}, "got 4294967297"),
		Entry("memory_mb 0", func(l *models.DesireLRPRequest) (string, any) {
			l.MemoryMB = 0
			return "/apps/" + l.ProcessGUID, l
		}, "memory_mb must be between 1 and 2147483647, got 0"),
		Entry("disk_mb 0", func(l *models.DesireLRPRequest) (string, any) {
			l.DiskMB = 0
			return "/apps/" + l.ProcessGUID, l
		}, "disk_mb must be between 1 and 2147483647, got 0"),
		Entry("cpu_weight 1,000,000", func(l *models.DesireLRPRequest) (string, any) {
			l.CPUWeight = 1_000_000
			return "/apps/" + l.ProcessGUID, l
		}, "cpu_weight must be between 0 and 100, got 1000000"),
		Entry("an environment value with NUL", func(l *models.DesireLRPRequest) (string, any) {
			l.Environment["BROKEN"] = "a\x00b"
			return "/apps/" + l.ProcessGUID, l
		}, "the value of BROKEN contains a NUL byte"),
		Entry("a route to a port the app does not expose", func(l *models.DesireLRPRequest) (string, any) {
			l.Routes = models.Routes{models.CFRouterKey: json.RawMessage(`[{"hostname":"dora.example.com","port":9090}]`)}
			return "/apps/" + l.ProcessGUID, l
		}, `route "dora.example.com" goes to port 9090, which the app does not expose (ports [8080])`),
		Entry("a TCP route to a port the app does not expose", func(l *models.DesireLRPRequest) (string, any) {
			l.Routes[models.TCPRouterKey] = json.RawMessage(`[{"router_group_guid":"rg","external_port":61000,"container_port":5432}]`)
			return "/apps/" + l.ProcessGUID, l
		}, "goes to container port 5432, which the app does not expose"),
		Entry("an invalid image reference", func(l *models.DesireLRPRequest) (string, any) {
			l.Lifecycle.DockerLifecycle.Image = "Docker Hub/dora::latest"
			return "/apps/" + l.ProcessGUID, l
		}, `docker_lifecycle.image "Docker Hub/dora::latest" is not an image reference`),
		Entry("a process guid ../../x", func(l *models.DesireLRPRequest) (string, any) {
			l.GUID = "../../x"
			l.ProcessGUID = l.GUID + "-" + l.Version
			return "/apps/" + strings.ReplaceAll(l.ProcessGUID, "/", "%2F"), l
		}, `guid "../../x": want 1-63 characters of [A-Za-z0-9._-]`),
		Entry("a guid with a slash", func(l *models.DesireLRPRequest) (string, any) {
			l.GUID = "a/b"
			l.ProcessGUID = l.GUID + "-" + l.Version
			return "/apps/" + strings.ReplaceAll(l.ProcessGUID, "/", "%2F"), l
		}, `guid "a/b"`),
	)

	DescribeTable("a task",
		func(mutate func(*models.TaskRequest), message string) {
			task := newTask()
			mutate(task)
			rejected(irisURL, "POST", "/tasks/"+strings.ReplaceAll(task.GUID, "/", "%2F"), task, task.AppGUID, message)
		},
		// CC sends none (0 is "take MEMORY_LIMIT or the default"); one
		// that is sent is checked.
		Entry("memory_mb -1", func(t *models.TaskRequest) { t.MemoryMB = -1 }, "memory_mb must be between 1"),
		Entry("disk_mb -1", func(t *models.TaskRequest) { t.DiskMB = -1 }, "disk_mb must be between 1"),
		Entry("a MEMORY_LIMIT that is no limit", func(t *models.TaskRequest) {
			t.Environment = append(t.Environment, models.EnvironmentVariable{Name: "MEMORY_LIMIT", Value: "lots"})
		}, `MEMORY_LIMIT "lots" is not a memory limit`),
		Entry("cpu_weight 101", func(t *models.TaskRequest) { t.CPUWeight = 101 }, "cpu_weight must be between 0 and 100"),
		Entry("an environment name with NUL", func(t *models.TaskRequest) {
			t.Environment = append(t.Environment, models.EnvironmentVariable{Name: "A\x00", Value: "1"})
		}, "contains a NUL byte"),
		Entry("an invalid image reference", func(t *models.TaskRequest) {
			t.Lifecycle = models.Lifecycle{DockerLifecycle: &models.DockerLifecycle{Image: "busybox:"}}
		}, "is not an image reference"),
		Entry("a guid ../../x", func(t *models.TaskRequest) { t.GUID = "../../x" }, `task guid "../../x"`),
	)

	DescribeTable("a staging",
		func(guid string, mutate func(*models.StagingRequest), message string) {
			req := dockerStaging(guid, "cloudfoundry/dora:latest", "", "")
			mutate(req)
			rejected(irisURL, "POST", "/stage/"+guid, req, req.AppGUID, message)
		},
		Entry("memory_mb 0", uuid.NewString(), func(r *models.StagingRequest) { r.MemoryMB = 0 }, "memory_mb must be between 1"),
		Entry("cpu_weight 1,000,000", uuid.NewString(), func(r *models.StagingRequest) { r.CPUWeight = 1_000_000 }, "cpu_weight must be between 0 and 100"),
		Entry("an invalid image reference", uuid.NewString(), func(r *models.StagingRequest) { r.Lifecycle.DockerLifecycle.Image = "UPPER/case" }, "is not an image reference"),
		Entry("a guid with ..", "a..b", func(*models.StagingRequest) {}, `staging guid "a..b"`),
	)

	Describe("an update", func() {
		It("never scales to a count beyond the bound, 4294967296 (0 as an int32) included, nor routes to an unexposed port", func() {
			lrp := newLRP(1)
			desire(lrp)
			DeferCleanup(func() { request("PUT", "/apps/"+lrp.GUID+"/"+lrp.Version+"/stop", nil) })
			Eventually(func(g Gomega) {
				list, err := clientset.AppsV1().StatefulSets(namespace).List(context.Background(), metav1.ListOptions{LabelSelector: selectorFor(lrp)})
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(list.Items).To(HaveLen(1))
			}, 10*time.Second).Should(Succeed())
			routesBefore := theStatefulSet(lrp).Annotations[k8s.AnnotationRoutes]

			for _, instances := range []int{4294967296, 1001} {
				status, body := request("POST", "/apps/"+lrp.ProcessGUID, models.UpdateDesiredLRPRequest{
					GUID: lrp.GUID, Version: lrp.Version, Update: models.DesiredLRPUpdate{Instances: ptr.To(instances)},
				})
				Expect(status).To(Equal(http.StatusBadRequest), string(body))
				Expect(string(body)).To(ContainSubstring("got " + strconv.Itoa(instances)))
			}
			status, body := request("POST", "/apps/"+lrp.ProcessGUID, models.UpdateDesiredLRPRequest{
				GUID: lrp.GUID, Version: lrp.Version, Update: models.DesiredLRPUpdate{
					Routes: models.Routes{models.CFRouterKey: json.RawMessage(`[{"hostname":"dora.example.com","port":9999}]`)},
				},
			})
			Expect(status).To(Equal(http.StatusBadRequest), string(body))
			Expect(string(body)).To(ContainSubstring("goes to port 9999, which the app does not expose (ports [8080])"))

			Consistently(func(g Gomega) {
				list, err := clientset.AppsV1().StatefulSets(namespace).List(context.Background(), metav1.ListOptions{LabelSelector: selectorFor(lrp)})
				g.Expect(err).NotTo(HaveOccurred())
				sts := list.Items
				g.Expect(sts).To(HaveLen(1))
				g.Expect(sts[0].Spec.Replicas).To(HaveValue(BeEquivalentTo(1)))
				g.Expect(sts[0].Annotations[k8s.AnnotationRoutes]).To(Equal(routesBefore))
			}, time.Second, 200*time.Millisecond).Should(Succeed())
		})
	})

	// A second Iris serving only the API, with a body limit large enough to
	// let a huge environment through to validation and a short read timeout.
	Describe("with a large body limit and a short read timeout", Ordered, func() {
		const readTimeout = 2 * time.Second
		var base string

		BeforeAll(func() {
			addr := freeAddress()
			base = "http://" + addr
			config := secondIrisConfig("api")
			config = strings.Replace(config, "  listen_address: "+strconv.Quote(strings.TrimPrefix(irisURL, "http://")), "  listen_address: "+strconv.Quote(addr), 1)
			config = strings.Replace(config, "  tls_listen_address: "+strconv.Quote(strings.TrimPrefix(irisTLSURL, "https://")), `  tls_listen_address: ""`, 1)
			config = strings.Replace(config, "  max_request_body_bytes: 65536", fmt.Sprintf("  max_request_body_bytes: %d\n  read_timeout_seconds: %d", 8<<20, int(readTimeout.Seconds())), 1)
			startExtraIris(irisPath, config)
			Eventually(func(g Gomega) int {
				resp, err := http.Get(base + "/healthz")
				g.Expect(err).NotTo(HaveOccurred())
				resp.Body.Close()
				return resp.StatusCode
			}, 30*time.Second, 100*time.Millisecond).Should(Equal(http.StatusOK))
		})

		It("refuses a 3 MiB environment value with 400 before any API call", func() {
			lrp := newLRP(1)
			lrp.Environment["BIG"] = strings.Repeat("x", 3<<20)
			rejected(base, "PUT", "/apps/"+lrp.ProcessGUID, lrp, lrp.AppGUID, "BIG is 3145732 bytes, more than the 131071 a process environment string may have")
		})

		It("cuts off a client that sends a small body byte by byte", func() {
			conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(conn.Close)
			lrp := newLRP(1)
			body := mustJSON(lrp)
			_, err = fmt.Fprintf(conn, "PUT /apps/%s HTTP/1.1\r\nHost: iris\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", lrp.ProcessGUID, len(body))
			Expect(err).NotTo(HaveOccurred())

			// Ten bytes a second: the body would take minutes. The drip stops
			// at the first failed write or when the spec ends.
			stop := make(chan struct{})
			DeferCleanup(func() { close(stop) })
			go func() {
				ticker := time.NewTicker(100 * time.Millisecond)
				defer ticker.Stop()
				for _, b := range body {
					select {
					case <-stop:
						return
					case <-ticker.C:
					}
					if _, err := conn.Write([]byte{b}); err != nil {
						return
					}
				}
			}()

			start := time.Now()
			Expect(conn.SetReadDeadline(time.Now().Add(readTimeout + 5*time.Second))).To(Succeed())
			_, err = io.Copy(io.Discard, conn)
			if err != nil {
				Expect(errors.Is(err, syscall.ECONNRESET)).To(BeTrue(), "Iris must close the connection: %v", err)
			}
			Expect(time.Since(start)).To(BeNumerically("<", readTimeout+5*time.Second))
			Consistently(func(g Gomega) int { return objectsOfApp(g, lrp.AppGUID) }, time.Second, 200*time.Millisecond).Should(BeZero())
		})
	})
})
