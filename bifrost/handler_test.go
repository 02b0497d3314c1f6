package bifrost_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/bifrost"
	"github.com/iris-cf/iris/bifrost/bifrostfakes"
	"github.com/iris-cf/iris/models"
)

const validDesire = `{
  "guid": "app-guid", "version": "v1", "process_guid": "app-guid-v1",
  "instances": 2, "ports": [8080],
  "routes": {"cf-router": [{"hostname": "app.example.com", "port": 8080}]},
  "environment": {"FOO": "bar"},
  "lifecycle": {"docker_lifecycle": {"image": "busybox", "command": []}},
  "a_field_from_a_newer_cc": true
}`

var _ = Describe("Handler", func() {
	var (
		backend *bifrostfakes.FakeLRPBackend
		tasks   *bifrostfakes.FakeTaskBackend
		staging *bifrostfakes.FakeStagingBackend
		server  *httptest.Server
	)

	BeforeEach(func() {
		backend = &bifrostfakes.FakeLRPBackend{}
		tasks = &bifrostfakes.FakeTaskBackend{}
		staging = &bifrostfakes.FakeStagingBackend{}
		server = httptest.NewServer(bifrost.NewHandler(lagertest.NewTestLogger("test"),
			bifrost.Backends{LRPs: backend, Tasks: tasks, Staging: staging}, 1024))
		DeferCleanup(server.Close)
	})

	do := func(method, path, body string) (int, string) {
		req, err := http.NewRequest(method, server.URL+path, strings.NewReader(body))
		Expect(err).NotTo(HaveOccurred())
		resp, err := http.DefaultClient.Do(req)
		Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		Expect(err).NotTo(HaveOccurred())
		return resp.StatusCode, string(data)
	}

	errorMessage := func(body string) string {
		var e models.ErrorResponse
		Expect(json.Unmarshal([]byte(body), &e)).To(Succeed())
		return e.Error.Message
	}

	Describe("PUT /apps/{process_guid}", func() {
		It("desires the LRP and answers 202", func() {
			status, _ := do("PUT", "/apps/app-guid-v1", validDesire)
			Expect(status).To(Equal(http.StatusAccepted))
			Expect(backend.DesireCallCount()).To(Equal(1))
			_, _, lrp := backend.DesireArgsForCall(0)
			Expect(lrp.GUID).To(Equal("app-guid"))
			Expect(lrp.Instances).To(BeEquivalentTo(2))
			Expect(lrp.Env).To(HaveKeyWithValue("FOO", "bar"))
			Expect(lrp.Process.Image).To(Equal("busybox"))
		})

		It("fills in a missing process_guid from guid and version", func() {
			body := strings.Replace(validDesire, `"process_guid": "app-guid-v1",`, "", 1)
			status, _ := do("PUT", "/apps/app-guid-v1", body)
			Expect(status).To(Equal(http.StatusAccepted))
			_, _, lrp := backend.DesireArgsForCall(0)
			Expect(lrp.ProcessGUID).To(Equal("app-guid-v1"))
		})

		DescribeTable("rejects bad input with 400 and never calls the backend",
			func(path, body, message string) {
				status, resp := do("PUT", path, body)
				Expect(status).To(Equal(http.StatusBadRequest))
				Expect(errorMessage(resp)).To(ContainSubstring(message))
				Expect(backend.DesireCallCount()).To(BeZero())
			},
			Entry("malformed JSON", "/apps/app-guid-v1", `{"guid":`, "malformed JSON"),
			Entry("missing guid", "/apps/app-guid-v1", strings.Replace(validDesire, `"guid": "app-guid",`, "", 1), "guid and version are required"),
			Entry("missing version", "/apps/app-guid-v1", strings.Replace(validDesire, `"version": "v1",`, "", 1), "guid and version are required"),
			Entry("path mismatch", "/apps/other-v1", validDesire, "does not match"),
			Entry("negative instances", "/apps/app-guid-v1", strings.Replace(validDesire, `"instances": 2`, `"instances": -1`, 1), "instances must not be negative"),
			Entry("no lifecycle", "/apps/app-guid-v1", strings.Replace(validDesire, `"lifecycle": {"docker_lifecycle": {"image": "busybox", "command": []}},`, "", 1), "one of docker_lifecycle or buildpack_lifecycle"),
			Entry("unknown lifecycle", "/apps/app-guid-v1", strings.Replace(validDesire, `"docker_lifecycle"`, `"kpack_lifecycle"`, 1), "one of docker_lifecycle or buildpack_lifecycle"),
			Entry("both lifecycles", "/apps/app-guid-v1", strings.Replace(validDesire, `"command": []}}`, `"command": []}, "buildpack_lifecycle": {"droplet_guid": "d", "droplet_hash": "h"}}`, 1), "not both"),
			Entry("docker without image", "/apps/app-guid-v1", strings.Replace(validDesire, `"image": "busybox"`, `"image": ""`, 1), "image is required"),
			Entry("port out of range", "/apps/app-guid-v1", strings.Replace(validDesire, `"ports": [8080]`, `"ports": [70000]`, 1), "out of range"),
			Entry("routes not a list", "/apps/app-guid-v1", strings.Replace(validDesire, `[{"hostname": "app.example.com", "port": 8080}]`, `"app.example.com"`, 1), "routes"),
			Entry("unknown health check", "/apps/app-guid-v1", strings.Replace(validDesire, `"ports"`, `"health_check_type": "ping", "ports"`, 1), "health_check_type"),
			Entry("two placement tags", "/apps/app-guid-v1", strings.Replace(validDesire, `"ports"`, `"placement_tags": ["a", "b"], "ports"`, 1), "one tag (the isolation segment)"),
			Entry("an empty placement tag", "/apps/app-guid-v1", strings.Replace(validDesire, `"ports"`, `"placement_tags": [""], "ports"`, 1), "must not be empty"),
			Entry("body over the limit", "/apps/app-guid-v1", strings.Replace(validDesire, `"FOO": "bar"`, `"FOO": "`+strings.Repeat("x", 2048)+`"`, 1), "exceeds 1024 bytes"),
		)

		It("maps backend rejections to 400 and faults to 500", func() {
			backend.DesireReturns(models.Invalidf("namespace %q is not allowed", "x"))
			status, resp := do("PUT", "/apps/app-guid-v1", validDesire)
			Expect(status).To(Equal(http.StatusBadRequest))
			Expect(errorMessage(resp)).To(ContainSubstring("not allowed"))

			backend.DesireReturns(errors.New("etcd on fire"))
			status, resp = do("PUT", "/apps/app-guid-v1", validDesire)
			Expect(status).To(Equal(http.StatusInternalServerError))
			Expect(errorMessage(resp)).To(ContainSubstring("etcd on fire"))
		})
	})

	Describe("GET /apps", func() {
		It("lists scheduling infos in CC's shape", func() {
			backend.ListReturns([]models.DesiredLRPSchedulingInfo{{
				DesiredLRPKey: models.DesiredLRPKey{ProcessGUID: "g-v"}, GUID: "g", Version: "v", Annotation: "123.4",
			}})
			status, body := do("GET", "/apps", "")
			Expect(status).To(Equal(http.StatusOK))
			Expect(body).To(MatchJSON(`{"desired_lrp_scheduling_infos":[{"desired_lrp_key":{"process_guid":"g-v"},"guid":"g","version":"v","annotation":"123.4"}]}`))
		})

		It("answers an empty list, not null", func() {
			_, body := do("GET", "/apps", "")
			Expect(body).To(MatchJSON(`{"desired_lrp_scheduling_infos":[]}`))
		})
	})

	Describe("GET /apps/{guid}/{version}", func() {
		It("returns the desired LRP", func() {
			backend.GetReturns(&models.DesiredLRP{ProcessGUID: "g-v", Instances: 3, Annotation: "1.5",
				Routes: models.Routes{"cf-router": json.RawMessage(`[{"hostname":"h","port":8080}]`)}}, nil)
			status, body := do("GET", "/apps/g/v", "")
			Expect(status).To(Equal(http.StatusOK))
			Expect(body).To(MatchJSON(`{"desired_lrp":{"process_guid":"g-v","instances":3,"annotation":"1.5","routes":{"cf-router":[{"hostname":"h","port":8080}]}}}`))
			_, guid, version := backend.GetArgsForCall(0)
			Expect([]string{guid, version}).To(Equal([]string{"g", "v"}))
		})

		It("answers 404 for an unknown LRP", func() {
			backend.GetReturns(nil, models.ErrNotFound)
			status, body := do("GET", "/apps/g/v", "")
			Expect(status).To(Equal(http.StatusNotFound))
			Expect(errorMessage(body)).To(ContainSubstring("not found"))
		})
	})

	Describe("POST /apps/{process_guid}", func() {
		It("updates and answers 200 as CC requires", func() {
			status, _ := do("POST", "/apps/g-v", `{"guid":"g","version":"v","update":{"instances":0,"routes":{"cf-router":[]},"annotation":"2.0"}}`)
			Expect(status).To(Equal(http.StatusOK))
			_, _, req := backend.UpdateArgsForCall(0)
			Expect(*req.Update.Instances).To(Equal(0))
			Expect(req.Update.Annotation).To(Equal("2.0"))
		})

		It("rejects negative instances and path mismatches", func() {
			status, _ := do("POST", "/apps/g-v", `{"guid":"g","version":"v","update":{"instances":-2}}`)
			Expect(status).To(Equal(http.StatusBadRequest))
			status, _ = do("POST", "/apps/x-v", `{"guid":"g","version":"v","update":{"instances":2}}`)
			Expect(status).To(Equal(http.StatusBadRequest))
			Expect(backend.UpdateCallCount()).To(BeZero())
		})

		It("answers 404 with CC's error shape for an unknown LRP", func() {
			backend.UpdateReturns(models.ErrNotFound)
			status, body := do("POST", "/apps/g-v", `{"guid":"g","version":"v","update":{"instances":2}}`)
			Expect(status).To(Equal(http.StatusNotFound))
			Expect(errorMessage(body)).NotTo(BeEmpty())
		})
	})

	Describe("stop", func() {
		It("stops the LRP", func() {
			status, _ := do("PUT", "/apps/g/v/stop", "")
			Expect(status).To(Equal(http.StatusOK))
			_, _, guid, version := backend.StopArgsForCall(0)
			Expect([]string{guid, version}).To(Equal([]string{"g", "v"}))
		})

		It("stops one instance", func() {
			status, _ := do("PUT", "/apps/g/v/stop/2", "")
			Expect(status).To(Equal(http.StatusOK))
			_, _, _, _, index := backend.StopInstanceArgsForCall(0)
			Expect(index).To(Equal(2))
		})

		It("rejects an index that is not a number", func() {
			status, _ := do("PUT", "/apps/g/v/stop/two", "")
			Expect(status).To(Equal(http.StatusBadRequest))
			Expect(backend.StopInstanceCallCount()).To(BeZero())
		})
	})

	Describe("GET /apps/{guid}/{version}/instances", func() {
		It("reports instances", func() {
			backend.InstancesReturns([]*models.Instance{{Index: 0, Since: 42, State: "RUNNING"}, {Index: 1, State: "UNCLAIMED", PlacementError: "Insufficient resources: memory"}}, nil)
			status, body := do("GET", "/apps/g/v/instances", "")
			Expect(status).To(Equal(http.StatusOK))
			Expect(body).To(MatchJSON(`{"process_guid":"g-v","instances":[{"index":0,"since":42,"state":"RUNNING"},{"index":1,"since":0,"state":"UNCLAIMED","placement_error":"Insufficient resources: memory"}]}`))
		})

		It("reports an unknown LRP in the error field CC reads", func() {
			backend.InstancesReturns(nil, models.ErrNotFound)
			status, body := do("GET", "/apps/g/v/instances", "")
			Expect(status).To(Equal(http.StatusNotFound))
			Expect(body).To(MatchJSON(`{"process_guid":"g-v","instances":[],"error":"not found"}`))
		})
	})

	Describe("tasks", func() {
		const task = `{"guid":"t1","name":"migrate","app_guid":"a","completion_callback":"https://cc:9023/internal/v4/tasks/t1/completed",
			"environment":[{"name":"A","value":"1"}],"command":"rake db:migrate","lifecycle":{"docker_lifecycle":{"image":"busybox"}}}`

		It("desires a task: 202", func() {
			status, _ := do("POST", "/tasks/t1", task)
			Expect(status).To(Equal(http.StatusAccepted))
			_, _, t := tasks.DesireArgsForCall(0)
			Expect(t.Command).To(Equal("rake db:migrate"))
			Expect(t.Environment).To(Equal([]models.EnvironmentVariable{{Name: "A", Value: "1"}}))
		})

		DescribeTable("rejects bad tasks with 400",
			func(path, body, message string) {
				status, resp := do("POST", path, body)
				Expect(status).To(Equal(http.StatusBadRequest))
				Expect(errorMessage(resp)).To(ContainSubstring(message))
				Expect(tasks.DesireCallCount()).To(BeZero())
			},
			Entry("guid mismatch", "/tasks/other", task, "does not match"),
			Entry("no callback", "/tasks/t1", strings.Replace(task, `"https://cc:9023/internal/v4/tasks/t1/completed"`, `""`, 1), "completion_callback is required"),
			Entry("callback not a URL", "/tasks/t1", strings.Replace(task, `"https://cc:9023/internal/v4/tasks/t1/completed"`, `"cc:9023"`, 1), "not an http(s) URL"),
			Entry("no lifecycle", "/tasks/t1", strings.Replace(task, `,"lifecycle":{"docker_lifecycle":{"image":"busybox"}}`, "", 1), "lifecycle"),
		)

		It("lists and gets tasks, 404 for an unknown one", func() {
			tasks.ListReturns([]models.TaskResponse{{GUID: "t1", State: "RUNNING"}})
			status, body := do("GET", "/tasks", "")
			Expect(status).To(Equal(http.StatusOK))
			Expect(body).To(MatchJSON(`[{"guid":"t1","state":"RUNNING"}]`))

			tasks.GetReturns(nil, models.ErrNotFound)
			status, _ = do("GET", "/tasks/nope", "")
			Expect(status).To(Equal(http.StatusNotFound))
		})

		It("cancels a task", func() {
			status, _ := do("DELETE", "/tasks/t1", "")
			Expect(status).To(Equal(http.StatusNoContent))
			_, _, guid := tasks.CancelArgsForCall(0)
			Expect(guid).To(Equal("t1"))
		})
	})

	Describe("staging", func() {
		const docker = `{"app_guid":"a","completion_callback":"https://cc:9023/internal/v3/staging/s1/build_completed?start=true",
			"lifecycle":{"docker_lifecycle":{"image":"busybox"}}}`

		It("stages: 202", func() {
			status, _ := do("POST", "/stage/s1", docker)
			Expect(status).To(Equal(http.StatusAccepted))
			_, _, guid, req := staging.StageArgsForCall(0)
			Expect(guid).To(Equal("s1"))
			Expect(req.Lifecycle.DockerLifecycle.Image).To(Equal("busybox"))
		})

		DescribeTable("rejects bad stagings with 400",
			func(body, message string) {
				status, resp := do("POST", "/stage/s1", body)
				Expect(status).To(Equal(http.StatusBadRequest))
				Expect(errorMessage(resp)).To(ContainSubstring(message))
				Expect(staging.StageCallCount()).To(BeZero())
			},
			Entry("no callback", strings.Replace(docker, `"https://cc:9023/internal/v3/staging/s1/build_completed?start=true"`, `""`, 1), "completion_callback"),
			Entry("no image", strings.Replace(docker, `"busybox"`, `""`, 1), "image is required"),
			Entry("buildpack without URIs", strings.Replace(docker, `"docker_lifecycle":{"image":"busybox"}`, `"buildpack_lifecycle":{}`, 1), "app_bits_download_uri"),
			Entry("no lifecycle", strings.Replace(docker, `"docker_lifecycle":{"image":"busybox"}`, ``, 1), "one of"),
		)

		It("takes the uploader's completion and cancels", func() {
			status, _ := do("PUT", "/stage/s1/completed", `{"task_guid":"s1","failed":false,"result":"{}"}`)
			Expect(status).To(Equal(http.StatusOK))
			_, _, _, done := staging.CompleteArgsForCall(0)
			Expect(done.Result).To(Equal("{}"))
			status, _ = do("DELETE", "/stage/s1", "")
			Expect(status).To(Equal(http.StatusAccepted))
		})
	})
})
