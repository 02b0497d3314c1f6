package k8s

import (
	"context"
	"errors"
	"fmt"
	"path"

	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/actions"
)

// A recipe's uploads (a staging's droplet and cache to cc-uploader) need
// a client certificate where the destination requires mTLS, as Diego's
// cells present theirs. The runner's container runs buildpack and app
// code, so the certificate must not be mounted there: it goes to a native
// sidecar of Iris's own image, the upload proxy (actions.UploadProxy),
// which the runner reaches through a unix socket on an emptyDir shared
// with the recipe's container alone. The proxy uploads only to the
// recipe's own upload destinations (it reads the recipe Secret too), so
// tenant code that uses the socket can do no more than the recipe does.
const (
	// UploadProxyContainerName is the sidecar (an init container with
	// restartPolicy Always: it starts before the recipe's container and
	// is stopped after the pod's main containers have exited).
	UploadProxyContainerName = "iris-uploader"
	// UploadProxyVolumeName is the emptyDir holding the proxy's socket.
	UploadProxyVolumeName = "iris-upload"
	// UploadProxySocketDir is where both containers mount it.
	UploadProxySocketDir = "/iris-upload"
	// UploadProxySocket is the proxy's socket, the runner's --upload-proxy.
	UploadProxySocket = UploadProxySocketDir + "/upload.sock"
	// UploadIdentityVolumeName is the operator's Secret with the client
	// certificate (tls.crt), its key (tls.key) and the CA the
	// destinations' server certificates are verified with (ca.crt), the
	// layout of kubernetes.io/tls Secrets as cert-manager writes them.
	UploadIdentityVolumeName = "iris-upload-identity"
	// UploadIdentityMountPath is where only the proxy sees it.
	UploadIdentityMountPath = "/etc/iris-upload-identity"
)

// WithUploadIdentity makes recipe pods with upload actions (BBS tasks,
// staging) upload through the upload proxy, which presents the client
// certificate in Secret secretName (present in every workloads
// namespace). "" leaves uploads direct, without a client certificate.
func WithUploadIdentity(secretName string) BuilderOption {
	return func(b *Builder) { b.uploadIdentity = secretName }
}

// addUploadProxy gives spec the upload proxy sidecar and points the
// runner in container at it, when an upload identity is configured and
// recipe uploads at all; otherwise it changes nothing. Call it after
// AddRunner (it mounts the recipe volume AddRunner adds) and before the
// recipe's container is appended, when that is an init container: the
// sidecar must start first.
func (b *Builder) addUploadProxy(spec *corev1.PodSpec, container *corev1.Container, recipe *actions.Recipe) {
	if b.uploadIdentity == "" || len(recipe.UploadDestinations()) == 0 {
		return
	}
	spec.Volumes = append(spec.Volumes,
		corev1.Volume{Name: UploadProxyVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium: corev1.StorageMediumMemory, SizeLimit: ptr.To(resource.MustParse("1Mi")),
		}}},
		corev1.Volume{Name: UploadIdentityVolumeName, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: b.uploadIdentity,
			// Mounted in the proxy's container only, which runs as the
			// pod's user.
			DefaultMode: ptr.To[int32](0o444),
		}}},
	)
	identity := func(key string) string { return path.Join(UploadIdentityMountPath, key) }
	spec.InitContainers = append(spec.InitContainers, corev1.Container{
		Name:            UploadProxyContainerName,
		Image:           b.cfg.RunnerImage,
		ImagePullPolicy: corev1.PullPolicy(b.cfg.RunnerImagePullPolicy),
		RestartPolicy:   ptr.To(corev1.ContainerRestartPolicyAlways),
		Command: []string{irisImageBinary, "actions", "upload-proxy",
			"--listen", UploadProxySocket,
			"--recipe", path.Join(RecipeMountPath, RecipeSecretKey),
			"--tls-ca-file", identity("ca.crt"),
			"--tls-cert-file", identity(corev1.TLSCertKey),
			"--tls-key-file", identity(corev1.TLSPrivateKeyKey),
		},
		// The recipe's container starts once the socket is there: its
		// uploads must not race the proxy's start.
		StartupProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{irisImageBinary, "actions", "healthy", UploadProxySocket}}},
			PeriodSeconds:    1,
			FailureThreshold: 60,
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: UploadProxyVolumeName, MountPath: UploadProxySocketDir},
			{Name: RecipeVolumeName, MountPath: RecipeMountPath, ReadOnly: true},
			{Name: UploadIdentityVolumeName, MountPath: UploadIdentityMountPath, ReadOnly: true},
		},
		SecurityContext: runnerInitSecurityContext(),
		// A sidecar's requests add to the pod's. Payloads stream through
		// in small buffers.
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
		},
	})
	container.Command = append(container.Command, "--upload-proxy", UploadProxySocket)
	container.VolumeMounts = append(container.VolumeMounts, corev1.VolumeMount{Name: UploadProxyVolumeName, MountPath: UploadProxySocketDir})
}

// ErrNoUploadIdentity refuses a Job whose pod would mount an upload
// identity Secret that its namespace lacks: the pod would wait at volume
// mount forever (Kubernetes retries the mount), and CC would hear nothing
// until its staging timeout. Refusing the desire names the problem at once.
var ErrNoUploadIdentity = errors.New("upload identity missing")

// requireUploadIdentity checks that the upload identity Secret job's pod
// mounts (if any) exists in job's namespace.
func requireUploadIdentity(ctx context.Context, clientset kubernetes.Interface, job *batchv1.Job) error {
	for _, volume := range job.Spec.Template.Spec.Volumes {
		if volume.Name != UploadIdentityVolumeName || volume.Secret == nil {
			continue
		}
		name := volume.Secret.SecretName
		_, err := clientset.CoreV1().Secrets(job.Namespace).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return fmt.Errorf("%w: Secret %s/%s (staging.upload_identity_secret_name) does not exist, so the pod could not upload", ErrNoUploadIdentity, job.Namespace, name)
		case err != nil:
			return fmt.Errorf("reading upload identity Secret %s/%s: %w", job.Namespace, name, err)
		}
	}
	return nil
}
