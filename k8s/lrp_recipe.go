package k8s

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/iris-cf/iris/actions"
	"github.com/iris-cf/iris/models"
	"github.com/iris-cf/iris/workload"
)

// A buildpack app as current CC desires it is a recipe, not an image: the
// lifecycle (cached dependency or shared image layer) into /tmp/lifecycle,
// the droplet (setup download to "." or exclusive image layer) into the
// vcap user's home, then the launcher with CC's start command. Its pods run
// that recipe with Iris's action runner (AddRunner) in the stack's image.
//
// Everything the recipe writes outside the runner's own volumes goes to
// emptyDirs, so it works with a read-only root file system (/tmp is the
// hardening's emptyDir, /home/vcap one of its own) and whatever user owns
// the image's home. Downloads with a cache key are kept in the pod's state
// emptyDir, which outlives the container: a restarted instance (a crash,
// a failed health check) extracts the droplet again from the cache instead
// of downloading it again, as on a Diego cell.
const (
	// StackHome is the vcap user's home in CF stacks, where CC's recipes
	// put the droplet (a download to "." is relative to it, as in Garden).
	StackHome = "/home/vcap"
	// stackUser is the user CC's recipes run as.
	stackUser = "vcap"
	// RecipeStateVolumeName holds the runner's download cache and its
	// healthy file; it survives container restarts.
	RecipeStateVolumeName = "iris-state"
	// RecipeStatePath is where the app container mounts it.
	RecipeStatePath = "/iris-state"
	// RecipeCacheDir is the runner's download cache in it.
	RecipeCacheDir = RecipeStatePath + "/cache"
	// RecipeHealthyFile is created by the runner when the monitor first
	// passes; the readiness probe checks it. The runner removes it when it
	// starts, so a restarted container is not ready on the last one's word.
	RecipeHealthyFile = RecipeStatePath + "/healthy"
	// recipeHomeVolumeName is the emptyDir at StackHome.
	recipeHomeVolumeName = "home"
	// recipeSecretSuffix names a recipe Secret after its StatefulSet or
	// Job. The reconciler tells an LRP's by it only among Secrets labelled
	// source_type APP, so a task's (TASK, STG) is never taken for one.
	recipeSecretSuffix = "-recipe"
	// AnnotationRecipeSHA256 is the digest of the recipe in a recipe
	// Secret: the reconciler, whose cache holds Secrets without their
	// data, tells a drifted Secret by it.
	AnnotationRecipeSHA256 = "cloudfoundry.org/recipe_sha256"
	// recipeProbePeriodSeconds: the healthy file appears when Diego would
	// report the instance running; a short period keeps that lag small.
	recipeProbePeriodSeconds = 2
)

// RecipeSource reads the recipe a StatefulSet's pods run back from what its
// front records on it (the BBS front: the DesiredLRP as desired), so the
// recipe Secret can be rebuilt from the StatefulSet alone. ok is false for
// a StatefulSet the source has no record of.
type RecipeSource func(sts *appsv1.StatefulSet) (recipe *actions.Recipe, ok bool, err error)

// BuilderOption configures a Builder.
type BuilderOption func(*Builder)

// WithRecipeSource lets OwnedObjects rebuild recipe Secrets with source.
func WithRecipeSource(source RecipeSource) BuilderOption {
	return func(b *Builder) { b.recipeSource = source }
}

// RecipeSecretNameFor returns the name of the recipe Secret of the
// StatefulSet called stsName.
func RecipeSecretNameFor(stsName string) string {
	return stsName + recipeSecretSuffix
}

// RecipeSecretName returns the name of the recipe Secret sts's pods mount,
// or "" if they run no recipe.
func RecipeSecretName(sts *appsv1.StatefulSet) string {
	want := RecipeSecretNameFor(sts.Name)
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Name == RecipeVolumeName && v.Secret != nil && v.Secret.SecretName == want {
			return want
		}
	}
	return ""
}

// lrpRecipeSecret is the recipe Secret of an LRP, with the digest of its
// recipe recorded on it.
func lrpRecipeSecret(name, namespace string, labels map[string]string, recipe *actions.Recipe) (*corev1.Secret, error) {
	secret, err := RecipeSecret(name, namespace, labels, recipe)
	if err != nil {
		return nil, models.Invalidf("%v", err)
	}
	sum := sha256.Sum256(secret.Data[RecipeSecretKey])
	secret.Annotations = map[string]string{AnnotationRecipeSHA256: hex.EncodeToString(sum[:])}
	return secret, nil
}

