package k8s

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"code.cloudfoundry.org/lager/v3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/actions"
	"github.com/iris-cf/iris/models"
)

// A recipe task is a task desired through the BBS front (CC's `cf
// run-task` and staging): a Job whose pod runs the TaskDefinition's
// recipe with Iris's runner in the task's root file system. Its objects
// are told apart from the OPI front's task and staging Jobs, which share
// their source types (for logs), by AnnotationRecipeTaskGUID.
const (
	// AnnotationRecipeTaskGUID is the task's guid, exactly as the client
	// sent it (labels cannot hold every guid BBS accepts), on the Job and
	// its pod.
	AnnotationRecipeTaskGUID = "cloudfoundry.org/bbs_task_guid"
	// AnnotationRecipeTaskOutcome records the task's outcome on the Job
	// once it is known ({failed, failure_reason, result, completed_at}), so
	// it outlives the pod and an Iris restart.
	AnnotationRecipeTaskOutcome = "cloudfoundry.org/bbs_task_outcome"
	// AnnotationRecipeTaskResolving is when the completion callback was
	// first posted (RFC 3339): the task is RESOLVING from then on.
	AnnotationRecipeTaskResolving = "cloudfoundry.org/bbs_task_resolving"
)

// ErrTaskExists is CreateRecipeTask's answer for a guid that has a Job.
var ErrTaskExists = fmt.Errorf("the task guid is desired already")

// RecipeTask is one task as the BBS front hands it to Kubernetes.
type RecipeTask struct {
	GUID   string
	Domain string
	// SourceType is SourceTypeTask or SourceTypeStaging: the log source
	// of the pod's output.
	SourceType                  string
	AppGUID, OrgGUID, SpaceGUID string
	AppName, OrgName, SpaceName string
	// TaskName is the `cf run-task` name (logs: APP/TASK/<name>).
	TaskName string
	// Image is the root file system the recipe runs in.
	Image string
	// InStack is true when Image is a stack's (root_fs preloaded:<stack>):
	// the recipe then runs as the vcap user with its home, as a buildpack
	// app's does (a buildpack `cf run-task` downloads its droplet there).
	InStack                            bool
	RegistryUsername, RegistryPassword string
	// RunsAsImageUser lets a docker image's own user apply (privileged
	// tasks, root docker images where the operator allows them).
	RunsAsImageUser bool
	Recipe          *actions.Recipe
	// MemoryMB, DiskMB, CPUWeight bound the pod as an app instance's.
	MemoryMB, DiskMB, CPUWeight int64
	// PlacementTags place the pod in an isolation segment (the first tag).
	PlacementTags []string
	// CompletionCallback is the URL the outcome is posted to ("" for none).
	CompletionCallback string
	// FrontState is what the front keeps on the Job (the task as stored).
	FrontState map[string]string
}

// RecipeTaskObjects are the objects one recipe task becomes.
type RecipeTaskObjects struct {
	Job            *batchv1.Job
	RecipeSecret   *corev1.Secret
	RegistrySecret *corev1.Secret
	CallbackSecret *corev1.Secret
}

// RecipeTaskJobName is the Job of a task guid: derived from the guid
// alone, so every guid-only call finds it by name in the caches.
func RecipeTaskJobName(guid string) string {
	sum := sha256.Sum256([]byte(guid))
	return "bbs-task-" + hex.EncodeToString(sum[:])[:20]
}

// IsRecipeTask reports whether a Job or pod belongs to a recipe task.
func IsRecipeTask(obj metav1.Object) bool {
	_, ok := obj.GetAnnotations()[AnnotationRecipeTaskGUID]
	return ok
}

