package k8s

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// tmpVolume is the writable /tmp of pods with a read-only root filesystem.
const tmpVolume = "tmp"

// harden applies the operator's hardening options (config.LRP) to an app
// or task pod. runsAsImageUser is true for docker workloads when the
// operator allows root images: the image's USER then applies.
func (b *Builder) harden(spec *corev1.PodSpec, runsAsImageUser bool) {
	b.hardenSandbox(spec)
	if runsAsImageUser {
		spec.SecurityContext.RunAsNonRoot = nil
		spec.SecurityContext.RunAsUser = nil
		spec.SecurityContext.RunAsGroup = nil
	}
	for i := range spec.Containers {
		sc := spec.Containers[i].SecurityContext
		if runsAsImageUser && sc != nil {
			sc.RunAsNonRoot = nil
		}
		if b.cfg.ReadOnlyRootFilesystem && sc != nil {
			sc.ReadOnlyRootFilesystem = ptr.To(true)
			spec.Containers[i].VolumeMounts = append(spec.Containers[i].VolumeMounts, corev1.VolumeMount{Name: tmpVolume, MountPath: "/tmp"})
		}
	}
	if b.cfg.ReadOnlyRootFilesystem {
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: tmpVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	}
}

// hardenSandbox applies the options that concern the pod as a whole:
// AppArmor and user namespaces. Staging pods get these too.
func (b *Builder) hardenSandbox(spec *corev1.PodSpec) {
	if profile := appArmorProfile(b.cfg.AppArmorProfile); profile != nil {
		spec.SecurityContext.AppArmorProfile = profile
	}
	if b.cfg.UserNamespaces {
		spec.HostUsers = ptr.To(false)
	}
}

func appArmorProfile(name string) *corev1.AppArmorProfile {
	switch {
	case name == "runtime/default":
		return &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeRuntimeDefault}
	case name == "unconfined":
		return &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined}
	case strings.HasPrefix(name, "localhost/"):
		return &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeLocalhost, LocalhostProfile: ptr.To(strings.TrimPrefix(name, "localhost/"))}
	}
	return nil
}