// addRecipe makes the app container run lrp's recipe: the runner, the
// recipe Secret, the state and home emptyDirs, and a readiness probe on the
// healthy file where the recipe has a monitor (check_definition probes,
// when CC sent one, were added from the health checks already).
func (b *Builder) addRecipe(spec *corev1.PodSpec, container *corev1.Container, lrp *workload.DesiredLRP, stsName, namespace string, labels map[string]string) (*corev1.Secret, error) {
	recipe := lrp.Process.Recipe
	secret, err := lrpRecipeSecret(RecipeSecretNameFor(stsName), namespace, labels, recipe)
	if err != nil {
		return nil, err
	}
	flags := []string{"--cache-dir", RecipeCacheDir}
	if recipe.Monitor != nil {
		flags = append(flags, "--healthy-file", RecipeHealthyFile)
	}
	// harden left the pod without a uid where the image's user applies.
	imageUser := spec.SecurityContext != nil && spec.SecurityContext.RunAsUser == nil
	flags = append(flags, b.runRecipeAs(spec, container, recipe, imageUser)...)
	if err := b.AddRunner(spec, container, secret.Name, flags...); err != nil {
		if errors.Is(err, ErrNoRunnerImage) {
			return nil, models.Invalidf("root_fs: this Iris cannot run buildpack apps: lrp.runner_image (Iris's own image, which brings the action runner) is not set")
		}
		return nil, err
	}
	spec.Volumes = append(spec.Volumes,
		corev1.Volume{Name: RecipeStateVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	container.VolumeMounts = append(container.VolumeMounts,
		corev1.VolumeMount{Name: RecipeStateVolumeName, MountPath: RecipeStatePath})
	addStackHome(spec, container)
	if recipe.Monitor != nil {
		// The runner runs the monitor itself, as Diego's executor does:
		// it fails the start timeout and kills an instance whose checks
		// fail once it was healthy. Kubernetes only needs to know when
		// the instance became healthy, to route it.
		container.ReadinessProbe = &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{
				Command: []string{RunnerBinary, "actions", "healthy", RecipeHealthyFile},
			}},
			TimeoutSeconds:   checkTimeoutSeconds,
			PeriodSeconds:    recipeProbePeriodSeconds,
			FailureThreshold: 1,
		}
	}
	return secret, nil
}

// addStackHome gives container the vcap user's home as an emptyDir, with
// HOME and USER: Garden gives a process its user's HOME and USER, and
// relative download targets (CC's droplet goes to ".") and the launcher's
// "app" directory resolve against HOME. The stack image's own home is
// not the pod user's to write (and the root file system may be read-only).
func addStackHome(spec *corev1.PodSpec, container *corev1.Container) {
	spec.Volumes = append(spec.Volumes,
		corev1.Volume{Name: recipeHomeVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	container.VolumeMounts = append(container.VolumeMounts,
		corev1.VolumeMount{Name: recipeHomeVolumeName, MountPath: StackHome})
	container.Env = append(container.Env,
		corev1.EnvVar{Name: "HOME", Value: StackHome},
		corev1.EnvVar{Name: "USER", Value: stackUser},
	)
}

// recipeSecretOf rebuilds sts's recipe Secret, owned by sts, with the
// builder's recipe source: nil when sts's pods run no recipe or there is
// no source or record to rebuild it from.
func (b *Builder) recipeSecretOf(sts *appsv1.StatefulSet) (*corev1.Secret, error) {
	name := RecipeSecretName(sts)
	if name == "" || b.recipeSource == nil {
		return nil, nil
	}
	recipe, ok, err := b.recipeSource(sts)
	if err != nil {
		return nil, fmt.Errorf("statefulset %s/%s: reading its recipe: %w", sts.Namespace, sts.Name, err)
	}
	if !ok {
		return nil, nil
	}
	secret, err := lrpRecipeSecret(name, sts.Namespace, sts.Labels, recipe)
	if err != nil {
		return nil, fmt.Errorf("statefulset %s/%s: recipe: %w", sts.Namespace, sts.Name, err)
	}
	secret.OwnerReferences = []metav1.OwnerReference{OwnerReference(sts)}
	return secret, nil
}

// RunnerFailureReason is the failure reason the runner reported as the
// container's termination message (see AddRunner), when it did.
func RunnerFailureReason(t *corev1.ContainerStateTerminated) (string, bool) {
	if t == nil || t.Message == "" {
		return "", false
	}
	var report actions.Result
	if err := json.Unmarshal([]byte(t.Message), &report); err != nil || !report.Failed || report.FailureReason == "" {
		return "", false
	}
	return report.FailureReason, true
}

// isRecipeSecretName reports whether name is a recipe Secret's.
func isRecipeSecretName(name string) bool {
	return strings.HasSuffix(name, recipeSecretSuffix)
}
