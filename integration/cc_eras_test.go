package integration_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/uuid"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// The requests each Cloud Controller that spoke OPI sends, replayed against
// the real Iris over mTLS as CC sends them, and the answers read as that
// CC's OPI clients read them. The bodies are JSON written from CC's source
// at the commit each entry names (cloud_controller_ng
// lib/cloud_controller/opi/*.rb), not from Iris's own types, so a change to
// Iris's models cannot silently change what is tested.

// ccEraIDs are one entry's fresh identifiers, and where its callbacks go.
type ccEraIDs struct {
	App, Version, Staging, Task, Droplet string
	// Image is a docker image in the suite's registry (docker staging
	// reads its config from there, never from the internet).
	Image string
	// Callback is CC's internal API as the fake CC serves it; Auth the
	// user:password@ CCs before 2023-01 put into staging callbacks.
	Callback, Auth string
}

// ccEra is what one CC sends.
type ccEra struct {
	// desire and update are the bodies of PUT and POST /apps/{process_guid}.
	desire, update string
	// stage is the body of POST /stage/{staging_guid}.
	stage string
	// task is the body of POST /tasks/{task_guid}; empty when that CC ran
	// no tasks over OPI (its task client came in 2020-04, 639963da38).
	task string
	// image the LRP's container runs (droplet images come from the suite's
	// lrp.droplet_registry); diskMB its disk limit.
	image  func(ids ccEraIDs) string
	diskMB int64
	// callbackCredentials: CCs before 2023-01 (83d860e004) put their
	// internal API user and password into the staging callback URL.
	callbackCredentials bool
}

// vcapApplication is VCAP_APPLICATION as CC's VarsBuilder builds it for a
// process (and, with the staging limits, for a staging), as the JSON string
// every era puts in the environment.
const ccVCAPApplication = `{\"cf_api\":\"https://api.example.com\",\"limits\":{\"fds\":16384,\"mem\":256,\"disk\":1024},\"application_name\":\"dora\",\"application_uris\":[\"dora.example.com\"],\"name\":\"dora\",\"space_name\":\"dev\",\"space_id\":\"space-guid\",\"organization_id\":\"org-guid\",\"organization_name\":\"acme\",\"uris\":[\"dora.example.com\"],\"users\":null,\"process_id\":\"{{.App}}\",\"process_type\":\"web\",\"application_id\":\"{{.App}}\",\"version\":\"{{.Version}}\",\"application_version\":\"{{.Version}}\"}`

// ccLRPEnvironment is apps_client.rb environment_variables: the running
// group, the app's own, VCAP_APPLICATION, MEMORY_LIMIT, the port variables.
const ccLRPEnvironment = `{"FOO":"bar","VCAP_APPLICATION":"` + ccVCAPApplication + `","MEMORY_LIMIT":"256m","VCAP_SERVICES":"{}","PORT":"8080","VCAP_APP_PORT":"8080","VCAP_APP_HOST":"0.0.0.0"}`

// ccStagingEnvironment is StagingEnvironmentBuilder's environment as
// OPI::EnvHash lists it, plus the buildpack lifecycle's LANG.
const ccStagingEnvironment = `[{"name":"VCAP_APPLICATION","value":"` + ccVCAPApplication + `"},{"name":"MEMORY_LIMIT","value":"1024m"},{"name":"VCAP_SERVICES","value":"{}"},{"name":"LANG","value":"en_US.UTF-8"}]`

// ccTaskEnvironment is TaskEnvironment as BbsEnvironmentBuilder lists it.
const ccTaskEnvironment = `[{"name":"VCAP_APPLICATION","value":"` + ccVCAPApplication + `"},{"name":"MEMORY_LIMIT","value":"512m"},{"name":"VCAP_SERVICES","value":"{}"},{"name":"LANG","value":"en_US.UTF-8"}]`

// The update body is the same in every era: update_body in apps_client.rb
// (from 2018-11, 8d3b066030) and apps_rest_client.rb.
const ccUpdate = `{"guid":"{{.App}}","version":"{{.Version}}","update":{"instances":3,
	"routes":{"cf-router":[{"hostname":"dora.example.com","port":8080},{"hostname":"dora.apps.example.com","port":8080}]},
	"annotation":"1700000100.5"}}`

