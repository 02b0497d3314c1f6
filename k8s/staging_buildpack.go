package k8s

import (
	"errors"
	"fmt"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/models"
	"github.com/iris-cf/iris/stager/buildpack"
)

// A buildpack staging pod runs, in order:
//
//  1. iris-runner-install (init, Iris's image): installs the runner (AddRunner).
//  2. iris-uploader (native sidecar, Iris's image), only with an upload
//     identity configured (WithUploadIdentity): relays the stage
//     container's uploads with the client certificate that container must
//     not see (see addUploadProxy).
//  3. stage (init, the stack's image): the runner runs CC's staging recipe
//     (stager/buildpack): downloads the lifecycle, buildpacks and app
//     bits, runs the builder, uploads droplet and cache to CC's URIs. It
//     writes its report ({failed, failure_reason, result}) to the pod's
//     state emptyDir and exits 0 even when staging failed, so that the
//     report is sent; a stage container that crashes or is killed (OOM)
//     fails the pod, which the staging reporter tells CC at once.
//  4. completion (Iris's image): sends the report to Iris's
//     PUT /stage/{guid}/completed with the staging's token.
//
// The token is given to the completion container only: the stage
// container runs buildpack and app code.
const (
	// StagingRunnerName is the container that runs the staging recipe.
	StagingRunnerName = "stage"
	// StagingReporterName is the container that reports to Iris.
	StagingReporterName = "completion"
	// stagingReportFile is the runner's report, on the state emptyDir.
	stagingReportFile = RecipeStatePath + "/report.json"
	// StagingCompletionURLEnv is where the reporter sends the report.
	StagingCompletionURLEnv = "STAGING_COMPLETION_URL"
	// stagingTmpVolume is the stage container's /tmp, where CC's recipe
	// puts app, buildpacks, droplet and cache.
	stagingTmpVolume = "staging-tmp"
)

// buildpackStagingPod fills spec with the containers above and returns the
// recipe Secret they run (name: the Job's, with the recipe suffix).
func (b *Builder) buildpackStagingPod(spec *corev1.PodSpec, jobName, namespace string, labels map[string]string, guid string, req *models.StagingRequest, cfg config.Staging, completion *corev1.Secret) (*corev1.Secret, error) {
	if cfg.StackImage == "" {
		return nil, models.Invalidf("lifecycle: this Iris cannot stage buildpack apps: staging.stack_image (the stack buildpacks run in) is not set")
	}
	// The stack's name for the lifecycle's cache key, as CC's: the
	// image's name without registry and tag.
	stack, _, _ := strings.Cut(path.Base(cfg.StackImage), ":")
	recipe, err := buildpack.Recipe(req, buildpack.Options{LifecycleBundleURL: cfg.LifecycleBundleURL, Stack: stack})
	if err != nil {
		return nil, err
	}
	recipeSecret, err := RecipeSecret(RecipeSecretNameFor(jobName), namespace, labels, recipe)
	if err != nil {
		return nil, models.Invalidf("%v", err)
	}

	stage := corev1.Container{
		Name:            StagingRunnerName,
		Image:           cfg.StackImage,
		SecurityContext: containerSecurityContext(),
		Resources:       b.resources(req.MemoryMB, req.DiskMB, req.CPUWeight),
		Env:             []corev1.EnvVar{{Name: "HOME", Value: StackHome}, {Name: "USER", Value: stackUser}},
		VolumeMounts: []corev1.VolumeMount{
			{Name: RecipeStateVolumeName, MountPath: RecipeStatePath},
			{Name: recipeHomeVolumeName, MountPath: StackHome},
			{Name: stagingTmpVolume, MountPath: "/tmp"},
		},
	}
	// The report goes to the state volume for the completion container.
	// CC stages as "vcap": app_uid, as before; the same rule as any recipe.
	flags := append([]string{"--exit-zero-when-reported"}, b.runRecipeAs(spec, &stage, recipe, false)...)
	if err := b.addRunnerReportingTo(spec, &stage, recipeSecret.Name, stagingReportFile, flags...); err != nil {
		if errors.Is(err, ErrNoRunnerImage) {
			return nil, models.Invalidf("lifecycle: this Iris cannot stage buildpack apps: lrp.runner_image (Iris's own image, which brings the action runner) is not set")
		}
		return nil, err
	}
	// The sidecar before the stage container, which it must outlive.
	b.addUploadProxy(spec, &stage, recipe)
	spec.InitContainers = append(spec.InitContainers, stage)
	spec.Volumes = append(spec.Volumes,
		corev1.Volume{Name: RecipeStateVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		corev1.Volume{Name: recipeHomeVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		corev1.Volume{Name: stagingTmpVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	)

	reporter := corev1.Container{
		Name:            StagingReporterName,
		Image:           b.cfg.RunnerImage,
		ImagePullPolicy: corev1.PullPolicy(b.cfg.RunnerImagePullPolicy),
		Command:         []string{irisImageBinary, "actions", "report-staging", "--report", stagingReportFile, "--staging-guid", guid},
		SecurityContext: runnerInitSecurityContext(),
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
		Env: []corev1.EnvVar{
			{Name: StagingCompletionURLEnv, Value: fmt.Sprintf("%s/stage/%s/completed", cfg.IrisURL, guid)},
			// The reporter sends "Authorization: Bearer
			// $STAGING_COMPLETION_TOKEN" and, over https, verifies Iris
			// with $STAGING_COMPLETION_CA_FILE.
			{Name: StagingCompletionTokenEnv, ValueFrom: &corev1.EnvVarSource{
				SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: completion.Name}, Key: completionTokenKey},
			}},
		},
		VolumeMounts: []corev1.VolumeMount{{Name: RecipeStateVolumeName, MountPath: RecipeStatePath, ReadOnly: true}},
	}
	if _, ok := completion.Data[completionCAKey]; ok {
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: completionCAVolume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: completion.Name, Items: []corev1.KeyToPath{{Key: completionCAKey, Path: completionCAKey}},
		}}})
		reporter.VolumeMounts = append(reporter.VolumeMounts, corev1.VolumeMount{Name: completionCAVolume, MountPath: completionCAMountPath, ReadOnly: true})
		reporter.Env = append(reporter.Env, corev1.EnvVar{Name: StagingCompletionCAEnv, Value: completionCAMountPath + "/" + completionCAKey})
	}
	spec.Containers = []corev1.Container{reporter}
	return recipeSecret, nil
}
