package k8s_test

import (
	"encoding/json"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/bifrost"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

func dockerLRP() *models.DesireLRPRequest {
	return &models.DesireLRPRequest{
		GUID: "app-guid", Version: "v1", ProcessGUID: "app-guid-v1", ProcessType: "web",
		AppGUID: "the-app", AppName: "dora", SpaceGUID: "space-guid", SpaceName: "dev",
		OrganizationGUID: "org-guid", OrganizationName: "acme",
		Ports:       []int32{8080, 9090},
		Routes:      models.Routes{"cf-router": json.RawMessage(`[{"hostname":"dora.example.com","port":8080}]`)},
		Environment: map[string]string{"B": "2", "A": "1", "CF_INSTANCE_INDEX": "stale"},
		Instances:   ptr.To(3), LastUpdated: "1700000000.5",
		HealthCheckType: "port", HealthCheckTimeoutMs: 120000,
		MemoryMB: 256, DiskMB: 1024, CPUWeight: 3,
		Lifecycle: models.Lifecycle{DockerLifecycle: &models.DockerLifecycle{
			Image: "registry.example.com:5000/team/dora:1", Command: []string{"/bin/sh", "-c", "run"},
		}},
		UserDefinedAnnotations: map[string]string{"prometheus.io/scrape": "true", k8s.AnnotationProcessGUID: "spoofed"},
	}
}

func envByName(c corev1.Container) map[string]corev1.EnvVar {
	m := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		m[e.Name] = e
	}
	return m
}