// BuildRecipeTask returns the objects of task in namespace: a Job that
// runs once (no retries: BBS runs a task at most once) a pod with the
// runner, the recipe Secret, and the registry and callback Secrets when
// needed. It fails only with an InvalidRequestError or ErrNoRunnerImage.
func (b *Builder) BuildRecipeTask(task *RecipeTask, namespace string) (*RecipeTaskObjects, error) {
	name := RecipeTaskJobName(task.GUID)
	labels := map[string]string{
		LabelSourceType: task.SourceType,
		LabelAppGUID:    sanitizeLabelValue(task.AppGUID),
		LabelOrgGUID:    sanitizeLabelValue(task.OrgGUID),
		LabelSpaceGUID:  sanitizeLabelValue(task.SpaceGUID),
	}
	for k, v := range labels {
		if v == "" {
			delete(labels, k)
		}
	}
	annotations := map[string]string{
		AnnotationRecipeTaskGUID: task.GUID,
		AnnotationBBSDomain:      task.Domain,
		AnnotationTaskName:       task.TaskName,
		AnnotationAppName:        task.AppName,
		AnnotationOrgName:        task.OrgName,
		AnnotationSpaceName:      task.SpaceName,
	}
	if len(task.PlacementTags) > 0 {
		annotations[AnnotationIsolationSegment] = task.PlacementTags[0]
	}
	objects := &RecipeTaskObjects{}
	jobAnnotations := map[string]string{}
	for k, v := range task.FrontState {
		jobAnnotations[k] = v
	}
	for k, v := range annotations {
		jobAnnotations[k] = v
	}
	if task.CompletionCallback != "" {
		secret, err := completionCallback(jobAnnotations, name, namespace, labels, task.CompletionCallback)
		if err != nil {
			return nil, err
		}
		objects.CallbackSecret = secret
	}

	recipe, err := RecipeSecret(name+recipeSecretSuffix, namespace, labels, task.Recipe)
	if err != nil {
		return nil, models.Invalidf("%v", err)
	}
	objects.RecipeSecret = recipe
	if task.RegistryUsername != "" {
		secret, err := registrySecret(name+registrySecretSuffix, namespace, labels, task.Image, task.RegistryUsername, task.RegistryPassword)
		if err != nil {
			return nil, err
		}
		objects.RegistrySecret = secret
	}

	podSpec := b.runOncePodSpec(corev1.Container{
		Name:  TaskContainerName,
		Image: task.Image,
		// The variables Diego's executor adds for a task's processes;
		// the runner passes its environment on to them.
		Env: []corev1.EnvVar{
			{Name: "CF_INSTANCE_GUID", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}}},
			{Name: "CF_INSTANCE_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}}},
			{Name: "CF_INSTANCE_INTERNAL_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		},
		Resources:       b.resources(task.MemoryMB, task.DiskMB, task.CPUWeight),
		SecurityContext: containerSecurityContext(),
	})
	b.placeJob(&podSpec, firstTag(task.PlacementTags))
	b.harden(&podSpec, task.RunsAsImageUser)
	userFlags := b.runRecipeAs(&podSpec, &podSpec.Containers[0], task.Recipe, task.RunsAsImageUser)
	if err := b.AddRunner(&podSpec, &podSpec.Containers[0], recipe.Name, userFlags...); err != nil {
		return nil, err
	}
	b.addUploadProxy(&podSpec, &podSpec.Containers[0], task.Recipe)
	if task.InStack {
		addStackHome(&podSpec, &podSpec.Containers[0])
	}
	podSpec.ImagePullSecrets = b.pullSecrets(false, objects.RegistrySecret)
	objects.Job = runOnceJob(name, namespace, labels, jobAnnotations, annotations, podSpec)
	return objects, nil
}

// RecipeTaskClient creates, finds and cancels recipe tasks' Jobs.
type RecipeTaskClient struct {
	clientset  kubernetes.Interface
	caches     *Caches
	builder    *Builder
	namespaces []string
}

// NewRecipeTaskClient creates tasks in the first of namespaces and finds
// them in any.
func NewRecipeTaskClient(clientset kubernetes.Interface, caches *Caches, builder *Builder, namespaces []string) *RecipeTaskClient {
	return &RecipeTaskClient{clientset: clientset, caches: caches, builder: builder, namespaces: namespaces}
}

// Create builds and creates task's objects: ErrTaskExists when its guid
// has a Job (even one whose callback was answered and that only waits to
// be deleted). The Secrets come first, so the pod finds them; a failure
// removes the Secrets it wrote, so bad input leaves nothing behind.
func (c *RecipeTaskClient) Create(ctx context.Context, logger lager.Logger, task *RecipeTask) error {
	objects, err := c.builder.BuildRecipeTask(task, c.namespaces[0])
	if err != nil {
		return err
	}
	existing, err := c.Job(ctx, task.GUID)
	if err != nil && err != models.ErrNotFound {
		return err
	}
	if existing != nil {
		return ErrTaskExists
	}
	if err := requireUploadIdentity(ctx, c.clientset, objects.Job); err != nil {
		return err
	}
	var written []*corev1.Secret
	undo := func() {
		for _, secret := range written {
			deleteSecret(ctx, c.clientset, logger, secret)
		}
	}
	for _, secret := range []*corev1.Secret{objects.RecipeSecret, objects.RegistrySecret, objects.CallbackSecret} {
		if secret == nil {
			continue
		}
		if _, err := Apply(ctx, c.clientset, secret); err != nil {
			undo()
			if apierrors.IsInvalid(err) {
				return models.Invalidf("invalid task: %s", apiErrorMessage(err))
			}
			return fmt.Errorf("writing secret %s/%s: %w", secret.Namespace, secret.Name, err)
		}
		written = append(written, secret)
	}
	job := objects.Job
	created, err := c.clientset.BatchV1().Jobs(job.Namespace).Create(ctx, job, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		// Another desire of the same guid won between the check and here;
		// the Secrets are that task's now.
		return ErrTaskExists
	case apierrors.IsInvalid(err) || apierrors.IsBadRequest(err):
		undo()
		return models.Invalidf("invalid task: %s", apiErrorMessage(err))
	case err != nil:
		undo()
		return fmt.Errorf("creating task job %s/%s: %w", job.Namespace, job.Name, err)
	}
	owner := metav1.OwnerReference{APIVersion: "batch/v1", Kind: "Job", Name: created.Name, UID: created.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}
	for _, secret := range written {
		if err := adopt(ctx, c.clientset.CoreV1().Secrets(secret.Namespace), secret.Name, owner); err != nil {
			// The task runs; only garbage collection of the Secret is at stake.
			logger.Error("adopting-secret", err, lager.Data{"secret": secret.Name})
		}
	}
	logger.Info("created", lager.Data{"job": created.Name, "namespace": created.Namespace})
	return nil
}

// Job finds the Job of guid in the caches or, on a miss (a read right
// after a desire), through the API; models.ErrNotFound if there is none.
// A Job being deleted counts as gone.
func (c *RecipeTaskClient) Job(ctx context.Context, guid string) (*batchv1.Job, error) {
	name := RecipeTaskJobName(guid)
	for _, ns := range c.namespaces {
		if job := c.caches.Job(ns, name); job != nil && job.Annotations[AnnotationRecipeTaskGUID] == guid {
			if job.DeletionTimestamp != nil {
				return nil, models.ErrNotFound
			}
			return job, nil
		}
	}
	for _, ns := range c.namespaces {
		job, err := c.getJob(ctx, ns, name)
		if err != nil {
			return nil, err
		}
		if job == nil || job.Annotations[AnnotationRecipeTaskGUID] != guid || job.DeletionTimestamp != nil {
			continue
		}
		return job, nil
	}
	return nil, models.ErrNotFound
}

// Fresh reads job again through the API: a cancel must see what an
// earlier cancel wrote, although the caches may not show it yet.
// models.ErrNotFound if it is gone.
func (c *RecipeTaskClient) Fresh(ctx context.Context, job *batchv1.Job) (*batchv1.Job, error) {
	fresh, err := c.getJob(ctx, job.Namespace, job.Name)
	if err != nil {
		return nil, err
	}
	if fresh == nil || fresh.DeletionTimestamp != nil {
		return nil, models.ErrNotFound
	}
	return fresh, nil
}

// getJob reads one Job through the API, nil if there is none. It lists by
// name rather than getting: Iris's Role grants list on Jobs, not get.
func (c *RecipeTaskClient) getJob(ctx context.Context, namespace, name string) (*batchv1.Job, error) {
	list, err := c.clientset.BatchV1().Jobs(namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("reading job %s/%s: %w", namespace, name, err)
	}
	for i := range list.Items {
		if list.Items[i].Name == name {
			return &list.Items[i], nil
		}
	}
	return nil, nil
}

// Jobs calls fn with every recipe task's Job in the caches.
func (c *RecipeTaskClient) Jobs(fn func(*batchv1.Job)) {
	c.caches.EachJob(func(job *batchv1.Job) {
		if IsRecipeTask(job) && job.DeletionTimestamp == nil {
			fn(job)
		}
	})
}

// Pods are the pods of a recipe task's Job, from the caches.
func (c *RecipeTaskClient) Pods(job *batchv1.Job) []*corev1.Pod {
	return c.caches.JobPods(job.Namespace, job.Name)
}

// Cancel marks the task's Job cancelled and suspends it, which stops its
// pod; the reporter then completes the task as cancelled.
func (c *RecipeTaskClient) Cancel(ctx context.Context, job *batchv1.Job) error {
	if err := cancelJob(ctx, c.clientset, job); err != nil {
		return err
	}
	c.awaitCached(ctx, job, func(cached *batchv1.Job) bool { return cached.Annotations[AnnotationCancelled] != "" })
	return nil
}

// cacheCatchUpTimeout bounds how long a write waits for Iris's caches to
// show it. It is a courtesy, not a guarantee: the write has happened.
const cacheCatchUpTimeout = 2 * time.Second

// awaitCached waits (briefly) until the caches show job as done says.
// BBS answers a read right after a write from its database, and CC's
// clients may read back what they just changed; Iris reads from caches a
// watch event behind the API server, so without this a get right after a
// cancel would still say PENDING or RUNNING.
func (c *RecipeTaskClient) awaitCached(ctx context.Context, job *batchv1.Job, done func(*batchv1.Job) bool) {
	_ = wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, cacheCatchUpTimeout, true, func(context.Context) (bool, error) {
		cached := c.caches.Job(job.Namespace, job.Name)
		return cached == nil || done(cached), nil
	})
}

