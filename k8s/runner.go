package k8s

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/actions"
)

// Diego's executor drives a recipe from outside the container, through
// Garden. Kubernetes only runs what is inside the pod, so the runner
// travels in: an init container from Iris's own image copies the iris
// binary into an emptyDir, and the pod's main container starts it as
// `iris actions`, which then runs the recipe's setup, action and monitor in
// that container's root file system (the stack image). The recipe itself
// is mounted from a Secret, because download URLs and env carry
// credentials.
const (
	// RunnerVolumeName is the emptyDir holding the runner binary.
	RunnerVolumeName = "iris-runner"
	// RunnerMountPath is where containers see it (read-only).
	RunnerMountPath = "/iris-runner"
	// RunnerBinary is the runner inside the main container.
	RunnerBinary = RunnerMountPath + "/iris"
	// RecipeVolumeName is the Secret volume holding the recipe.
	RecipeVolumeName = "iris-recipe"
	// RecipeMountPath is where the main container sees it.
	RecipeMountPath = "/etc/iris-recipe"
	// RecipeSecretKey is the recipe's key in its Secret (JSON, actions.Recipe).
	RecipeSecretKey = "recipe.json"
	// RunnerInitContainerName installs the runner.
	RunnerInitContainerName = "iris-runner-install"
	// RunnerReportFile is where the runner writes its outcome
	// ({failed, failure_reason, result}): the container's termination
	// message, so the outcome survives on the pod's status without any
	// other channel out of the pod. Kubernetes keeps at most 4096 bytes of it.
	RunnerReportFile = "/dev/termination-log"
	// installedRunnerPath is the copy's path inside the init container.
	installedRunnerPath = "/iris-runner/iris"
	// irisImageBinary is the iris binary in Iris's image (scripts/image).
	irisImageBinary = "/usr/local/bin/iris"
)

// ErrNoRunnerImage refuses a recipe when Iris was not told its own image.
var ErrNoRunnerImage = errors.New("this Iris cannot run Diego recipes: lrp.runner_image (Iris's own image) is not set")

// RecipeSecret is the Secret carrying recipe into a pod; name it after
// the pod's owner and own it by that owner.
func RecipeSecret(name, namespace string, labels map[string]string, recipe *actions.Recipe) (*corev1.Secret, error) {
	if err := recipe.Validate(); err != nil {
		return nil, fmt.Errorf("recipe: %w", err)
	}
	data, err := json.Marshal(recipe)
	if err != nil {
		return nil, fmt.Errorf("encoding recipe: %w", err)
	}
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{RecipeSecretKey: data},
	}, nil
}

// AddRunner makes container (one of spec's containers, already hardened
// or not) run the recipe in Secret recipeSecret with Iris's runner: it
// adds the volumes, the init container that installs the runner, and the
// container's command. flags are extra `iris actions` flags, e.g.
// --healthy-file. The container keeps its image: the stack's root file
// system the recipe runs in.
func (b *Builder) AddRunner(spec *corev1.PodSpec, container *corev1.Container, recipeSecret string, flags ...string) error {
	return b.addRunnerReportingTo(spec, container, recipeSecret, RunnerReportFile, flags...)
}

// addRunnerReportingTo is AddRunner with the report written to reportFile
// instead of the termination message (a staging's report goes to a shared
// volume for the container that sends it).
func (b *Builder) addRunnerReportingTo(spec *corev1.PodSpec, container *corev1.Container, recipeSecret, reportFile string, flags ...string) error {
	if b.cfg.RunnerImage == "" {
		return ErrNoRunnerImage
	}
	spec.Volumes = append(spec.Volumes,
		corev1.Volume{Name: RunnerVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			// The static binary is about 60 MB; bounded so a broken image
			// cannot fill the node's disk.
			SizeLimit: ptr.To(resource.MustParse("256Mi")),
		}}},
		corev1.Volume{Name: RecipeVolumeName, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName:  recipeSecret,
			DefaultMode: ptr.To[int32](0o444),
		}}},
	)
	spec.InitContainers = append(spec.InitContainers, corev1.Container{
		Name:            RunnerInitContainerName,
		Image:           b.cfg.RunnerImage,
		ImagePullPolicy: corev1.PullPolicy(b.cfg.RunnerImagePullPolicy),
		Command:         []string{irisImageBinary, "actions", "install", installedRunnerPath},
		VolumeMounts:    []corev1.VolumeMount{{Name: RunnerVolumeName, MountPath: path.Dir(installedRunnerPath)}},
		SecurityContext: runnerInitSecurityContext(),
		// Init containers count towards the pod's requests only as their
		// maximum with the app's, so these are free beside any app.
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			// The copy's dirty page cache is charged to this container and
			// is written back slower than it fills: at 64Mi a real node
			// OOM-killed the copy of the ~85 MB binary. The bound is the
			// volume's.
			Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
		},
	})
	container.Command = append([]string{RunnerBinary, "actions",
		"--recipe", path.Join(RecipeMountPath, RecipeSecretKey),
		"--report-file", reportFile,
	}, flags...)
	container.Args = nil
	if reportFile == RunnerReportFile {
		container.TerminationMessagePath = RunnerReportFile
		// The report is the outcome; the log's tail is not a substitute for it.
		container.TerminationMessagePolicy = corev1.TerminationMessageReadFile
	}
	container.VolumeMounts = append(container.VolumeMounts,
		corev1.VolumeMount{Name: RunnerVolumeName, MountPath: RunnerMountPath, ReadOnly: true},
		corev1.VolumeMount{Name: RecipeVolumeName, MountPath: RecipeMountPath, ReadOnly: true},
	)
	return nil
}

// runnerInitSecurityContext: the copy needs no privilege at all; it runs
// as the pod's (app) user, which can write the emptyDir.
func runnerInitSecurityContext() *corev1.SecurityContext {
	sc := containerSecurityContext()
	sc.ReadOnlyRootFilesystem = ptr.To(true)
	return sc
}

// RunsRecipe reports whether pod runs a recipe with the runner (AddRunner
// gave it the install init container): its containers' output is then the
// runner's tagged lines. Decided by the init container's name because the
// lean caches keep names but not commands.
func RunsRecipe(pod *corev1.Pod) bool {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == RunnerInitContainerName {
			return true
		}
	}
	return false
}
