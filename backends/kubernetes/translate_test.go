package kubernetes_test

import (
	"encoding/json"

	"code.cloudfoundry.org/bbs/models"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	bbsk8s "github.com/iris-cf/iris/backends/kubernetes"
	"github.com/iris-cf/iris/workload"
)

const processGUID = appGUID + "-0f5d6b4c-2a4e-4d5e-9c1a-8b7e6f5d4c3b"

var _ = Describe("Translate", func() {
	var (
		lrp  *models.DesiredLRP
		opts bbsk8s.TranslateOptions
	)

	BeforeEach(func() {
		lrp = ccDockerLRP(processGUID, "")
		opts = bbsk8s.TranslateOptions{}
		// The fixture is what BBS itself accepts.
		Expect(lrp.Validate()).To(Succeed())
	})

	translate := func() *workload.DesiredLRP {
		w, err := bbsk8s.Translate(lrp, opts)
		Expect(err).NotTo(HaveOccurred())
		Expect(w.Validate()).To(Succeed())
		return w
	}

	It("takes identity, names and guids from the process guid and the metric tags", func() {
		w := translate()
		Expect(w.ProcessGUID).To(Equal(processGUID))
		Expect(w.GUID).To(Equal(appGUID))
		Expect(w.Version).To(Equal("0f5d6b4c-2a4e-4d5e-9c1a-8b7e6f5d4c3b"))
		Expect(w.GUID + "-" + w.Version).To(Equal(processGUID))
		Expect(w.AppGUID).To(Equal(appGUID))
		Expect(w.AppName).To(Equal("dora"))
		Expect(w.SpaceGUID).To(Equal(spaceGUID))
		Expect(w.SpaceName).To(Equal("dev"))
		Expect(w.OrgGUID).To(Equal(orgGUID))
		Expect(w.OrgName).To(Equal("acme"))
		Expect(w.ProcessType).To(Equal("web"))
		Expect(w.Annotation).To(Equal("1764583200.0"))
		Expect(w.Instances).To(BeEquivalentTo(2))
	})

	It("keeps the static metric tags and drops the dynamic ones", func() {
		w := translate()
		Expect(w.MetricTags).To(HaveKeyWithValue("space_id", spaceGUID))
		Expect(w.MetricTags).To(HaveKeyWithValue("organization_id", orgGUID))
		Expect(w.MetricTags).To(HaveKeyWithValue("app_id", appGUID))
		Expect(w.MetricTags).To(HaveKeyWithValue("source_id", appGUID))
		Expect(w.MetricTags).NotTo(HaveKey("instance_id"))
		Expect(w.MetricTags).NotTo(HaveKey("process_instance_id"))
	})

	DescribeTable("docker root_fs",
		func(rootFS, image string) {
			lrp.RootFs = rootFS
			Expect(translate().Process.Image).To(Equal(image))
		},
		Entry("registry with port and the tag after '#'", "docker://registry.example:5000/team/app#1.25", "registry.example:5000/team/app:1.25"),
		Entry("Docker Hub, no tag", "docker:///cloudfoundry/grace", "cloudfoundry/grace"),
		Entry("Docker Hub with a tag", "docker:///library/nginx#1.27-alpine", "library/nginx:1.27-alpine"),
	)

	It("passes the image credentials on", func() {
		Expect(translate().RegistryCredentials).To(Equal(&workload.RegistryCredentials{Username: "robot", Password: "s3cret"}))
	})

	It("runs the image's own entrypoint when CC's start command is empty", func() {
		p := translate().Process
		Expect(p.Command).To(BeEmpty())
		Expect(p.Args).To(BeEmpty())
		Expect(p.User).To(Equal("root"))
	})

	It("runs CC's start command in a shell, as the launcher does", func() {
		lrp = ccDockerLRP(processGUID, "bin/server --port $PORT")
		Expect(translate().Process.Command).To(Equal([]string{"/bin/sh", "-c", "bin/server --port $PORT"}))
	})

	It("runs any other run action as it is", func() {
		lrp.Action = models.WrapAction(&models.RunAction{Path: "/bin/app", Args: []string{"-v"}, Dir: "/srv", User: "vcap"})
		p := translate().Process
		Expect(p.Command).To(Equal([]string{"/bin/app", "-v"}))
		Expect(p.WorkingDir).To(Equal("/srv"))
	})

	It("takes the environment from the run action", func() {
		Expect(translate().Env).To(Equal(map[string]string{"PORT": "8080", "VCAP_APPLICATION": `{"name":"dora"}`}))
	})

	It("maps ports, resources and placement", func() {
		w := translate()
		Expect(w.Ports).To(Equal([]int32{8080, 2222}))
		Expect(w.Resources).To(Equal(workload.Resources{MemoryMB: 256, DiskMB: 1024, CPUWeight: 8, MaxPids: 1024}), "log_rate_limit -1 is unlimited")
		Expect(w.PlacementTags).To(Equal([]string{"segment-a"}))
	})

	It("keeps a log rate limit, 0 included (Diego then ships no app log line)", func() {
		lrp.LogRateLimit = &models.LogRateLimit{BytesPerSecond: 0}
		Expect(translate().Resources.LogRateLimit).To(HaveValue(BeEquivalentTo(0)))
		lrp.LogRateLimit = &models.LogRateLimit{BytesPerSecond: 4096}
		Expect(translate().Resources.LogRateLimit).To(HaveValue(BeEquivalentTo(4096)))
		lrp.LogRateLimit = nil
		Expect(translate().Resources.LogRateLimit).To(BeNil())
	})

	It("keeps every router's routes verbatim", func() {
		w := translate()
		Expect(w.Routes).To(HaveLen(4))
		Expect(string(w.Routes["cf-router"])).To(Equal(string(*(*lrp.Routes)["cf-router"])))
		Expect(string(w.Routes["diego-ssh"])).To(MatchJSON(`{"container_port":2222,"host_fingerprint":"aa:bb","private_key":"k"}`))
		Expect(string(w.Routes["tcp-router"])).To(Equal("[]"))
	})

	It("maps the check definition to liveness and readiness checks, and start_timeout_ms to the startup", func() {
		checks := translate().HealthChecks
		Expect(checks.Liveness).To(Equal(&workload.HealthCheck{Type: workload.CheckTCP, Port: 8080, TimeoutMs: 2000}))
		Expect(checks.Readiness).To(Equal(&workload.HealthCheck{Type: workload.CheckTCP, Port: 8080, IntervalMs: 5000}))
		Expect(checks.StartTimeoutMs).To(BeEquivalentTo(90000))
	})

	It("maps an HTTP check", func() {
		lrp.CheckDefinition = &models.CheckDefinition{Checks: []*models.Check{{HttpCheck: &models.HTTPCheck{Port: 8080, Path: "/health", RequestTimeoutMs: 1500, IntervalMs: 10000}}}}
		checks := translate().HealthChecks
		Expect(checks.Liveness).To(Equal(&workload.HealthCheck{Type: workload.CheckHTTP, Port: 8080, Path: "/health", TimeoutMs: 1500, IntervalMs: 10000}))
		Expect(checks.Readiness).To(BeNil())
	})

	DescribeTable("without a check definition, reads the monitor",
		func(args []string, want *workload.HealthCheck) {
			lrp.CheckDefinition = nil
			lrp.Monitor = models.WrapAction(models.Timeout(models.Parallel(&models.RunAction{Path: "/tmp/lifecycle/healthcheck", Args: args, User: "vcap"}), 600000000000))
			Expect(translate().HealthChecks.Liveness).To(Equal(want))
		},
		Entry("port", []string{"-port=8080"}, &workload.HealthCheck{Type: workload.CheckTCP, Port: 8080}),
		Entry("http", []string{"-port=8080", "-uri=/ready"}, &workload.HealthCheck{Type: workload.CheckHTTP, Port: 8080, Path: "/ready"}),
	)

	It("has no checks for CC's process health check type (no check definition, no monitor)", func() {
		lrp.CheckDefinition, lrp.Monitor = nil, nil
		checks := translate().HealthChecks
		Expect(checks.Liveness).To(BeNil())
		Expect(checks.Readiness).To(BeNil())
	})

	It("translates egress rules for the NetworkPolicy", func() {
		rules := translate().EgressRules
		Expect(rules).To(HaveLen(3))
		Expect(rules[0]).To(Equal(workload.EgressRule{Protocol: "tcp", Destinations: []string{"10.0.0.0/8"}, Ports: []uint32{5432}}))
		Expect(rules[1].PortRange).To(Equal(&workload.PortRange{Start: 53, End: 54}))
		Expect(rules[2].ICMPInfo).To(Equal(&workload.ICMPInfo{Type: 0, Code: 0}))
	})

	It("lets a privileged LRP through only when the operator allows it", func() {
		lrp.Privileged = true
		_, err := bbsk8s.Translate(lrp, opts)
		Expect(err).To(MatchError(ContainSubstring("privileged containers are not allowed")))
		Expect(models.ConvertError(err).Type).To(Equal(models.Error_InvalidRequest))

		opts.AllowPrivileged = true
		Expect(translate().Privileged).To(BeTrue())
	})

	It("runs a preloaded stack's LRP in the image the operator configured for it, trusted as a droplet", func() {
		opts.Stacks = map[string]string{"cflinuxfs4": "registry.example.com/cf/cflinuxfs4:1.200"}
		lrp.RootFs = "preloaded:cflinuxfs4"
		w := translate()
		Expect(w.Process.Image).To(Equal("registry.example.com/cf/cflinuxfs4:1.200"))
		Expect(w.Process.Stack).To(Equal("cflinuxfs4"))
		Expect(w.IsDocker()).To(BeFalse(), "a stack image never runs as its image's user")
	})

	Describe("a buildpack app as current CC desires it", func() {
		BeforeEach(func() {
			lrp = ccBuildpackLRP(processGUID)
			opts.Stacks = map[string]string{"cflinuxfs4": "registry.example.com/cf/cflinuxfs4:1.200"}
			Expect(lrp.Validate()).To(Succeed(), "BBS itself accepts the fixture")
		})

		It("runs CC's recipe, as CC sent it, in the stack's image", func() {
			w := translate()
			p := w.Process
			Expect(p.Image).To(Equal("registry.example.com/cf/cflinuxfs4:1.200"))
			Expect(p.Stack).To(Equal("cflinuxfs4"))
			Expect(p.Command).To(BeEmpty(), "the runner is the container's command")
			Expect(p.Recipe).NotTo(BeNil())
			Expect(p.Recipe.CachedDependencies).To(Equal(lrp.CachedDependencies))
			Expect(p.Recipe.Setup).To(Equal(lrp.Setup))
			Expect(p.Recipe.Action).To(Equal(lrp.Action), "the launcher with CC's start command, and diego-sshd beside it")
			Expect(p.Recipe.EnvironmentVariables).To(Equal(lrp.EnvironmentVariables))
			Expect(p.Recipe.StartTimeoutMs).To(Equal(lrp.StartTimeoutMs))
			Expect(w.Env).To(BeEmpty(), "CC's environment travels in the recipe (a Secret), not in the pod spec")
		})

		It("probes the check definition and leaves the monitor out of the recipe, as Diego's executor prefers the checks", func() {
			w := translate()
			Expect(w.Process.Recipe.Monitor).To(BeNil())
			Expect(w.HealthChecks.Liveness).To(Equal(&workload.HealthCheck{Type: workload.CheckTCP, Port: 8080, TimeoutMs: 2000}))
			Expect(w.HealthChecks.Readiness).To(Equal(&workload.HealthCheck{Type: workload.CheckTCP, Port: 8080, IntervalMs: 5000}))
		})

		It("gives the runner the monitor when there is no check definition, and makes no probe of it", func() {
			lrp.CheckDefinition = nil
			w := translate()
			Expect(w.Process.Recipe.Monitor).To(Equal(lrp.Monitor))
			Expect(w.HealthChecks.Liveness).To(BeNil())
			Expect(w.HealthChecks.Readiness).To(BeNil())
		})

		It("runs sidecars: the runner runs CC's whole codependent action", func() {
			lrp.Action = models.WrapAction(models.Codependent(
				&models.RunAction{Path: "/tmp/lifecycle/launcher", Args: []string{"app", "./server", "{}"}, User: "vcap"},
				&models.RunAction{Path: "/tmp/lifecycle/launcher", Args: []string{"app", "./config-agent", ""}, User: "vcap"},
			))
			Expect(translate().Process.Recipe.Action.GetCodependentAction().Actions).To(HaveLen(2))
		})

		It("takes the droplet and lifecycle as image layers (preloaded+layer:<stack>, no setup)", func() {
			lrp.RootFs = "preloaded+layer:cflinuxfs4"
			lrp.Setup, lrp.CachedDependencies = nil, nil
			lrp.ImageLayers = []*models.ImageLayer{
				{Name: "buildpack-cflinuxfs4-lifecycle", Url: "https://file-server/lifecycle.tgz", DestinationPath: "/tmp/lifecycle", LayerType: models.LayerTypeShared, MediaType: models.MediaTypeTgz},
				{Name: "droplet", Url: "https://cc/droplet", DestinationPath: "/home/vcap", LayerType: models.LayerTypeExclusive, MediaType: models.MediaTypeTgz,
					DigestAlgorithm: models.DigestAlgorithmSha256, DigestValue: "4b7c0f8e2d1f6a9b3c5e7d9f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3e5f7a9b"},
			}
			Expect(lrp.Validate()).To(Succeed())
			p := translate().Process
			Expect(p.Stack).To(Equal("cflinuxfs4"))
			Expect(p.Recipe.ImageLayers).To(Equal(lrp.ImageLayers))
		})

		It("runs a stack LRP without Diego's downloads directly, as before", func() {
			lrp.Setup, lrp.CachedDependencies = nil, nil
			p := translate().Process
			Expect(p.Recipe).To(BeNil())
			Expect(p.Command).To(Equal([]string{"/bin/sh", "-c", "bundle exec rackup config.ru -p $PORT"}))
		})
	})

	It("bounds instances by lrp.max_instances", func() {
		opts.MaxInstances = 1000
		lrp.Instances = 1000
		Expect(translate().Instances).To(Equal(int32(1000)))
		lrp.Instances = 1001
		_, err := bbsk8s.Translate(lrp, opts)
		Expect(models.ConvertError(err).Type).To(Equal(models.Error_InvalidRequest))
		Expect(err).To(MatchError(ContainSubstring("lrp.max_instances 1000")))
	})

	DescribeTable("refuses what Iris cannot run with InvalidRequest and a clear message",
		func(change func(*models.DesiredLRP), message string) {
			change(lrp)
			_, err := bbsk8s.Translate(lrp, opts)
			Expect(err).To(HaveOccurred())
			bbsErr := models.ConvertError(err)
			Expect(bbsErr.Type).To(Equal(models.Error_InvalidRequest))
			Expect(bbsErr.Message).To(ContainSubstring(message))
		},
		Entry("a buildpack app on a stack without an image (bbs.stacks)", func(l *models.DesiredLRP) {
			l.RootFs = "preloaded:cflinuxfs3"
			l.Setup = models.WrapAction(&models.DownloadAction{From: "https://cc/droplet", To: ".", User: "vcap"})
		}, `no image for stack "cflinuxfs3" (bbs.stacks)`),
		Entry("a stack without an image (bbs.stacks)", func(l *models.DesiredLRP) { l.RootFs = "preloaded:cflinuxfs3" },
			`no image for stack "cflinuxfs3" (bbs.stacks)`),
		Entry("a droplet as a root file system layer (CC's experimental oci-phase-1)", func(l *models.DesiredLRP) {
			l.RootFs = "preloaded+layer:cflinuxfs4?layer=https%3A%2F%2Fcc%2Fdroplet"
		}, "a droplet given as a root file system layer (CC's temporary_oci_buildpack_mode) is not supported"),
		Entry("sidecars beside a docker app (further run actions in CC's codependent action)", func(l *models.DesiredLRP) {
			l.Action = models.WrapAction(models.Codependent(
				&models.RunAction{Path: "/tmp/lifecycle/launcher", Args: []string{"app", "./server", "{}"}, User: "vcap"},
				&models.RunAction{Path: "/tmp/lifecycle/launcher", Args: []string{"app", "./config-agent", ""}, User: "vcap"},
				&models.RunAction{Path: "/tmp/lifecycle/diego-sshd", Args: []string{"-address=0.0.0.0:2222"}, User: "vcap"},
			))
		}, "2 processes (the app and its sidecars); Iris runs the sidecars of buildpack apps only"),
		Entry("an unknown root_fs scheme", func(l *models.DesiredLRP) { l.RootFs = "oci://x" }, "want docker://<image>, preloaded:<stack> or preloaded+layer:<stack>"),
		Entry("a docker root_fs without an image", func(l *models.DesiredLRP) { l.RootFs = "docker://" }, "no image"),
		Entry("no run action", func(l *models.DesiredLRP) {
			l.Action = models.WrapAction(&models.DownloadAction{From: "http://x", To: "/tmp", User: "vcap"})
		}, "no run action"),
		Entry("a process guid without a version", func(l *models.DesiredLRP) { l.ProcessGuid = "justaguid" }, "<guid>-<version>"),
		Entry("two placement tags", func(l *models.DesiredLRP) { l.PlacementTags = []string{"a", "b"} }, "placement_tags"),
		Entry("a cf-router value that is not a list", func(l *models.DesiredLRP) {
			bad := json.RawMessage(`{"hostnames":"x"}`)
			(*l.Routes)["cf-router"] = &bad
		}, "routes"),
		Entry("a port out of range", func(l *models.DesiredLRP) { l.Ports = []uint32{70000} }, "out of range"),
	)
})