// RecipeTaskOutcome is a recipe task's outcome as recorded on its Job.
type RecipeTaskOutcome struct {
	Failed        bool   `json:"failed"`
	FailureReason string `json:"failure_reason"`
	Result        string `json:"result"`
	// CompletedAt is when Iris first saw the task completed (Unix ns).
	CompletedAt int64 `json:"completed_at"`
	// exited: the task's container terminated (observed, not recorded).
	// Its pod then finishes by itself: the kubelet stops the upload
	// sidecar after it, and the Job completes.
	exited bool
}

// RecipeTaskStatus is where a recipe task stands, read from its Job and
// pods (level-triggered: nothing of it lives only in memory).
type RecipeTaskStatus struct {
	// Phase is PENDING, RUNNING, COMPLETED or RESOLVING (BBS's names).
	Phase string
	// CellID is the node the pod runs on, once it has one.
	CellID string
	// Outcome is set from COMPLETED on.
	Outcome *RecipeTaskOutcome
	// Recorded is true once the outcome is recorded on the Job.
	Recorded bool
}

// Recipe task phases, as BBS names the task states.
const (
	TaskPhasePending   = "PENDING"
	TaskPhaseRunning   = "RUNNING"
	TaskPhaseCompleted = "COMPLETED"
	TaskPhaseResolving = "RESOLVING"
)