var _ = Describe("Builder", func() {
	var (
		builder *k8s.Builder
		lrp     *models.DesireLRPRequest
		objects *k8s.LRPObjects
		sts     *appsv1.StatefulSet
		app     corev1.Container
	)

	BeforeEach(func() {
		builder = k8s.NewBuilder(config.Default().LRP)
		lrp = dockerLRP()
	})

	JustBeforeEach(func() {
		var err error
		objects, err = builder.Build(bifrost.DesiredLRP(lrp), "cf-workloads")
		Expect(err).NotTo(HaveOccurred())
		sts = objects.StatefulSet
		Expect(sts.Spec.Template.Spec.Containers).To(HaveLen(1))
		app = sts.Spec.Template.Spec.Containers[0]
	})

	It("names, labels and annotates the StatefulSet", func() {
		Expect(sts.Name).To(Equal(k8s.StatefulSetName("dora", "dev", "app-guid-v1")))
		Expect(sts.Namespace).To(Equal("cf-workloads"))
		Expect(sts.Labels).To(Equal(map[string]string{
			k8s.LabelGUID: "app-guid", k8s.LabelVersion: "v1", k8s.LabelAppGUID: "the-app",
			k8s.LabelProcessType: "web", k8s.LabelSourceType: "APP",
			k8s.LabelOrgGUID: "org-guid", k8s.LabelSpaceGUID: "space-guid",
		}))
		Expect(sts.Spec.Template.Labels).To(Equal(sts.Labels))
		Expect(sts.Annotations).To(HaveKeyWithValue(k8s.AnnotationProcessGUID, "app-guid-v1"))
		Expect(sts.Annotations).To(HaveKeyWithValue(k8s.AnnotationLastUpdated, "1700000000.5"))
		Expect(sts.Annotations[k8s.AnnotationRoutes]).To(MatchJSON(`{"cf-router":[{"hostname":"dora.example.com","port":8080}]}`))
		Expect(sts.Annotations).To(HaveKeyWithValue(k8s.AnnotationAppName, "dora"))
		Expect(sts.Annotations).To(HaveKeyWithValue(k8s.AnnotationSpaceName, "dev"))
		Expect(sts.Annotations).To(HaveKeyWithValue(k8s.AnnotationOrgName, "acme"))
		Expect(sts.Annotations).To(HaveKeyWithValue("prometheus.io/scrape", "true"))
	})

	It("keeps routes and last_updated off the pod template so updates never roll pods", func() {
		Expect(sts.Spec.Template.Annotations).NotTo(HaveKey(k8s.AnnotationRoutes))
		Expect(sts.Spec.Template.Annotations).NotTo(HaveKey(k8s.AnnotationLastUpdated))
		Expect(sts.Spec.Template.Annotations).To(HaveKeyWithValue(k8s.AnnotationProcessGUID, "app-guid-v1"))
		Expect(sts.Spec.Template.Annotations).To(HaveKeyWithValue("prometheus.io/scrape", "true"))
	})

	It("runs instances in parallel, selected by guid and version", func() {
		Expect(*sts.Spec.Replicas).To(Equal(int32(3)))
		Expect(sts.Spec.PodManagementPolicy).To(Equal(appsv1.ParallelPodManagement))
		Expect(sts.Spec.Selector.MatchLabels).To(Equal(map[string]string{k8s.LabelGUID: "app-guid", k8s.LabelVersion: "v1"}))
	})

	It("runs the docker image with CC's command and ports", func() {
		Expect(app.Image).To(Equal("registry.example.com:5000/team/dora:1"))
		Expect(app.Command).To(Equal([]string{"/bin/sh", "-c", "run"}))
		Expect(app.Ports).To(ConsistOf(
			corev1.ContainerPort{ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
			corev1.ContainerPort{ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
		))
	})

	It("sets CC's environment sorted, then the CF_INSTANCE variables", func() {
		env := envByName(app)
		Expect(app.Env[0].Name).To(Equal("A"))
		Expect(app.Env[1].Name).To(Equal("B"))
		Expect(env["CF_INSTANCE_INDEX"].Value).To(BeEmpty(), "CC's stale value must be dropped")
		Expect(env["CF_INSTANCE_INDEX"].ValueFrom.FieldRef.FieldPath).To(Equal("metadata.labels['apps.kubernetes.io/pod-index']"))
		Expect(env["CF_INSTANCE_GUID"].ValueFrom.FieldRef.FieldPath).To(Equal("metadata.uid"))
		Expect(env["CF_INSTANCE_IP"].ValueFrom.FieldRef.FieldPath).To(Equal("status.hostIP"))
		Expect(env["CF_INSTANCE_INTERNAL_IP"].ValueFrom.FieldRef.FieldPath).To(Equal("status.podIP"))
		Expect(env["CF_INSTANCE_PORT"].Value).To(Equal("8080"))
		Expect(env["CF_INSTANCE_ADDR"].Value).To(Equal("$(CF_INSTANCE_INTERNAL_IP):8080"))
		Expect(env["CF_INSTANCE_PORTS"].Value).To(MatchJSON(`[{"external":8080,"internal":8080},{"external":9090,"internal":9090}]`))
		Expect(env["INSTANCE_INDEX"].Value).To(Equal("$(CF_INSTANCE_INDEX)"))
		Expect(env["PORT"].Value).To(Equal("8080"))
	})

	It("keeps CC's PORT when it sends one", func() {
		lrp.Environment["PORT"] = "9090"
		objects, err := builder.Build(bifrost.DesiredLRP(lrp), "ns")
		Expect(err).NotTo(HaveOccurred())
		Expect(envByName(objects.StatefulSet.Spec.Template.Spec.Containers[0])["PORT"].Value).To(Equal("9090"))
	})

	It("sets memory request = limit, disk as ephemeral storage and a CPU request from the weight", func() {
		Expect(app.Resources.Requests.Memory().Value()).To(Equal(int64(256 * 1024 * 1024)))
		Expect(app.Resources.Limits.Memory().Value()).To(Equal(int64(256 * 1024 * 1024)))
		Expect(app.Resources.Limits.StorageEphemeral().Value()).To(Equal(int64(1024 * 1024 * 1024)))
		Expect(app.Resources.Requests.Cpu().MilliValue()).To(Equal(int64(30)))
		Expect(app.Resources.Limits).NotTo(HaveKey(corev1.ResourceCPU))
	})

	It("puts a log rate limit on the pods for the log agent, and none for an unlimited LRP", func() {
		Expect(sts.Spec.Template.Annotations).NotTo(HaveKey(k8s.AnnotationLogRateLimit))
		w := bifrost.DesiredLRP(lrp)
		w.Resources.LogRateLimit = ptr.To[int64](16384)
		limited, err := builder.Build(w, "cf-workloads")
		Expect(err).NotTo(HaveOccurred())
		Expect(limited.StatefulSet.Spec.Template.Annotations).To(HaveKeyWithValue(k8s.AnnotationLogRateLimit, "16384"))
	})

	It("hardens the pod", func() {
		spec := sts.Spec.Template.Spec
		Expect(*spec.AutomountServiceAccountToken).To(BeFalse())
		Expect(*spec.EnableServiceLinks).To(BeFalse())
		Expect(*spec.SecurityContext.RunAsNonRoot).To(BeTrue())
		Expect(*spec.SecurityContext.RunAsUser).To(Equal(int64(2000)))
		Expect(spec.SecurityContext.SeccompProfile.Type).To(Equal(corev1.SeccompProfileTypeRuntimeDefault))
		Expect(*app.SecurityContext.AllowPrivilegeEscalation).To(BeFalse())
		Expect(*app.SecurityContext.RunAsNonRoot).To(BeTrue())
		Expect(app.SecurityContext.Capabilities.Drop).To(ConsistOf(corev1.Capability("ALL")))
		Expect(*spec.TerminationGracePeriodSeconds).To(Equal(int64(10)))
	})

	Describe("probes", func() {
		It("checks the first port over TCP for the port health check, with the start timeout as startup budget", func() {
			Expect(app.StartupProbe.TCPSocket.Port).To(Equal(intstr.FromInt32(8080)))
			Expect(app.StartupProbe.PeriodSeconds * app.StartupProbe.FailureThreshold).To(Equal(int32(120)))
			Expect(app.LivenessProbe.TCPSocket.Port).To(Equal(intstr.FromInt32(8080)))
			Expect(app.LivenessProbe.TimeoutSeconds).To(Equal(int32(1)))
			Expect(app.LivenessProbe.PeriodSeconds).To(Equal(int32(30)))
			Expect(app.ReadinessProbe.TCPSocket).NotTo(BeNil())
		})

		Context("http", func() {
			BeforeEach(func() {
				lrp.HealthCheckType = "http"
				lrp.HealthCheckHTTPEndpoint = "/health"
				lrp.HealthCheckTimeoutMs = 0
				lrp.StartTimeoutMs = 10000
			})
			It("GETs the endpoint on the first port", func() {
				for _, p := range []*corev1.Probe{app.StartupProbe, app.LivenessProbe, app.ReadinessProbe} {
					Expect(p.HTTPGet.Path).To(Equal("/health"))
					Expect(p.HTTPGet.Port).To(Equal(intstr.FromInt32(8080)))
				}
				Expect(app.StartupProbe.PeriodSeconds * app.StartupProbe.FailureThreshold).To(Equal(int32(10)))
			})
		})

		Context("without a timeout from CC", func() {
			BeforeEach(func() { lrp.HealthCheckTimeoutMs = 0 })
			It("gives the default 60 s", func() {
				Expect(app.StartupProbe.PeriodSeconds * app.StartupProbe.FailureThreshold).To(Equal(int32(60)))
			})
		})

		Context("process", func() {
			BeforeEach(func() { lrp.HealthCheckType = "process" })
			It("has no probes", func() {
				Expect(app.StartupProbe).To(BeNil())
				Expect(app.LivenessProbe).To(BeNil())
				Expect(app.ReadinessProbe).To(BeNil())
			})
		})
	})

	It("adds a PDB while there is more than one instance", func() {
		Expect(objects.PodDisruptionBudget).NotTo(BeNil())
		Expect(objects.PodDisruptionBudget.Spec.MinAvailable.IntValue()).To(Equal(1))
		Expect(objects.PodDisruptionBudget.Spec.Selector).To(Equal(sts.Spec.Selector))
		sts.Spec.Replicas = ptr.To(int32(1))
		Expect(k8s.PodDisruptionBudget(sts)).To(BeNil())
	})

	It("has no registry secret for a public image", func() {
		Expect(objects.RegistrySecret).To(BeNil())
		Expect(sts.Spec.Template.Spec.ImagePullSecrets).To(BeEmpty())
	})

	Context("with registry credentials", func() {
		BeforeEach(func() {
			lrp.Lifecycle.DockerLifecycle.RegistryUsername = "user"
			lrp.Lifecycle.DockerLifecycle.RegistryPassword = "pass"
		})
		It("creates a dockerconfigjson secret for the image's registry and pulls with it", func() {
			secret := objects.RegistrySecret
			Expect(secret).NotTo(BeNil())
			Expect(secret.Type).To(Equal(corev1.SecretTypeDockerConfigJson))
			Expect(string(secret.Data[corev1.DockerConfigJsonKey])).To(MatchJSON(
				`{"auths":{"registry.example.com:5000":{"username":"user","password":"pass","auth":"dXNlcjpwYXNz"}}}`))
			Expect(sts.Spec.Template.Spec.ImagePullSecrets).To(ConsistOf(corev1.LocalObjectReference{Name: secret.Name}))
		})

		It("uses Docker Hub for an image without a registry host", func() {
			lrp.Lifecycle.DockerLifecycle.Image = "library/busybox"
			objects, err := builder.Build(bifrost.DesiredLRP(lrp), "ns")
			Expect(err).NotTo(HaveOccurred())
			Expect(string(objects.RegistrySecret.Data[corev1.DockerConfigJsonKey])).To(ContainSubstring("https://index.docker.io/v1/"))
		})
	})

	Context("buildpack lifecycle", func() {
		BeforeEach(func() {
			lrp.Lifecycle = models.Lifecycle{BuildpackLifecycle: &models.BuildpackLifecycle{
				DropletGUID: "droplet-guid", DropletHash: "abc123", StartCommand: "bundle exec rackup",
			}}
		})
		It("runs the droplet image through the launcher", func() {
			Expect(app.Image).To(Equal("registry.cf-system.svc.cluster.local:5000/cloudfoundry/droplet-guid:abc123"))
			Expect(app.Command).To(Equal([]string{"/lifecycle/launcher", "app", "bundle exec rackup", ""}))
			Expect(sts.Spec.Template.Spec.ImagePullSecrets).To(BeEmpty(), "no droplet registry Secret configured")
		})

		It("pulls droplets, of apps and tasks, with the operator's droplet registry Secret", func() {
			cfg := config.Default().LRP
			cfg.DropletRegistrySecretName = "droplet-registry"
			builder := k8s.NewBuilder(cfg)
			want := []corev1.LocalObjectReference{{Name: "droplet-registry"}}

			objects, err := builder.Build(bifrost.DesiredLRP(lrp), "ns")
			Expect(err).NotTo(HaveOccurred())
			Expect(objects.StatefulSet.Spec.Template.Spec.ImagePullSecrets).To(Equal(want))

			task, err := builder.BuildTask(&models.TaskRequest{GUID: "t", Name: "migrate", AppGUID: "a", Lifecycle: lrp.Lifecycle}, "ns")
			Expect(err).NotTo(HaveOccurred())
			Expect(task.Job.Spec.Template.Spec.ImagePullSecrets).To(Equal(want))

			docker, err := builder.Build(bifrost.DesiredLRP(dockerLRP()), "ns")
			Expect(err).NotTo(HaveOccurred())
			Expect(docker.StatefulSet.Spec.Template.Spec.ImagePullSecrets).To(BeEmpty(), "docker images are not droplets")
		})
	})

	Describe("isolation segments", func() {
		placement := func(sts *appsv1.StatefulSet) corev1.NodeSelectorRequirement {
			terms := sts.Spec.Template.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
			Expect(terms).To(HaveLen(1))
			Expect(terms[0].MatchExpressions).To(HaveLen(1))
			return terms[0].MatchExpressions[0]
		}

		It("keeps an LRP without a placement tag off every segment's nodes", func() {
			Expect(placement(sts)).To(Equal(corev1.NodeSelectorRequirement{Key: "cloudfoundry.org/isolation-segment", Operator: corev1.NodeSelectorOpDoesNotExist}))
			Expect(sts.Spec.Template.Spec.Tolerations).To(BeEmpty())
			Expect(sts.Spec.Template.Annotations).NotTo(HaveKey(k8s.AnnotationIsolationSegment))
		})

		It("runs an LRP with a placement tag only on its segment's nodes, tolerating their taint", func() {
			lrp.PlacementTags = []string{"PCI zone/1"}
			objects, err := builder.Build(bifrost.DesiredLRP(lrp), "ns")
			Expect(err).NotTo(HaveOccurred())
			sts := objects.StatefulSet
			Expect(placement(sts)).To(Equal(corev1.NodeSelectorRequirement{
				Key: "cloudfoundry.org/isolation-segment", Operator: corev1.NodeSelectorOpIn, Values: []string{"PCI_zone_1"},
			}), "the tag made a valid label value")
			Expect(sts.Spec.Template.Spec.Tolerations).To(ConsistOf(corev1.Toleration{
				Key: "cloudfoundry.org/isolation-segment", Operator: corev1.TolerationOpEqual, Value: "PCI_zone_1",
			}))
			Expect(sts.Annotations).To(HaveKeyWithValue(k8s.AnnotationIsolationSegment, "PCI zone/1"))
			Expect(sts.Spec.Template.Spec.Affinity.PodAntiAffinity).NotTo(BeNil(), "instances still spread over nodes")
		})
	})

	It("mounts volume services' claims", func() {
		lrp.VolumeMounts = []models.VolumeMount{{VolumeID: "vol-1", MountDir: "/data"}}
		objects, err := builder.Build(bifrost.DesiredLRP(lrp), "ns")
		Expect(err).NotTo(HaveOccurred())
		spec := objects.StatefulSet.Spec.Template.Spec
		Expect(spec.Volumes[0].PersistentVolumeClaim.ClaimName).To(Equal("vol-1"))
		Expect(spec.Containers[0].VolumeMounts[0].MountPath).To(Equal("/data"))
	})

	It("defaults the process type to web for CCs that send none", func() {
		lrp.ProcessType = ""
		objects, err := builder.Build(bifrost.DesiredLRP(lrp), "ns")
		Expect(err).NotTo(HaveOccurred())
		Expect(objects.StatefulSet.Labels).To(HaveKeyWithValue(k8s.LabelProcessType, "web"))
	})

	It("rejects a request without a lifecycle", func() {
		lrp.Lifecycle = models.Lifecycle{}
		_, err := builder.Build(bifrost.DesiredLRP(lrp), "ns")
		Expect(models.IsInvalid(err)).To(BeTrue())
	})
})