// ccRunningSecurityGroups are EgressRules#running_protobuf_rules, as the
// protobuf messages serialise (lowerCamel, defaults left out).
const ccRunningSecurityGroups = `[{"protocol":"all","destinations":["0.0.0.0-9.255.255.255"]},{"protocol":"tcp","destinations":["10.0.0.0/8"],"ports":[443]},{"protocol":"tcp","destinations":["10.0.0.0/8"],"portRange":{"start":8000,"end":8080}}]`

var ccEras = []TableEntry{
	// 2019-09: cloud_controller_ng 741e5674e1 (2019-09-30), the last commit
	// before lifecycles (9b4539cb42). apps_client.rb desire_body: the
	// droplet flat, docker_image null for a buildpack droplet, no disk_mb,
	// process_type, app, space or org fields. stager_client.rb to_request:
	// lifecycle_data, no staging_guid, names or resources (docker stagings
	// CC completed itself). No task client.
	Entry("2019-09, flat droplet and lifecycle_data (741e5674e1)", ccEra{
		desire: `{"guid":"{{.App}}","version":"{{.Version}}","process_guid":"{{.App}}-{{.Version}}",
			"docker_image":null,"start_command":"bundle exec rackup config.ru -p $PORT",
			"environment":` + ccLRPEnvironment + `,
			"instances":2,"memory_mb":256,"cpu_weight":3,"droplet_hash":"{{.Droplet}}","droplet_guid":"{{.App}}",
			"health_check_type":"port","health_check_http_endpoint":null,"health_check_timeout_ms":0,
			"last_updated":"1700000000.25","volume_mounts":[],"ports":[8080],
			"routes":{"cf-router":[{"hostname":"dora.example.com","port":8080}]}}`,
		update: ccUpdate,
		stage: `{"app_guid":"{{.App}}","environment":` + ccStagingEnvironment + `,
			"completion_callback":"{{.Callback}}",
			"lifecycle_data":{"droplet_upload_uri":"http://cc-uploader.service.cf.internal:9090/v1/droplet/{{.Staging}}?cc-droplet-upload-uri=http://cloud-controller-ng.service.cf.internal:9022/internal/v4/droplets/{{.Staging}}/upload",
				"app_bits_download_uri":"http://blobstore/packages/{{.App}}",
				"buildpacks":[{"name":"ruby_buildpack","key":"ruby-key","sha256":"abc123","url":"http://blobstore/buildpacks/ruby","skip_detect":false}]}}`,
		image:               func(ids ccEraIDs) string { return "127.0.0.1:5000/cloudfoundry/" + ids.App + ":" + ids.Droplet },
		diskMB:              1024, // VCAP_APPLICATION limits.disk: this CC sent no disk_mb
		callbackCredentials: true,
	}),
	// 2020-01: cloud_controller_ng b6e450952e (2020-01-22), the last
	// lifecycle_data staging before 2c20558be8 (2020-02-12). apps_client.rb
	// desire_body with lifecycle (9b4539cb42), the fields of 407dd58502 and
	// user_defined_annotations (e851f4767e); stager_client.rb with
	// resources (069469178d) and names (9d49a8a090). No task client.
	Entry("2020-01, lifecycle and lifecycle_data (b6e450952e)", ccEra{
		desire: `{"guid":"{{.App}}","version":"{{.Version}}","process_guid":"{{.App}}-{{.Version}}","process_type":"web",
			"app_guid":"{{.App}}","app_name":"dora","space_guid":"space-guid","space_name":"dev","organization_guid":"org-guid","organization_name":"acme",
			"environment":` + ccLRPEnvironment + `,"egress_rules":` + ccRunningSecurityGroups + `,"placement_tags":[],
			"instances":2,"memory_mb":256,"disk_mb":2048,"cpu_weight":3,
			"health_check_type":"http","health_check_http_endpoint":"/health","health_check_timeout_ms":0,"start_timeout_ms":60000,
			"last_updated":"1700000000.25","volume_mounts":[],"ports":[8080],
			"routes":{"cf-router":[{"hostname":"dora.example.com","port":8080}]},
			"lifecycle":{"buildpack_lifecycle":{"start_command":"bundle exec rackup config.ru -p $PORT","droplet_hash":"{{.Droplet}}","droplet_guid":"{{.App}}"}},
			"user_defined_annotations":{"prometheus.io/scrape":"true"}}`,
		update: ccUpdate,
		stage: `{"app_guid":"{{.App}}","app_name":"dora","staging_guid":"{{.Staging}}","org_name":"acme","org_guid":"org-guid","space_name":"dev","space_guid":"space-guid",
			"environment":` + ccStagingEnvironment + `,"completion_callback":"{{.Callback}}",
			"lifecycle_data":{"droplet_upload_uri":"http://cc-uploader.service.cf.internal:9090/v1/droplet/{{.Staging}}?cc-droplet-upload-uri=http://cloud-controller-ng.service.cf.internal:9022/internal/v4/droplets/{{.Staging}}/upload",
				"app_bits_download_uri":"http://blobstore/packages/{{.App}}",
				"buildpacks":[{"name":"ruby_buildpack","key":"ruby-key","sha256":"abc123","url":"http://blobstore/buildpacks/ruby","skip_detect":false}]},
			"cpu_weight":50,"disk_mb":4096,"memory_mb":1024}`,
		image:               func(ids ccEraIDs) string { return "127.0.0.1:5000/cloudfoundry/" + ids.App + ":" + ids.Droplet },
		diskMB:              2048,
		callbackCredentials: true,
	}),
	// 2021-02: cloud_controller_ng 7becaa7144 (2021-02-16), the last pure
	// REST apps client. apps_client.rb DockerLifecycle (command through
	// /bin/sh -c, registry credentials); stager_client.rb docker_lifecycle
	// and buildpack_lifecycle with the cache fields (e544619248); callback
	// with CC's internal user and password; task_client.rb to_request
	// (no resources) with TaskCompletionCallbackGenerator's URL.
	Entry("2021-02, docker app, docker staging, tasks (7becaa7144)", ccEra{
		desire: `{"guid":"{{.App}}","version":"{{.Version}}","process_guid":"{{.App}}-{{.Version}}","process_type":"web",
			"app_guid":"{{.App}}","app_name":"dora","space_guid":"space-guid","space_name":"dev","organization_guid":"org-guid","organization_name":"acme",
			"environment":` + ccLRPEnvironment + `,"egress_rules":` + ccRunningSecurityGroups + `,"placement_tags":[],
			"instances":2,"memory_mb":256,"disk_mb":2048,"cpu_weight":3,
			"health_check_type":"port","health_check_http_endpoint":null,"health_check_timeout_ms":0,"start_timeout_ms":60000,
			"last_updated":"1700000000.25","volume_mounts":[],"ports":[8080],
			"routes":{"cf-router":[{"hostname":"dora.example.com","port":8080}]},
			"lifecycle":{"docker_lifecycle":{"command":["/bin/sh","-c","bundle exec rackup"],"image":"cloudfoundry/dora:latest","registry_username":"user","registry_password":"pass"}},
			"user_defined_annotations":{}}`,
		update: ccUpdate,
		stage: `{"app_guid":"{{.App}}","app_name":"dora","staging_guid":"{{.Staging}}","org_name":"acme","org_guid":"org-guid","space_name":"dev","space_guid":"space-guid",
			"environment":` + ccStagingEnvironment + `,"completion_callback":"{{.Callback}}",
			"lifecycle":{"buildpack_lifecycle":{"droplet_upload_uri":"http://cc-uploader.service.cf.internal:9090/v1/droplet/{{.Staging}}?cc-droplet-upload-uri=http://cloud-controller-ng.service.cf.internal:9022/internal/v4/droplets/{{.Staging}}/upload",
				"app_bits_download_uri":"http://blobstore/packages/{{.App}}",
				"buildpacks":[{"name":"ruby_buildpack","key":"ruby-key","sha256":"abc123","url":"http://blobstore/buildpacks/ruby","skip_detect":false}],
				"buildpack_cache_download_uri":null,"buildpack_cache_checksum":null,"buildpack_cache_checksum_algorithm":"sha256",
				"buildpack_cache_upload_uri":"http://cc-uploader.service.cf.internal:9090/v1/build_artifacts/{{.Staging}}?cc-build-artifacts-upload-uri=x&timeout=900"}},
			"cpu_weight":50,"disk_mb":4096,"memory_mb":1024}`,
		task: `{"name":"migrate","app_guid":"{{.App}}","app_name":"dora","org_guid":"org-guid","org_name":"acme","space_guid":"space-guid","space_name":"dev",
			"environment":` + ccTaskEnvironment + `,"completion_callback":"{{.Callback}}",
			"lifecycle":{"buildpack_lifecycle":{"droplet_hash":"{{.Droplet}}","droplet_guid":"{{.App}}","start_command":"rake db:migrate"}}}`,
		image:               func(ids ccEraIDs) string { return "cloudfoundry/dora:latest" },
		diskMB:              2048,
		callbackCredentials: true,
	}),
	// 2022-08: cloud_controller_ng afef7c89e9 (2022-08-22), the CC that
	// reads log_rate from the gauges. apps_rest_client.rb desire_body
	// (lifecycles docker and kpack only, e717425fbd: a kpack droplet is a
	// docker_lifecycle through /cnb/lifecycle/launcher, without registry
	// fields); routes keyed by a symbol, serialised the same; callback
	// still with credentials (removed by 83d860e004, 2023-01).
	Entry("2022-08, kpack app, buildpack staging, docker task (afef7c89e9)", ccEra{
		desire: `{"guid":"{{.App}}","version":"{{.Version}}","process_guid":"{{.App}}-{{.Version}}","process_type":"web",
			"app_guid":"{{.App}}","app_name":"dora","space_guid":"space-guid","space_name":"dev","organization_guid":"org-guid","organization_name":"acme",
			"environment":` + ccLRPEnvironment + `,"egress_rules":` + ccRunningSecurityGroups + `,"placement_tags":[],
			"instances":2,"memory_mb":256,"disk_mb":2048,"cpu_weight":3,
			"health_check_type":"process","health_check_http_endpoint":null,"health_check_timeout_ms":0,"start_timeout_ms":60000,
			"last_updated":"1700000000.25","volume_mounts":[],"ports":[8080],
			"routes":{"cf-router":[{"hostname":"dora.example.com","port":8080}]},
			"lifecycle":{"docker_lifecycle":{"command":["/cnb/lifecycle/launcher","bundle exec rackup"],"image":"registry.example.com/kpack/dora@sha256:` + strings.Repeat("a", 64) + `"}},
			"user_defined_annotations":{}}`,
		update: ccUpdate,
		stage: `{"app_guid":"{{.App}}","app_name":"dora","staging_guid":"{{.Staging}}","org_name":"acme","org_guid":"org-guid","space_name":"dev","space_guid":"space-guid",
			"environment":` + ccStagingEnvironment + `,"completion_callback":"{{.Callback}}",
			"lifecycle":{"buildpack_lifecycle":{"droplet_upload_uri":"http://cc-uploader.service.cf.internal:9090/v1/droplet/{{.Staging}}?cc-droplet-upload-uri=http://cloud-controller-ng.service.cf.internal:9022/internal/v4/droplets/{{.Staging}}/upload",
				"app_bits_download_uri":"http://blobstore/packages/{{.App}}",
				"buildpacks":[{"name":"ruby_buildpack","key":"ruby-key","sha256":"abc123","url":"http://blobstore/buildpacks/ruby","skip_detect":false}],
				"buildpack_cache_download_uri":"http://blobstore/cache/{{.App}}","buildpack_cache_checksum":"def456","buildpack_cache_checksum_algorithm":"sha256",
				"buildpack_cache_upload_uri":"http://cc-uploader.service.cf.internal:9090/v1/build_artifacts/{{.Staging}}?cc-build-artifacts-upload-uri=x&timeout=900"}},
			"cpu_weight":50,"disk_mb":4096,"memory_mb":1024}`,
		task: `{"name":"migrate","app_guid":"{{.App}}","app_name":"dora","org_guid":"org-guid","org_name":"acme","space_guid":"space-guid","space_name":"dev",
			"environment":` + ccTaskEnvironment + `,"completion_callback":"{{.Callback}}",
			"lifecycle":{"docker_lifecycle":{"image":"cloudfoundry/dora:latest","command":["/bin/sh","-c","rake db:migrate"],"registry_username":null,"registry_password":null}}}`,
		image:               func(ids ccEraIDs) string { return "registry.example.com/kpack/dora@sha256:" + strings.Repeat("a", 64) },
		diskMB:              2048,
		callbackCredentials: true,
	}),
	// 2023-07: cloud_controller_ng 9b783b0126 (2023-07-18), the last before
	// OPI was removed (640009b846). As 2022-08, but the staging callback
	// carries no credentials (83d860e004) and space_guid comes from the
	// app's column (the same value).
	Entry("2023-07, docker app, docker staging, buildpack task (9b783b0126)", ccEra{
		desire: `{"guid":"{{.App}}","version":"{{.Version}}","process_guid":"{{.App}}-{{.Version}}","process_type":"worker",
			"app_guid":"{{.App}}","app_name":"dora","space_guid":"space-guid","space_name":"dev","organization_guid":"org-guid","organization_name":"acme",
			"environment":` + ccLRPEnvironment + `,"egress_rules":[],"placement_tags":[],
			"instances":2,"memory_mb":256,"disk_mb":2048,"cpu_weight":3,
			"health_check_type":"port","health_check_http_endpoint":null,"health_check_timeout_ms":30000,"start_timeout_ms":30000,
			"last_updated":"1700000000.25","volume_mounts":[],"ports":[8080,9090],
			"routes":{"cf-router":[{"hostname":"dora.example.com","port":8080},{"hostname":"metrics.dora.example.com","port":9090}]},
			"lifecycle":{"docker_lifecycle":{"command":[],"image":"cloudfoundry/dora:latest","registry_username":null,"registry_password":null}},
			"user_defined_annotations":{"prometheus.io/port":"9090"}}`,
		update: ccUpdate,
		stage: `{"app_guid":"{{.App}}","app_name":"dora","staging_guid":"{{.Staging}}","org_name":"acme","org_guid":"org-guid","space_name":"dev","space_guid":"space-guid",
			"environment":[{"name":"VCAP_APPLICATION","value":"` + ccVCAPApplication + `"},{"name":"MEMORY_LIMIT","value":"1024m"}],"completion_callback":"{{.Callback}}",
			"lifecycle":{"docker_lifecycle":{"image":"{{.Image}}","registry_username":null,"registry_password":null}},
			"cpu_weight":50,"disk_mb":4096,"memory_mb":1024}`,
		task: `{"name":"migrate","app_guid":"{{.App}}","app_name":"dora","org_guid":"org-guid","org_name":"acme","space_guid":"space-guid","space_name":"dev",
			"environment":` + ccTaskEnvironment + `,"completion_callback":"{{.Callback}}",
			"lifecycle":{"buildpack_lifecycle":{"droplet_hash":"{{.Droplet}}","droplet_guid":"{{.App}}","start_command":"rake db:migrate"}}}`,
		image:               func(ids ccEraIDs) string { return "cloudfoundry/dora:latest" },
		diskMB:              2048,
		callbackCredentials: false,
	}),
}