// TaskCancelledReason is BBS's failure reason for a cancelled task.
const TaskCancelledReason = "task was cancelled"

// RecipeTaskStatusOf derives a recipe task's status from its Job and its
// pods. now stamps an outcome seen for the first time.
func RecipeTaskStatusOf(job *batchv1.Job, pods []*corev1.Pod, now int64) RecipeTaskStatus {
	status := RecipeTaskStatus{Phase: TaskPhasePending}
	for _, pod := range pods {
		if pod.Spec.NodeName != "" {
			status.CellID = pod.Spec.NodeName
		}
	}
	if recorded, err := decodeOutcome(job.Annotations[AnnotationRecipeTaskOutcome]); err == nil && recorded != nil {
		status.Outcome, status.Recorded = recorded, true
		status.Phase = TaskPhaseCompleted
		if job.Annotations[AnnotationRecipeTaskResolving] != "" {
			status.Phase = TaskPhaseResolving
		}
		return status
	}
	outcome := observedOutcome(job, pods)
	if outcome != nil {
		outcome.CompletedAt = now
		outcome.FailureReason = truncate(outcome.FailureReason, maxFailureReasonBytes)
		status.Outcome, status.Phase = outcome, TaskPhaseCompleted
		return status
	}
	if status.CellID != "" {
		status.Phase = TaskPhaseRunning
	}
	return status
}

