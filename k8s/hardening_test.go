package k8s_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"

	"github.com/iris-cf/iris/bifrost"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

var _ = Describe("Hardening options", func() {
	build := func(cfg config.LRP, lrp *models.DesireLRPRequest) corev1.PodSpec {
		GinkgoHelper()
		objects, err := k8s.NewBuilder(cfg).Build(bifrost.DesiredLRP(lrp), "ns")
		Expect(err).NotTo(HaveOccurred())
		return objects.StatefulSet.Spec.Template.Spec
	}

	It("defaults to a fixed non-root uid, AppArmor runtime/default, no dropped-in privileges, writable root and host users", func() {
		spec := build(config.Default().LRP, dockerLRP())
		Expect(spec.SecurityContext.RunAsNonRoot).To(HaveValue(BeTrue()))
		Expect(spec.SecurityContext.RunAsUser).To(HaveValue(BeEquivalentTo(2000)))
		Expect(spec.SecurityContext.AppArmorProfile).To(Equal(&corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeRuntimeDefault}))
		Expect(spec.HostUsers).To(BeNil())
		sc := spec.Containers[0].SecurityContext
		Expect(sc.AllowPrivilegeEscalation).To(HaveValue(BeFalse()))
		Expect(sc.Capabilities.Drop).To(ConsistOf(corev1.Capability("ALL")))
		Expect(sc.ReadOnlyRootFilesystem).To(BeNil())
		Expect(spec.AutomountServiceAccountToken).To(HaveValue(BeFalse()))
	})

	It("applies a read-only root with a writable /tmp, user namespaces and a localhost AppArmor profile", func() {
		cfg := config.Default().LRP
		cfg.ReadOnlyRootFilesystem, cfg.UserNamespaces, cfg.AppArmorProfile = true, true, "localhost/cf-apps"
		spec := build(cfg, dockerLRP())
		Expect(spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))
		Expect(spec.Containers[0].VolumeMounts).To(ContainElement(corev1.VolumeMount{Name: "tmp", MountPath: "/tmp"}))
		Expect(spec.Volumes).To(ContainElement(HaveField("Name", "tmp")))
		Expect(spec.HostUsers).To(HaveValue(BeFalse()))
		Expect(spec.SecurityContext.AppArmorProfile.Type).To(Equal(corev1.AppArmorProfileTypeLocalhost))
		Expect(spec.SecurityContext.AppArmorProfile.LocalhostProfile).To(HaveValue(Equal("cf-apps")))
	})

	It("runs docker images as their own user only when the operator allows root images", func() {
		cfg := config.Default().LRP
		cfg.AllowRootDockerImages = true
		spec := build(cfg, dockerLRP())
		Expect(spec.SecurityContext.RunAsUser).To(BeNil())
		Expect(spec.SecurityContext.RunAsNonRoot).To(BeNil())
		Expect(spec.Containers[0].SecurityContext.RunAsNonRoot).To(BeNil())
		Expect(spec.Containers[0].SecurityContext.AllowPrivilegeEscalation).To(HaveValue(BeFalse()))

		buildpack := dockerLRP()
		buildpack.Lifecycle = models.Lifecycle{BuildpackLifecycle: &models.BuildpackLifecycle{DropletGUID: "d", DropletHash: "h", StartCommand: "run"}}
		Expect(build(cfg, buildpack).SecurityContext.RunAsUser).To(HaveValue(BeEquivalentTo(2000)), "droplets always run as the app user")
	})

	It("applies the same options to task pods", func() {
		cfg := config.Default().LRP
		cfg.UserNamespaces = true
		objects, err := k8s.NewBuilder(cfg).BuildTask(&models.TaskRequest{
			GUID: "t", Name: "migrate", AppGUID: "a", Lifecycle: models.Lifecycle{DockerLifecycle: &models.DockerLifecycle{Image: "busybox"}},
		}, "ns")
		Expect(err).NotTo(HaveOccurred())
		spec := objects.Job.Spec.Template.Spec
		Expect(spec.HostUsers).To(HaveValue(BeFalse()))
		Expect(spec.SecurityContext.AppArmorProfile).NotTo(BeNil())
	})
})