// fillEra puts ids into a body; JSON literals stay readable as CC's.
func fillEra(body string, ids ccEraIDs) string {
	return strings.NewReplacer("{{.App}}", ids.App, "{{.Version}}", ids.Version, "{{.Staging}}", ids.Staging,
		"{{.Task}}", ids.Task, "{{.Droplet}}", ids.Droplet, "{{.Image}}", ids.Image, "{{.Callback}}", ids.Callback).Replace(body)
}

// asCC sends a request over mTLS with CC's client certificate, as CC's OPI
// clients do (BaseClient, 2068e57820), and returns the status and the body
// parsed as CC parses it (JSON.parse; nil for an empty body).
func asCC(g Gomega, method, path, body string) (int, any) {
	req, err := http.NewRequest(method, irisTLSURL+path, bytes.NewBufferString(body))
	g.Expect(err).NotTo(HaveOccurred())
	resp, err := mtlsClient(clientLeaf).Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	var parsed any
	if len(bytes.TrimSpace(data)) > 0 {
		g.Expect(json.Unmarshal(data, &parsed)).To(Succeed(), "CC would fail to parse %q", data)
	}
	return resp.StatusCode, parsed
}

// ccField walks a parsed body as CC's recursive_ostruct does; a missing
// step fails the spec (CC would raise NoMethodError on nil).
func ccField(g Gomega, body any, path ...string) any {
	for _, key := range path {
		object, ok := body.(map[string]any)
		g.Expect(ok).To(BeTrue(), "CC reads %q of %v", key, body)
		g.Expect(object).To(HaveKey(key))
		body = object[key]
	}
	return body
}

