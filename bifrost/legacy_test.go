package bifrost_test

import (
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
	"github.com/iris-cf/iris/workload"
)

// Bodies of older Cloud Controllers, written as their source builds them
// (cloud_controller_ng lib/cloud_controller/opi/*.rb at the commit named).
var _ = Describe("older CC bodies", func() {
	var (
		lrps    *bifrostfakes.FakeLRPBackend
		staging *bifrostfakes.FakeStagingBackend
		server  *httptest.Server
	)

	BeforeEach(func() {
		lrps = &bifrostfakes.FakeLRPBackend{}
		staging = &bifrostfakes.FakeStagingBackend{}
		server = httptest.NewServer(bifrost.NewHandler(lagertest.NewTestLogger("test"),
			bifrost.Backends{LRPs: lrps, Tasks: &bifrostfakes.FakeTaskBackend{}, Staging: staging},
			bifrost.Limits{MaxRequestBodyBytes: 1 << 20, MaxInstances: 10, MaxInFlightRequests: 2, DefaultTaskMemoryMB: 512, DefaultTaskDiskMB: 2048}))
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

	const vcap = `{\"cf_api\":\"https://api.example.com\",\"limits\":{\"fds\":16384,\"mem\":256,\"disk\":1024},\"application_name\":\"dora\",\"application_uris\":[\"dora.example.com\"],\"name\":\"dora\",\"space_name\":\"dev\",\"space_id\":\"space-guid\",\"organization_id\":\"org-guid\",\"organization_name\":\"acme\",\"uris\":[\"dora.example.com\"],\"users\":null,\"process_id\":\"app-guid\",\"process_type\":\"web\",\"application_id\":\"app-guid\",\"version\":\"v1\",\"application_version\":\"v1\"}`

	// apps_client.rb desire_body at 741e5674e1 (2019-09-30): no lifecycle,
	// no disk_mb, no app/space/org fields; docker_image null for a
	// buildpack droplet.
	const desire2019 = `{"guid":"app-guid","version":"v1","process_guid":"app-guid-v1",
		"docker_image":null,"start_command":"bundle exec rackup",
		"environment":{"VCAP_APPLICATION":"` + vcap + `","MEMORY_LIMIT":"256m","PORT":"8080","VCAP_APP_PORT":"8080","VCAP_APP_HOST":"0.0.0.0"},
		"instances":2,"memory_mb":256,"cpu_weight":3,"droplet_hash":"d41d8cd98f00b204","droplet_guid":"droplet-guid",
		"health_check_type":"port","health_check_http_endpoint":null,"health_check_timeout_ms":0,
		"last_updated":"1569866707.0","volume_mounts":[],"ports":[8080],
		"routes":{"cf-router":[{"hostname":"dora.example.com","port":8080}]}}`

	It("runs a pre-2019-10 flat droplet as a buildpack droplet, with disk and names from VCAP_APPLICATION", func() {
		status, body := do("PUT", "/apps/app-guid-v1", desire2019)
		Expect(status).To(Equal(http.StatusAccepted), body)
		_, _, lrp := lrps.DesireArgsForCall(0)
		Expect(lrp.Process.Droplet).NotTo(BeNil())
		Expect(*lrp.Process.Droplet).To(Equal(workload.Droplet{GUID: "droplet-guid", Hash: "d41d8cd98f00b204", StartCommand: "bundle exec rackup"}))
		Expect(lrp.Process.Image).To(BeEmpty())
		Expect(lrp.Resources.DiskMB).To(BeEquivalentTo(1024))
		Expect([]string{lrp.AppName, lrp.AppGUID, lrp.SpaceName, lrp.SpaceGUID, lrp.OrgName, lrp.OrgGUID, lrp.ProcessType}).
			To(Equal([]string{"dora", "app-guid", "dev", "space-guid", "acme", "org-guid", "web"}))
	})

	It("runs a flat docker_image with start_command through a shell", func() {
		body := strings.NewReplacer(`"docker_image":null`, `"docker_image":"cloudfoundry/dora:latest"`,
			`"droplet_hash":"d41d8cd98f00b204","droplet_guid":"droplet-guid",`, `"droplet_hash":null,"droplet_guid":null,`).Replace(desire2019)
		status, resp := do("PUT", "/apps/app-guid-v1", body)
		Expect(status).To(Equal(http.StatusAccepted), resp)
		_, _, lrp := lrps.DesireArgsForCall(0)
		Expect(lrp.Process.Image).To(Equal("cloudfoundry/dora:latest"))
		Expect(lrp.Process.Command).To(Equal([]string{"/bin/sh", "-c", "bundle exec rackup"}))
	})

	It("keeps what a flat body does carry, and refuses one without any droplet as before", func() {
		body := strings.Replace(desire2019, `"memory_mb":256,`, `"memory_mb":256,"disk_mb":2048,`, 1)
		status, _ := do("PUT", "/apps/app-guid-v1", body)
		Expect(status).To(Equal(http.StatusAccepted))
		_, _, lrp := lrps.DesireArgsForCall(0)
		Expect(lrp.Resources.DiskMB).To(BeEquivalentTo(2048))

		body = strings.NewReplacer(`"droplet_hash":"d41d8cd98f00b204","droplet_guid":"droplet-guid",`, ``, `"memory_mb":256,`, `"memory_mb":256,"disk_mb":2048,`).Replace(desire2019)
		status, resp := do("PUT", "/apps/app-guid-v1", body)
		Expect(status).To(Equal(http.StatusBadRequest))
		Expect(resp).To(ContainSubstring("one of docker_lifecycle or buildpack_lifecycle is required"))
		Expect(lrps.DesireCallCount()).To(Equal(1))
	})

	It("prefers lifecycle over flat fields a body might also carry", func() {
		body := strings.Replace(desire2019, `"volume_mounts":[]`, `"volume_mounts":[],"disk_mb":2048,"lifecycle":{"docker_lifecycle":{"image":"busybox","command":[]}}`, 1)
		status, resp := do("PUT", "/apps/app-guid-v1", body)
		Expect(status).To(Equal(http.StatusAccepted), resp)
		_, _, lrp := lrps.DesireArgsForCall(0)
		Expect(lrp.Process.Image).To(Equal("busybox"))
		Expect(lrp.Process.Droplet).To(BeNil())
	})

	// stager_client.rb to_request at 741e5674e1 (2019-09-30): lifecycle_data,
	// no staging_guid, names or resources; CC's StagingEnvironmentBuilder
	// puts MEMORY_LIMIT and VCAP_APPLICATION (limits.disk) in the environment.
	const stage2019 = `{"app_guid":"app-guid",
		"environment":[{"name":"VCAP_APPLICATION","value":"` + vcap + `"},{"name":"MEMORY_LIMIT","value":"1024m"},{"name":"LANG","value":"en_US.UTF-8"}],
		"completion_callback":"https://internal_user:pa55@cloud-controller-ng.service.cf.internal:9023/internal/v3/staging/s1/build_completed?start=true",
		"lifecycle_data":{"droplet_upload_uri":"http://cc-uploader:9090/v1/droplet/s1?cc-droplet-upload-uri=http://cc/droplets/s1",
			"app_bits_download_uri":"http://cc/packages/p1","buildpacks":[{"name":"ruby_buildpack","key":"ruby-key","sha256":"abc","url":"http://cc/bp/ruby","skip_detect":false}]}}`

	It("stages a pre-2020-02 lifecycle_data body as a buildpack staging, resources from its environment", func() {
		status, resp := do("POST", "/stage/s1", stage2019)
		Expect(status).To(Equal(http.StatusAccepted), resp)
		_, _, guid, req := staging.StageArgsForCall(0)
		Expect(guid).To(Equal("s1"))
		Expect(req.Lifecycle.BuildpackLifecycle).NotTo(BeNil())
		Expect(req.Lifecycle.BuildpackLifecycle.AppBitsDownloadURI).To(Equal("http://cc/packages/p1"))
		Expect(req.Lifecycle.BuildpackLifecycle.Buildpacks).To(Equal([]models.Buildpack{{Name: "ruby_buildpack", Key: "ruby-key", SHA256: "abc", URL: "http://cc/bp/ruby"}}))
		Expect(req.MemoryMB).To(BeEquivalentTo(1024))
		Expect(req.DiskMB).To(BeEquivalentTo(1024))
		Expect([]string{req.AppName, req.SpaceName, req.SpaceGUID, req.OrgName, req.OrgGUID}).To(Equal([]string{"dora", "dev", "space-guid", "acme", "org-guid"}))
	})

	It("keeps the resources a 2020-01 lifecycle_data body carries", func() {
		body := strings.Replace(stage2019, `"app_guid":"app-guid",`, `"app_guid":"app-guid","app_name":"dora2","cpu_weight":50,"disk_mb":4096,"memory_mb":2048,`, 1)
		status, resp := do("POST", "/stage/s1", body)
		Expect(status).To(Equal(http.StatusAccepted), resp)
		_, _, _, req := staging.StageArgsForCall(0)
		Expect([]int64{req.MemoryMB, req.DiskMB, req.CPUWeight}).To(Equal([]int64{2048, 4096, 50}))
		Expect(req.AppName).To(Equal("dora2"))
	})

	DescribeTable("refuses lifecycle_data bodies that cannot be staged, in the message CC's stager reads",
		func(body, message string) {
			status, resp := do("POST", "/stage/s1", body)
			Expect(status).To(Equal(http.StatusBadRequest))
			Expect(resp).To(MatchJSON(`{"message":` + quote(message) + `}`))
			Expect(staging.StageCallCount()).To(BeZero())
		},
		Entry("both lifecycle and lifecycle_data", strings.Replace(stage2019, `"app_guid":"app-guid",`, `"app_guid":"app-guid","lifecycle":{"docker_lifecycle":{"image":"busybox"}},`, 1),
			"lifecycle and lifecycle_data: one or the other (CCs before 2020-02 send lifecycle_data, later ones lifecycle), not both"),
		Entry("a MEMORY_LIMIT that is no limit", strings.Replace(stage2019, `"1024m"`, `"1024"`, 1),
			`environment: MEMORY_LIMIT "1024" is not a memory limit CC sends (like "1024m", at most 2147483647m)`),
		Entry("no memory anywhere", strings.Replace(stage2019, `{"name":"MEMORY_LIMIT","value":"1024m"},`, ``, 1),
			"memory_mb must be between 1 and 2147483647, got 0 (Iris never runs a container without a memory limit)"),
	)
})

func quote(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}