// observedOutcome is the outcome the Job and its pods show, or nil while
// the task runs or waits: cancelled; the runner's report (the task
// container's termination message); a pod the scheduler cannot place (at
// once, in Diego's placement wording, as its auction fails a task); a pod
// that cannot start its containers; a finished Job without a report.
func observedOutcome(job *batchv1.Job, pods []*corev1.Pod) *RecipeTaskOutcome {
	if job.Annotations[AnnotationCancelled] != "" {
		return &RecipeTaskOutcome{Failed: true, FailureReason: TaskCancelledReason}
	}
	for _, pod := range pods {
		for _, s := range pod.Status.ContainerStatuses {
			if t := s.State.Terminated; s.Name == TaskContainerName && t != nil {
				outcome := terminatedOutcome(t)
				outcome.exited = true
				return outcome
			}
		}
	}
	for _, pod := range pods {
		if c := PodCondition(pod, corev1.PodScheduled); c != nil && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return &RecipeTaskOutcome{Failed: true, FailureReason: PlacementError(c.Message)}
		}
		statuses := append(append([]corev1.ContainerStatus(nil), pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
		for _, s := range statuses {
			if w := s.State.Waiting; w != nil && containerCannotStart(w.Reason) {
				reason := "failed to create container: " + w.Reason
				if w.Message != "" {
					reason += ": " + w.Message
				}
				return &RecipeTaskOutcome{Failed: true, FailureReason: reason}
			}
			if t := s.State.Terminated; s.Name == RunnerInitContainerName && t != nil && t.ExitCode != 0 {
				return &RecipeTaskOutcome{Failed: true, FailureReason: fmt.Sprintf("failed to install the action runner: exited with status %d", t.ExitCode)}
			}
		}
		if pod.Status.Phase == corev1.PodFailed {
			reason := "cell disappeared before completion"
			if pod.Status.Message != "" {
				reason += ": " + pod.Status.Message
			}
			return &RecipeTaskOutcome{Failed: true, FailureReason: reason}
		}
	}
	failed, finished := JobFinished(job)
	if !finished {
		return nil
	}
	reason := "task finished without a report"
	if failed {
		reason = "task failed"
		for _, c := range job.Status.Conditions {
			if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue && c.Message != "" {
				reason = "task failed: " + c.Message
			}
		}
	}
	return &RecipeTaskOutcome{Failed: true, FailureReason: reason}
}

// terminatedOutcome reads the runner's report from the task container's
// termination message; without one (the runner never ran, or was killed)
// the exit status explains it as Diego's executor words it.
func terminatedOutcome(t *corev1.ContainerStateTerminated) *RecipeTaskOutcome {
	if t.Message == "" && t.ExitCode == 0 {
		return &RecipeTaskOutcome{}
	}
	if t.Message != "" {
		if report, err := actions.DecodeReport([]byte(t.Message)); err == nil {
			if t.ExitCode != 0 && !report.Failed {
				return &RecipeTaskOutcome{Failed: true, FailureReason: "Exited with status " + strconv.Itoa(int(t.ExitCode))}
			}
			return &RecipeTaskOutcome{Failed: report.Failed, FailureReason: report.FailureReason, Result: report.Result}
		}
	}
	reason := "Exited with status " + strconv.Itoa(int(t.ExitCode))
	if t.Reason == "OOMKilled" {
		reason += " (out of memory)"
	}
	return &RecipeTaskOutcome{Failed: true, FailureReason: reason}
}

// containerCannotStart are the kubelet's waiting reasons that do not pass
// by themselves.
func containerCannotStart(reason string) bool {
	switch reason {
	case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
		"CreateContainerConfigError", "CreateContainerError", "RunContainerError":
		return true
	}
	return false
}

func decodeOutcome(recorded string) (*RecipeTaskOutcome, error) {
	if recorded == "" {
		return nil, nil
	}
	var outcome RecipeTaskOutcome
	if err := json.Unmarshal([]byte(recorded), &outcome); err != nil {
		return nil, fmt.Errorf("decoding recorded task outcome: %w", err)
	}
	return &outcome, nil
}

// RecordRecipeTaskOutcome writes outcome on the Job, and with resolving
// also the start of its callback, in one patch. It also suspends the Job:
// a pod the scheduler could not place must not run after its task was
// reported failed. Not where the task's container exited: the pod is
// finishing by itself (a native sidecar, the upload proxy, is stopped by
// the kubelet just after), and suspending would delete it and leave the
// Job suspended, never complete. models.ErrNotFound if the Job is gone.
func RecordRecipeTaskOutcome(ctx context.Context, clientset kubernetes.Interface, job *batchv1.Job, outcome *RecipeTaskOutcome, resolvingAt string) error {
	recorded, err := json.Marshal(outcome)
	if err != nil {
		return err
	}
	annotations := map[string]string{AnnotationRecipeTaskOutcome: string(recorded)}
	if resolvingAt != "" {
		annotations[AnnotationRecipeTaskResolving] = resolvingAt
	}
	patch := map[string]any{"metadata": map[string]any{"annotations": annotations}}
	if _, finished := JobFinished(job); !finished && !outcome.exited {
		patch["spec"] = map[string]any{"suspend": true}
	}
	data, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	_, err = clientset.BatchV1().Jobs(job.Namespace).Patch(ctx, job.Name, types.MergePatchType, data, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return models.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("recording the outcome of task job %s/%s: %w", job.Namespace, job.Name, err)
	}
	return nil
}

// maxFailureReasonBytes is what BBS keeps of a failure reason.
const maxFailureReasonBytes = 1024

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// firstTag is the isolation segment of a BBS task: CC sends the space's
// segment as its only placement tag, as for LRPs.
func firstTag(tags []string) string {
	if len(tags) == 0 {
		return ""
	}
	return tags[0]
}