var _ = Describe("Every CC that spoke OPI, replayed", func() {
	DescribeTable("is answered as that CC reads the answers",
		func(era ccEra) {
			ids := ccEraIDs{App: uuid.NewString(), Version: uuid.NewString(), Staging: uuid.NewString(), Task: uuid.NewString(), Droplet: "3f1d0e7c9a2b"}
			processGUID := ids.App + "-" + ids.Version

			By("desire: CC checks nothing, Iris runs it")
			status, _ := asCC(Default, "PUT", "/apps/"+processGUID, fillEra(era.desire, ids))
			Expect(status).To(Equal(http.StatusAccepted))
			lrp := newLRP(1)
			lrp.GUID, lrp.Version = ids.App, ids.Version
			DeferCleanup(func() { asCC(Default, "PUT", "/apps/"+ids.App+"/"+ids.Version+"/stop", "") })
			sts := theStatefulSet(lrp)
			Expect(*sts.Spec.Replicas).To(BeEquivalentTo(2))
			app := sts.Spec.Template.Spec.Containers[0]
			Expect(app.Image).To(Equal(era.image(ids)))
			Expect(app.Resources.Limits.StorageEphemeral().Value()).To(Equal(era.diskMB * 1024 * 1024))
			Expect(app.Resources.Limits.Memory().Value()).To(Equal(int64(256 * 1024 * 1024)))

			By("get_app reads desired_lrp; fetch_scheduling_infos the annotation it compares with updated_at")
			status, body := asCC(Default, "GET", "/apps/"+ids.App+"/"+ids.Version, "")
			Expect(status).To(Equal(http.StatusOK))
			Expect(ccField(Default, body, "desired_lrp", "process_guid")).To(Equal(processGUID))
			status, body = asCC(Default, "GET", "/apps", "")
			Expect(status).To(Equal(http.StatusOK))
			infos, ok := ccField(Default, body, "desired_lrp_scheduling_infos").([]any)
			Expect(ok).To(BeTrue())
			Expect(infos).To(ContainElement(And(
				HaveKeyWithValue("desired_lrp_key", HaveKeyWithValue("process_guid", processGUID)),
				HaveKeyWithValue("annotation", "1700000000.25"))))

			By("lrp_instances: no error, the instances CC maps")
			Eventually(func(g Gomega) []any {
				status, body := asCC(g, "GET", "/apps/"+ids.App+"/"+ids.Version+"/instances", "")
				g.Expect(status).To(Equal(http.StatusOK))
				g.Expect(body).NotTo(HaveKey("error"), "CC raises on any error")
				g.Expect(ccField(g, body, "process_guid")).To(Equal(processGUID))
				instances, _ := ccField(g, body, "instances").([]any)
				for _, inst := range instances {
					g.Expect(inst).To(And(HaveKey("index"), HaveKey("since"), HaveKeyWithValue("state", BeElementOf("RUNNING", "CLAIMED", "UNCLAIMED"))))
				}
				return instances
			}, time.Minute).Should(HaveLen(2))

			By("update_app: 200 only")
			status, _ = asCC(Default, "POST", "/apps/"+processGUID, fillEra(era.update, ids))
			Expect(status).To(Equal(http.StatusOK))
			Eventually(func(g Gomega) int32 { return *theStatefulSetWith(g, lrp).Spec.Replicas }).Should(BeEquivalentTo(3))
			status, body = asCC(Default, "POST", "/apps/"+ids.App+"-0-"+ids.Version, strings.Replace(fillEra(era.update, ids), ids.Version, "0-"+ids.Version, 1))
			Expect(status).To(Equal(http.StatusNotFound))
			Expect(ccField(Default, body, "error", "message")).To(ContainSubstring("not found"), "update_app raises RunnerError with error.message")

			By("stage: 202; a refusal in the top-level message the stager reads")
			callback := cc.URL() + "/internal/v3/staging/" + ids.Staging + "/build_completed?start=true"
			ids.Callback = callback
			if era.callbackCredentials {
				ids.Callback = strings.Replace(callback, "https://", "https://"+ccInternalAuth+"@", 1)
			}
			ids.Image = oci.push("eras/dora:"+ids.Staging[:8], v1.Config{Cmd: []string{"/dora"}, ExposedPorts: map[string]struct{}{"8080/tcp": {}}})
			status, body = asCC(Default, "POST", "/stage/"+ids.Staging, fillEra(era.stage, ids))
			Expect(status).To(Equal(http.StatusAccepted), "%v", body)
			DeferCleanup(func() { asCC(Default, "DELETE", "/stage/"+ids.Staging, "") })
			Eventually(func(g Gomega) int { return len(stagingJobsWith(g, ids.Staging)) }).Should(Equal(1))
			if strings.Contains(era.stage, `"docker_lifecycle"`) {
				callback := oneStagingCallback(ids.Staging)
				Expect(callback.Error).To(BeNil())
				Expect(string(callback.Result)).To(ContainSubstring(`"lifecycle_type":"docker"`))
			}
			refused := strings.Replace(fillEra(era.stage, ids), `"completion_callback":"`+ids.Callback+`"`, `"completion_callback":"cc:9023"`, 1)
			status, body = asCC(Default, "POST", "/stage/"+uuid.NewString(), refused)
			Expect(status).To(Equal(http.StatusBadRequest))
			Expect(ccField(Default, body, "message")).To(ContainSubstring("completion_callback"))

			if era.task != "" {
				By("desire_task: 202; fetch_task and fetch_tasks read guid; cancel_task")
				ids.Callback = cc.URL() + "/internal/v4/tasks/" + ids.Task + "/completed"
				status, body = asCC(Default, "POST", "/tasks/"+ids.Task, fillEra(era.task, ids))
				Expect(status).To(Equal(http.StatusAccepted), "%v", body)
				status, body = asCC(Default, "GET", "/tasks/"+ids.Task, "")
				Expect(status).To(Equal(http.StatusOK))
				Expect(ccField(Default, body, "guid")).To(Equal(ids.Task))
				status, body = asCC(Default, "GET", "/tasks", "")
				Expect(status).To(Equal(http.StatusOK))
				Expect(body).To(ContainElement(HaveKeyWithValue("guid", ids.Task)))
				status, _ = asCC(Default, "DELETE", "/tasks/"+ids.Task, "")
				Expect(status).To(BeNumerically("<=", 400), "cancel_task raises above 400")
				status, body = asCC(Default, "POST", "/tasks/"+uuid.NewString(), strings.Replace(fillEra(era.task, ids), `"MEMORY_LIMIT","value":"512m"`, `"MEMORY_LIMIT","value":"lots"`, 1))
				Expect(status).To(Equal(http.StatusBadRequest))
				Expect(ccField(Default, body, "message")).To(ContainSubstring("MEMORY_LIMIT"), "desire_task raises RunnerError with message")
				status, _ = asCC(Default, "GET", "/tasks/"+uuid.NewString(), "")
				Expect(status).To(Equal(http.StatusNotFound), "fetch_task returns nil on 404")
			}

			By("stop_app, then get_app's 404 (nil) and the stopped process's instances error CC calls include?(\"not found\") on")
			status, _ = asCC(Default, "PUT", "/apps/"+ids.App+"/"+ids.Version+"/stop", "")
			Expect(status).To(BeNumerically("<", 300))
			Eventually(func(g Gomega) int {
				status, _ := asCC(g, "GET", "/apps/"+ids.App+"/"+ids.Version, "")
				return status
			}, time.Minute).Should(Equal(http.StatusNotFound))
			_, body = asCC(Default, "GET", "/apps/"+ids.App+"/"+ids.Version+"/instances", "")
			message, isString := ccField(Default, body, "error").(string)
			Expect(isString).To(BeTrue(), "error must be a string: %v", body)
			Expect(message).To(ContainSubstring("not found"))
			Expect(fmt.Sprint(ccField(Default, body, "instances"))).To(Equal("[]"))
			Eventually(func(g Gomega) int { return len(statefulSetsWith(g, namespace, lrp)) }, time.Minute).Should(BeZero())
		},
		ccEras,
	)
})
