package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"code.cloudfoundry.org/lager/v3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/iris-cf/iris/models"
)

// TaskObjects are the objects one task becomes.
type TaskObjects struct {
	Job            *batchv1.Job
	RegistrySecret *corev1.Secret
}

// BuildTask returns the Job that runs task once: no retries (CC decides
// whether to run a task again), the same hardened pod as apps.
func (b *Builder) BuildTask(task *models.TaskRequest, namespace string) (*TaskObjects, error) {
	image, command, err := b.taskImageAndCommand(task)
	if err != nil {
		return nil, err
	}
	name := StatefulSetName(task.AppName, task.Name, task.GUID)
	labels := jobLabels(LabelTaskGUID, task.GUID, SourceTypeTask, task.AppGUID, task.OrgGUID, task.SpaceGUID)
	annotations := map[string]string{
		AnnotationTaskName:           task.Name,
		AnnotationAppName:            task.AppName,
		AnnotationOrgName:            task.OrgName,
		AnnotationSpaceName:          task.SpaceName,
		AnnotationCompletionCallback: task.CompletionCallback,
	}

	env := make([]corev1.EnvVar, 0, len(task.Environment)+2)
	for _, e := range task.Environment {
		env = append(env, corev1.EnvVar{Name: e.Name, Value: e.Value})
	}
	env = append(env,
		corev1.EnvVar{Name: "CF_INSTANCE_GUID", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}}},
		corev1.EnvVar{Name: "CF_INSTANCE_INTERNAL_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
	)

	podSpec := b.runOncePodSpec(corev1.Container{
		Name:            TaskContainerName,
		Image:           image,
		Command:         command,
		Env:             env,
		Resources:       b.resources(task.MemoryMB, task.DiskMB, task.CPUWeight),
		SecurityContext: containerSecurityContext(),
	})
	b.harden(&podSpec, task.Lifecycle.DockerLifecycle != nil && b.cfg.AllowRootDockerImages)
	b.placeJob(&podSpec, task.IsolationSegment)
	objects := &TaskObjects{}
	if docker := task.Lifecycle.DockerLifecycle; docker != nil && docker.RegistryUsername != "" {
		secret, err := registrySecret(name+registrySecretSuffix, namespace, labels, docker.Image, docker.RegistryUsername, docker.RegistryPassword)
		if err != nil {
			return nil, err
		}
		objects.RegistrySecret = secret
	}
	podSpec.ImagePullSecrets = b.pullSecrets(task.Lifecycle.BuildpackLifecycle != nil, objects.RegistrySecret)
	objects.Job = runOnceJob(name, namespace, labels, annotations, annotations, podSpec)
	return objects, nil
}

func (b *Builder) taskImageAndCommand(task *models.TaskRequest) (string, []string, error) {
	switch {
	case task.Lifecycle.DockerLifecycle != nil:
		d := task.Lifecycle.DockerLifecycle
		if task.Command != "" {
			return d.Image, []string{"/bin/sh", "-c", task.Command}, nil
		}
		return d.Image, d.Command, nil
	case task.Lifecycle.BuildpackLifecycle != nil:
		bp := task.Lifecycle.BuildpackLifecycle
		command := task.Command
		if command == "" {
			command = bp.StartCommand
		}
		return b.dropletImage(bp), b.launch(command), nil
	default:
		return "", nil, models.Invalidf("lifecycle: one of docker_lifecycle or buildpack_lifecycle is required")
	}
}

// TaskClient carries out CC's task requests against Kubernetes.
type TaskClient struct {
	clientset  kubernetes.Interface
	caches     *Caches
	builder    *Builder
	namespaces []string
}

// NewTaskClient returns a client for tasks in namespaces (the first is the default).
func NewTaskClient(clientset kubernetes.Interface, caches *Caches, builder *Builder, namespaces []string) *TaskClient {
	return &TaskClient{clientset: clientset, caches: caches, builder: builder, namespaces: namespaces}
}

// Desire starts the task; desiring the same task guid again does nothing.
func (c *TaskClient) Desire(ctx context.Context, logger lager.Logger, task *models.TaskRequest) error {
	logger = logger.Session("desire-task", lager.Data{"task_guid": task.GUID})
	namespace, err := chooseNamespace(task.Namespace, c.namespaces)
	if err != nil {
		return err
	}
	if task.IsolationSegment == "" {
		placed := *task
		placed.IsolationSegment = IsolationSegmentOfApp(c.caches, task.AppGUID)
		task = &placed
	}
	objects, err := c.builder.BuildTask(task, namespace)
	if err != nil {
		return err
	}
	if len(c.caches.JobsByTaskGUID(task.GUID)) > 0 {
		logger.Info("already-desired")
		return nil
	}
	return createJob(ctx, c.clientset, logger, "task", objects.Job, objects.RegistrySecret)
}

