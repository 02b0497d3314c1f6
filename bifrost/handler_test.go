package bifrost_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
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
  "instances": 2, "ports": [8080], "memory_mb": 256, "disk_mb": 1024, "cpu_weight": 3,
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
	limits := bifrost.Limits{MaxRequestBodyBytes: 1024, MaxInstances: 10, MaxInFlightRequests: 2, DefaultTaskMemoryMB: 512, DefaultTaskDiskMB: 2048}

	BeforeEach(func() {
		backend = &bifrostfakes.FakeLRPBackend{}
		tasks = &bifrostfakes.FakeTaskBackend{}
		staging = &bifrostfakes.FakeStagingBackend{}
		server = httptest.NewServer(bifrost.NewHandler(lagertest.NewTestLogger("test"),
			bifrost.Backends{LRPs: backend, Tasks: tasks, Staging: staging}, limits))
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

	// errorMessage reads an error as CC's LRP update does: "error"."message".
	errorMessage := func(body string) string {
		var e models.ErrorResponse
		Expect(json.Unmarshal([]byte(body), &e)).To(Succeed())
		return e.Error.Message
	}

	// topLevelMessage reads an error as CC's stager and task clients do: a
	// top-level "message", and nothing else.
	topLevelMessage := func(body string) string {
		var e map[string]any
		Expect(json.Unmarshal([]byte(body), &e)).To(Succeed())
		Expect(e).To(HaveKey("message"), body)
		Expect(e).To(HaveLen(1), body)
		return e["message"].(string)
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
			Entry("instances over lrp.max_instances", "/apps/app-guid-v1", strings.Replace(validDesire, `"instances": 2`, `"instances": 11`, 1), "instances must be at most 10 (lrp.max_instances), got 11"),
			Entry("instances that would wrap to 1 as an int32", "/apps/app-guid-v1", strings.Replace(validDesire, `"instances": 2`, `"instances": 4294967297`, 1), "got 4294967297"),
			Entry("instances beyond any integer", "/apps/app-guid-v1", strings.Replace(validDesire, `"instances": 2`, `"instances": 1e30`, 1), "malformed JSON"),
			Entry("no memory_mb", "/apps/app-guid-v1", strings.Replace(validDesire, `"memory_mb": 256`, `"memory_mb": 0`, 1), "memory_mb must be between 1 and 2147483647, got 0"),
			Entry("no disk_mb", "/apps/app-guid-v1", strings.Replace(validDesire, `"disk_mb": 1024`, `"disk_mb": 0`, 1), "disk_mb must be between 1 and 2147483647, got 0"),
			Entry("negative memory_mb", "/apps/app-guid-v1", strings.Replace(validDesire, `"memory_mb": 256`, `"memory_mb": -1`, 1), "memory_mb must be between"),
			Entry("memory_mb that would overflow in bytes", "/apps/app-guid-v1", strings.Replace(validDesire, `"memory_mb": 256`, `"memory_mb": 9007199254740993`, 1), "memory_mb must be between"),
			Entry("cpu_weight over Diego's 100", "/apps/app-guid-v1", strings.Replace(validDesire, `"cpu_weight": 3`, `"cpu_weight": 1000000`, 1), "cpu_weight must be between 0 and 100, got 1000000"),
			Entry("a NUL in an environment value", "/apps/app-guid-v1", strings.Replace(validDesire, `"FOO": "bar"`, `"FOO": "b\u0000r"`, 1), "the value of FOO contains a NUL byte"),
			Entry("a NUL in an environment name", "/apps/app-guid-v1", strings.Replace(validDesire, `"FOO": "bar"`, `"F\u0000O": "bar"`, 1), "contains a NUL byte"),
			Entry("an empty environment name", "/apps/app-guid-v1", strings.Replace(validDesire, `"FOO": "bar"`, `"": "bar"`, 1), "names must not be empty"),
			Entry("a route to a port the app does not expose", "/apps/app-guid-v1", strings.Replace(validDesire, `"port": 8080}`, `"port": 9090}`, 1), `route "app.example.com" goes to port 9090, which the app does not expose (ports [8080])`),
			Entry("a route to 8080 when the app exposes other ports", "/apps/app-guid-v1", strings.Replace(validDesire, `"ports": [8080]`, `"ports": [9000]`, 1), "goes to port 8080, which the app does not expose"),
			Entry("a TCP route to a port the app does not expose", "/apps/app-guid-v1", strings.Replace(validDesire, `"cf-router"`, `"tcp-router": [{"router_group_guid": "rg", "external_port": 61000, "container_port": 5432}], "cf-router"`, 1), "goes to container port 5432, which the app does not expose"),
			Entry("TCP routes that are not a list", "/apps/app-guid-v1", strings.Replace(validDesire, `"cf-router"`, `"tcp-router": 5, "cf-router"`, 1), `"tcp-router" must be a list`),
			Entry("an invalid image reference", "/apps/app-guid-v1", strings.Replace(validDesire, `"image": "busybox"`, `"image": "Busy Box::latest"`, 1), `docker_lifecycle.image "Busy Box::latest" is not an image reference`),
			Entry("a droplet that forms no image reference", "/apps/app-guid-v1", strings.Replace(validDesire, `"docker_lifecycle": {"image": "busybox", "command": []}`, `"buildpack_lifecycle": {"droplet_guid": "d", "droplet_hash": "not a tag!"}`, 1), "do not form an image reference"),
			Entry("a guid with a path in it", "/apps/..%2F..%2Fx-v1", strings.Replace(strings.Replace(validDesire, `"guid": "app-guid"`, `"guid": "../../x"`, 1), `"process_guid": "app-guid-v1"`, `"process_guid": "../../x-v1"`, 1), `guid "../../x": want 1-63 characters of [A-Za-z0-9._-]`),
			Entry("a version with dots only", "/apps/app-guid-..", strings.Replace(strings.Replace(validDesire, `"version": "v1"`, `"version": ".."`, 1), `"process_guid": "app-guid-v1"`, `"process_guid": "app-guid-.."`, 1), `version ".."`),
			Entry("a guid with \"..\" inside", "/apps/a..b-v1", strings.Replace(strings.Replace(validDesire, `"guid": "app-guid"`, `"guid": "a..b"`, 1), `"process_guid": "app-guid-v1"`, `"process_guid": "a..b-v1"`, 1), `without ".."`),
			Entry("a guid longer than a label value", "/apps/"+strings.Repeat("g", 64)+"-v1", strings.Replace(strings.Replace(validDesire, `"guid": "app-guid"`, `"guid": "`+strings.Repeat("g", 64)+`"`, 1), `"process_guid": "app-guid-v1"`, `"process_guid": "`+strings.Repeat("g", 64)+`-v1"`, 1), "want 1-63 characters"),
		)

		It("takes instances up to lrp.max_instances and a UUID process guid", func() {
			body := strings.NewReplacer(`"instances": 2`, `"instances": 10`,
				`"guid": "app-guid"`, `"guid": "8c1b5c2e-3a9e-4bbd-9e8f-2b7a0d5c6e11"`,
				`"process_guid": "app-guid-v1"`, `"process_guid": "8c1b5c2e-3a9e-4bbd-9e8f-2b7a0d5c6e11-v1"`).Replace(validDesire)
			status, resp := do("PUT", "/apps/8c1b5c2e-3a9e-4bbd-9e8f-2b7a0d5c6e11-v1", body)
			Expect(status).To(Equal(http.StatusAccepted), resp)
			_, _, lrp := backend.DesireArgsForCall(0)
			Expect(lrp.Instances).To(Equal(int32(10)))
		})

		It("routes to 8080 when the app names no ports, as it then exposes 8080", func() {
			status, resp := do("PUT", "/apps/app-guid-v1", strings.Replace(validDesire, `"ports": [8080],`, "", 1))
			Expect(status).To(Equal(http.StatusAccepted), resp)
		})

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
			Expect(body).To(Equal(`{"desired_lrp_scheduling_infos":[]}` + "\n"))
		})

		It("writes a long list byte for byte as encoding/json would, strings that need escaping included", func() {
			// Enough LRPs for several written chunks, and strings encoding/json
			// escapes: quotes, backslashes, HTML, control characters,
			// non-ASCII, invalid UTF-8 and U+2028.
			odd := []string{`a"b`, `c\d`, "<b", "b>", "a&b", "tab\there", "caf\u00e9", "bad\xffutf8", "line\u2028sep", "\x00", "\x7f", ""}
			var infos []models.DesiredLRPSchedulingInfo
			for i := 0; i < 1200; i++ {
				guid := fmt.Sprintf("5fa0a0b4-1d6c-4d0f-a7a4-%012d", i)
				info := models.DesiredLRPSchedulingInfo{
					DesiredLRPKey: models.DesiredLRPKey{ProcessGUID: guid + "-v" + fmt.Sprint(i)}, GUID: guid, Version: fmt.Sprint("v", i),
					Annotation: fmt.Sprintf("1764583200.%d", i),
				}
				if i%97 == 0 {
					info.Annotation, info.Version = odd[i/97%len(odd)], odd[(i/97+1)%len(odd)]
				}
				infos = append(infos, info)
			}
			backend.ListReturns(infos)
			status, body := do("GET", "/apps", "")
			Expect(status).To(Equal(http.StatusOK))
			var want strings.Builder
			Expect(json.NewEncoder(&want).Encode(models.DesiredLRPSchedulingInfosResponse{DesiredLRPSchedulingInfos: infos})).To(Succeed())
			Expect(body).To(Equal(want.String()))
			Expect(len(body)).To(BeNumerically(">", 4*32<<10), "several written chunks")

			// The same infos from a backend that yields them one at a time
			// (reusing one struct), without List.
			streamed := httptest.NewServer(bifrost.NewHandler(lagertest.NewTestLogger("test"),
				bifrost.Backends{LRPs: &streamingLRPs{FakeLRPBackend: &bifrostfakes.FakeLRPBackend{}, infos: infos}, Tasks: tasks, Staging: staging}, limits))
			DeferCleanup(streamed.Close)
			resp, err := http.Get(streamed.URL + "/apps")
			Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			data, err := io.ReadAll(resp.Body)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(data)).To(Equal(want.String()))
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

		DescribeTable("rejects instances it cannot honour with 400",
			func(instances, message string) {
				status, resp := do("POST", "/apps/g-v", `{"guid":"g","version":"v","update":{"instances":`+instances+`}}`)
				Expect(status).To(Equal(http.StatusBadRequest))
				Expect(errorMessage(resp)).To(ContainSubstring(message))
				Expect(backend.UpdateCallCount()).To(BeZero())
			},
			Entry("negative", "-2", "must not be negative"),
			Entry("over lrp.max_instances", "11", "at most 10 (lrp.max_instances)"),
			Entry("2^32, which an int32 makes 0", "4294967296", "got 4294967296"),
			Entry("beyond any integer", "1e30", "malformed JSON"),
		)

		It("rejects routes that are not a list, before the backend checks their ports", func() {
			status, resp := do("POST", "/apps/g-v", `{"guid":"g","version":"v","update":{"routes":{"tcp-router":{}}}}`)
			Expect(status).To(Equal(http.StatusBadRequest))
			Expect(errorMessage(resp)).To(ContainSubstring(`"tcp-router" must be a list`))
			Expect(backend.UpdateCallCount()).To(BeZero())
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
			backend.InstancesReturns([]*models.Instance{{Index: 0, Since: 42, State: "RUNNING"}, {Index: 1, State: "UNCLAIMED", PlacementError: "insufficient resources: memory"}}, nil)
			status, body := do("GET", "/apps/g/v/instances", "")
			Expect(status).To(Equal(http.StatusOK))
			Expect(body).To(MatchJSON(`{"process_guid":"g-v","instances":[{"index":0,"since":42,"state":"RUNNING"},{"index":1,"since":0,"state":"UNCLAIMED","placement_error":"insufficient resources: memory"}]}`))
		})

		It("reports a failure as the string CC's instances client calls include? on", func() {
			backend.InstancesReturns(nil, errors.New("the API server is away"))
			status, body := do("GET", "/apps/g/v/instances", "")
			Expect(status).To(Equal(http.StatusInternalServerError))
			Expect(body).To(MatchJSON(`{"process_guid":"g-v","instances":[],"error":"the API server is away"}`))
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
			"memory_mb":256,"disk_mb":1024,"cpu_weight":3,
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
				Expect(topLevelMessage(resp)).To(ContainSubstring(message))
				Expect(tasks.DesireCallCount()).To(BeZero())
			},
			Entry("guid mismatch", "/tasks/other", task, "does not match"),
			Entry("no callback", "/tasks/t1", strings.Replace(task, `"https://cc:9023/internal/v4/tasks/t1/completed"`, `""`, 1), "completion_callback is required"),
			Entry("callback not a URL", "/tasks/t1", strings.Replace(task, `"https://cc:9023/internal/v4/tasks/t1/completed"`, `"cc:9023"`, 1), "not an http(s) URL"),
			Entry("callback not http, its credentials not repeated", "/tasks/t1", strings.Replace(task, `"https://cc:9023/internal/v4/tasks/t1/completed"`, `"ftp://user:s3cr3t@cc:9023/x"`, 1), `completion_callback "ftp://cc:9023/x" is not an http(s) URL`),
			Entry("no lifecycle", "/tasks/t1", strings.Replace(task, `,"lifecycle":{"docker_lifecycle":{"image":"busybox"}}`, "", 1), "lifecycle"),
			Entry("a guid with a path in it", "/tasks/..%2F..%2Fx", strings.Replace(task, `"guid":"t1"`, `"guid":"../../x"`, 1), `task guid "../../x"`),
			Entry("negative memory_mb", "/tasks/t1", strings.Replace(task, `"memory_mb":256`, `"memory_mb":-1`, 1), "memory_mb must be between 1 and"),
			Entry("negative disk_mb", "/tasks/t1", strings.Replace(task, `"disk_mb":1024`, `"disk_mb":-1`, 1), "disk_mb must be between 1 and"),
			Entry("memory_mb beyond CC's bound", "/tasks/t1", strings.Replace(task, `"memory_mb":256`, `"memory_mb":2147483648`, 1), "memory_mb must be between 1 and"),
			Entry("a MEMORY_LIMIT that is no limit", "/tasks/t1", strings.Replace(strings.Replace(task, `"memory_mb":256,`, ``, 1), `"name":"A"`, `"name":"MEMORY_LIMIT"`, 1), `MEMORY_LIMIT "1" is not a memory limit`),
			Entry("cpu_weight over 100", "/tasks/t1", strings.Replace(task, `"cpu_weight":3`, `"cpu_weight":101`, 1), "cpu_weight must be between 0 and 100"),
			Entry("a NUL in an environment value", "/tasks/t1", strings.Replace(task, `"value":"1"`, `"value":"\u0000"`, 1), "the value of A contains a NUL byte"),
			Entry("an invalid image reference", "/tasks/t1", strings.Replace(task, `"image":"busybox"`, `"image":"busybox:"`, 1), "is not an image reference"),
		)

		// CC's OPI task client sends no memory_mb, disk_mb or cpu_weight
		// (cloud_controller_ng lib/cloud_controller/opi/task_client.rb);
		// its TaskEnvironment sets MEMORY_LIMIT "<memory_in_mb>m" and
		// VCAP_APPLICATION limits.disk (CC's default_app_disk_in_mb).
		DescribeTable("limits a task CC sends without memory, disk or cpu",
			func(env string, memoryMB, diskMB int64) {
				body := `{"guid":"t1","name":"migrate","app_guid":"a","app_name":"dora","org_guid":"o","org_name":"acme","space_guid":"s","space_name":"dev",
					"completion_callback":"https://cc:9023/internal/v4/tasks/t1/completed","environment":` + env + `,
					"lifecycle":{"buildpack_lifecycle":{"droplet_guid":"d","droplet_hash":"h","start_command":"rake db:migrate"}}}`
				status, resp := do("POST", "/tasks/t1", body)
				Expect(status).To(Equal(http.StatusAccepted), resp)
				_, _, t := tasks.DesireArgsForCall(0)
				Expect(t.MemoryMB).To(Equal(memoryMB))
				Expect(t.DiskMB).To(Equal(diskMB))
				Expect(t.CPUWeight).To(BeZero())
			},
			Entry("memory from MEMORY_LIMIT, disk from VCAP_APPLICATION",
				`[{"name":"VCAP_APPLICATION","value":"{\"limits\":{\"mem\":256,\"disk\":4096,\"fds\":16384}}"},{"name":"MEMORY_LIMIT","value":"256m"}]`, int64(256), int64(4096)),
			Entry("MEMORY_LIMIT in gigabytes", `[{"name":"MEMORY_LIMIT","value":"2G"}]`, int64(2048), int64(2048)),
			Entry("the operator's defaults when the environment has neither", `[{"name":"A","value":"1"}]`, int64(512), int64(2048)),
			Entry("the operator's disk when VCAP_APPLICATION is not JSON", `[{"name":"VCAP_APPLICATION","value":"{"},{"name":"MEMORY_LIMIT","value":"64m"}]`, int64(64), int64(2048)),
			Entry("no environment at all", `null`, int64(512), int64(2048)),
		)

		It("keeps the limits a request does carry", func() {
			body := strings.Replace(task, `"name":"A"`, `"name":"MEMORY_LIMIT"`, 1)
			body = strings.Replace(body, `"value":"1"`, `"value":"64m"`, 1)
			status, resp := do("POST", "/tasks/t1", body)
			Expect(status).To(Equal(http.StatusAccepted), resp)
			_, _, t := tasks.DesireArgsForCall(0)
			Expect([]int64{t.MemoryMB, t.DiskMB, t.CPUWeight}).To(Equal([]int64{256, 1024, 3}))
		})

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

	// Each endpoint's failure in the shape its CC client reads
	// (cloud_controller_ng lib/cloud_controller/opi/*_client.rb).
	Describe("error bodies", func() {
		const stage = `{"app_guid":"a","completion_callback":"https://cc:9023/internal/v3/staging/s1/build_completed?start=true",
			"memory_mb":1024,"disk_mb":4096,"lifecycle":{"docker_lifecycle":{"image":"busybox"}}}`
		const task = `{"app_guid":"a","completion_callback":"https://cc:9023/internal/v4/tasks/t1/completed",
			"environment":[{"name":"MEMORY_LIMIT","value":"64m"}],"lifecycle":{"docker_lifecycle":{"image":"busybox"}}}`

		BeforeEach(func() {
			staging.StageReturns(errors.New("the API server is away"))
			staging.CancelReturns(errors.New("the API server is away"))
			tasks.DesireReturns(errors.New("the API server is away"))
			tasks.CancelReturns(errors.New("the API server is away"))
			tasks.GetReturns(nil, errors.New("the API server is away"))
			backend.UpdateReturns(errors.New("the API server is away"))
		})

		DescribeTable("a top-level message for CC's stager and task clients",
			func(method, path, body string, status int, message string) {
				code, resp := do(method, path, body)
				Expect(code).To(Equal(status))
				Expect(topLevelMessage(resp)).To(ContainSubstring(message))
			},
			Entry("POST /stage refused", "POST", "/stage/s1", `{}`, http.StatusBadRequest, "completion_callback is required"),
			Entry("POST /stage failing", "POST", "/stage/s1", stage, http.StatusInternalServerError, "the API server is away"),
			Entry("POST /stage malformed", "POST", "/stage/s1", `{`, http.StatusBadRequest, "malformed JSON body"),
			Entry("DELETE /stage failing", "DELETE", "/stage/s1", "", http.StatusInternalServerError, "the API server is away"),
			Entry("POST /tasks refused", "POST", "/tasks/t1", `{}`, http.StatusBadRequest, "completion_callback is required"),
			Entry("POST /tasks failing", "POST", "/tasks/t1", task, http.StatusInternalServerError, "the API server is away"),
			Entry("GET /tasks/{guid} failing", "GET", "/tasks/t1", "", http.StatusInternalServerError, "the API server is away"),
			Entry("DELETE /tasks/{guid} failing", "DELETE", "/tasks/t1", "", http.StatusInternalServerError, "the API server is away"),
		)

		It("a nested error.message for CC's LRP update, which reads only that", func() {
			code, resp := do("POST", "/apps/g-v", `{"guid":"g","version":"v","update":{"instances":2}}`)
			Expect(code).To(Equal(http.StatusInternalServerError))
			Expect(resp).To(MatchJSON(`{"error":{"message":"the API server is away"}}`))
		})
	})

	Describe("staging", func() {
		const docker = `{"app_guid":"a","completion_callback":"https://cc:9023/internal/v3/staging/s1/build_completed?start=true",
			"memory_mb":1024,"disk_mb":4096,"cpu_weight":50,"environment":[{"name":"LANG","value":"en_US.UTF-8"}],
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
				Expect(topLevelMessage(resp)).To(ContainSubstring(message))
				Expect(staging.StageCallCount()).To(BeZero())
			},
			Entry("no callback", strings.Replace(docker, `"https://cc:9023/internal/v3/staging/s1/build_completed?start=true"`, `""`, 1), "completion_callback"),
			Entry("no image", strings.Replace(docker, `"busybox"`, `""`, 1), "image is required"),
			Entry("buildpack without URIs", strings.Replace(docker, `"docker_lifecycle":{"image":"busybox"}`, `"buildpack_lifecycle":{}`, 1), "app_bits_download_uri"),
			Entry("no lifecycle", strings.Replace(docker, `"docker_lifecycle":{"image":"busybox"}`, ``, 1), "one of"),
			Entry("no memory_mb", strings.Replace(docker, `"memory_mb":1024`, `"memory_mb":0`, 1), "memory_mb must be between 1 and"),
			Entry("no disk_mb", strings.Replace(docker, `"disk_mb":4096`, `"disk_mb":0`, 1), "disk_mb must be between 1 and"),
			Entry("cpu_weight over 100", strings.Replace(docker, `"cpu_weight":50`, `"cpu_weight":1000000`, 1), "cpu_weight must be between 0 and 100"),
			Entry("a NUL in an environment value", strings.Replace(docker, `"en_US.UTF-8"`, `"en\u0000US"`, 1), "the value of LANG contains a NUL byte"),
			Entry("an invalid image reference", strings.Replace(docker, `"busybox"`, `"BusyBox"`, 1), "is not an image reference"),
		)

		It("rejects a staging guid that is not one plain path segment", func() {
			status, resp := do("POST", "/stage/a..b", docker)
			Expect(status).To(Equal(http.StatusBadRequest))
			Expect(topLevelMessage(resp)).To(ContainSubstring(`staging guid "a..b"`))
			Expect(staging.StageCallCount()).To(BeZero())
		})

		It("takes the uploader's completion and cancels", func() {
			status, _ := do("PUT", "/stage/s1/completed", `{"task_guid":"s1","failed":false,"result":"{}"}`)
			Expect(status).To(Equal(http.StatusOK))
			_, _, _, done := staging.CompleteArgsForCall(0)
			Expect(done.Result).To(Equal("{}"))
			status, _ = do("DELETE", "/stage/s1", "")
			Expect(status).To(Equal(http.StatusAccepted))
		})
	})
	Describe("environment size, under a body limit that lets it through", func() {
		var bigServer *httptest.Server
		BeforeEach(func() {
			bigServer = httptest.NewServer(bifrost.NewHandler(lagertest.NewTestLogger("test"),
				bifrost.Backends{LRPs: backend, Tasks: tasks, Staging: staging},
				bifrost.Limits{MaxRequestBodyBytes: 8 << 20, MaxInstances: 10, MaxInFlightRequests: 2}))
			DeferCleanup(bigServer.Close)
		})
		put := func(body string) (int, string) {
			req, err := http.NewRequest("PUT", bigServer.URL+"/apps/app-guid-v1", strings.NewReader(body))
			Expect(err).NotTo(HaveOccurred())
			resp, err := http.DefaultClient.Do(req)
			Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			data, err := io.ReadAll(resp.Body)
			Expect(err).NotTo(HaveOccurred())
			return resp.StatusCode, string(data)
		}
		withEnv := func(env string) string { return strings.Replace(validDesire, `"FOO": "bar"`, env, 1) }

		DescribeTable("rejects what no container could start with or etcd store, before the backend",
			func(env, message string) {
				status, resp := put(withEnv(env))
				Expect(status).To(Equal(http.StatusBadRequest))
				Expect(errorMessage(resp)).To(ContainSubstring(message))
				Expect(backend.DesireCallCount()).To(BeZero())
			},
			Entry("a 3 MiB value", `"BIG": "`+strings.Repeat("x", 3<<20)+`"`, "BIG is 3145732 bytes, more than the 131071 a process environment string may have"),
			Entry("one variable just over execve's limit", `"A": "`+strings.Repeat("x", 128*1024-2)+`"`, "A is 131072 bytes"),
			Entry("many variables over 1 MiB together", bigEnv(10, 120*1024), "bytes in all, more than the 1048576"),
		)

		It("takes a variable at execve's limit and a large environment under 1 MiB", func() {
			status, resp := put(withEnv(`"A": "` + strings.Repeat("x", 128*1024-3) + `"`))
			Expect(status).To(Equal(http.StatusAccepted), resp)
			status, resp = put(withEnv(bigEnv(8, 120*1024)))
			Expect(status).To(Equal(http.StatusAccepted), resp)
		})
	})

	Describe("the bound on requests in flight", func() {
		It("answers 503 with Retry-After beyond it, and serves again once a slot is free", func() {
			release := make(chan struct{})
			entered := make(chan struct{}, limits.MaxInFlightRequests)
			backend.GetStub = func(context.Context, string, string) (*models.DesiredLRP, error) {
				entered <- struct{}{}
				<-release
				return &models.DesiredLRP{ProcessGUID: "g-v"}, nil
			}
			done := make(chan int, limits.MaxInFlightRequests)
			for range limits.MaxInFlightRequests {
				go func() {
					defer GinkgoRecover()
					status, _ := do("GET", "/apps/g/v", "")
					done <- status
				}()
			}
			for range limits.MaxInFlightRequests {
				Eventually(entered).Should(Receive())
			}

			resp, err := http.Get(server.URL + "/apps/g/v")
			Expect(err).NotTo(HaveOccurred())
			body, err := io.ReadAll(resp.Body)
			Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable))
			Expect(resp.Header.Get("Retry-After")).To(Equal("1"))
			Expect(errorMessage(string(body))).To(ContainSubstring("maximum of 2 requests at once"))
			Expect(backend.GetCallCount()).To(Equal(limits.MaxInFlightRequests))

			close(release)
			for range limits.MaxInFlightRequests {
				Eventually(done).Should(Receive(Equal(http.StatusOK)))
			}
			status, _ := do("GET", "/apps/g/v", "")
			Expect(status).To(Equal(http.StatusOK))
		})
	})
})

// bigEnv is n environment entries of size bytes each, as JSON object members.
func bigEnv(n, size int) string {
	entries := make([]string, n)
	for i := range entries {
		entries[i] = fmt.Sprintf(`"V%d": "%s"`, i, strings.Repeat("x", size))
	}
	return strings.Join(entries, ", ")
}

// streamingLRPs yields its infos one at a time through one reused struct,
// as k8s.LRPClient does; List is the fake's (empty).
type streamingLRPs struct {
	*bifrostfakes.FakeLRPBackend
	infos []models.DesiredLRPSchedulingInfo
}

func (s *streamingLRPs) SchedulingInfos() iter.Seq[*models.DesiredLRPSchedulingInfo] {
	return func(yield func(*models.DesiredLRPSchedulingInfo) bool) {
		var info models.DesiredLRPSchedulingInfo
		for _, i := range s.infos {
			info = i
			if !yield(&info) {
				return
			}
		}
	}
}