// Get returns one task.
func (c *TaskClient) Get(ctx context.Context, guid string) (*models.TaskResponse, error) {
	job, err := c.lookup(ctx, guid)
	if err != nil {
		return nil, err
	}
	return &models.TaskResponse{GUID: guid, State: TaskState(job)}, nil
}

// List returns every task Iris runs or has yet to report, from the cache.
func (c *TaskClient) List() []models.TaskResponse {
	var tasks []models.TaskResponse
	c.caches.EachJob(func(job *batchv1.Job) {
		if job.DeletionTimestamp == nil && job.Labels[LabelSourceType] == SourceTypeTask && !IsRecipeTask(job) {
			tasks = append(tasks, models.TaskResponse{GUID: job.Labels[LabelTaskGUID], State: TaskState(job)})
		}
	})
	return tasks
}

// Cancel stops the task. The Job is not deleted but marked cancelled and
// suspended (which removes its pod): the completion reporter then tells CC
// "task was cancelled" and deletes it, so the report survives an Iris restart.
func (c *TaskClient) Cancel(ctx context.Context, logger lager.Logger, guid string) error {
	job, err := c.lookup(ctx, guid)
	if err != nil {
		return err
	}
	if err := cancelJob(ctx, c.clientset, job); err != nil {
		return err
	}
	logger.Info("cancelled-task", lager.Data{"task_guid": guid, "job": job.Name})
	return nil
}

// cancelJob marks the Job cancelled and suspends it, which removes its pod;
// the reporter then tells CC and deletes the Job. A Job that finished first
// is left alone: CC gets its real outcome.
func cancelJob(ctx context.Context, clientset kubernetes.Interface, job *batchv1.Job) error {
	if _, done := JobFinished(job); done {
		return nil
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{AnnotationCancelled: time.Now().UTC().Format(time.RFC3339)}},
		"spec":     map[string]any{"suspend": true},
	})
	if err != nil {
		return err
	}
	_, err = clientset.BatchV1().Jobs(job.Namespace).Patch(ctx, job.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return models.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("cancelling job %s/%s: %w", job.Namespace, job.Name, err)
	}
	return nil
}

func (c *TaskClient) lookup(ctx context.Context, guid string) (*batchv1.Job, error) {
	return lookupJob(ctx, c.clientset, c.caches, c.namespaces, LabelTaskGUID, SourceTypeTask, guid)
}

// lookupJob finds the live Job labelled guidLabel=guid, in the cache first.
func lookupJob(ctx context.Context, clientset kubernetes.Interface, caches *Caches, namespaces []string, guidLabel, sourceType, guid string) (*batchv1.Job, error) {
	for _, job := range caches.JobsByTaskGUID(guid) {
		if job.DeletionTimestamp == nil && job.Labels[LabelSourceType] == sourceType {
			return job, nil
		}
	}
	selector := labels.SelectorFromSet(labels.Set{guidLabel: sanitizeLabelValue(guid), LabelSourceType: sourceType}).String()
	for _, ns := range namespaces {
		list, err := clientset.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return nil, fmt.Errorf("listing jobs in %s: %w", ns, err)
		}
		for i := range list.Items {
			if list.Items[i].DeletionTimestamp == nil {
				return &list.Items[i], nil
			}
		}
	}
	return nil, models.ErrNotFound
}

// JobFinished reports whether the Job has finished and, if so, whether it
// failed, from its conditions (set by the Job controller).
func JobFinished(job *batchv1.Job) (failed bool, finished bool) {
	for _, c := range job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return false, true
		case batchv1.JobFailed:
			return true, true
		}
	}
	return false, false
}

// TaskState is the task's state as Iris reports it.
func TaskState(job *batchv1.Job) string {
	if job.Annotations[AnnotationCancelled] != "" {
		return models.TaskCancelled
	}
	failed, finished := JobFinished(job)
	switch {
	case !finished:
		return models.TaskRunning
	case failed:
		return models.TaskFailed
	default:
		return models.TaskSucceeded
	}
}
