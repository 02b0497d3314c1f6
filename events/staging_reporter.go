package events

import (
	"context"
	"encoding/json"
	"fmt"

	"code.cloudfoundry.org/lager/v3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

// ImageStager reads a docker image's config and returns CC's staging result,
// or the failure to report; stager/docker implements it (through an adapter).
type ImageStager interface {
	StageImage(ctx context.Context, image, username, password string) (json.RawMessage, *models.StagingError)
}

// StagingJobSource is a JobSource that also reports the pods of staging Jobs.
type StagingJobSource interface {
	JobSource
	AddJobPodEventHandler(handler cache.ResourceEventHandler) error
}

// StagingCancelledMessage is what CC hears for a cancelled staging.
const StagingCancelledMessage = "staging was cancelled"

// Exit codes of Diego's buildpack builder and CC's error ids for them.
func buildpackErrorID(exitCode int32) string {
	switch exitCode {
	case 222:
		return models.NoAppDetectedID
	case 223:
		return models.BuildpackCompileFailed
	case 224:
		return models.BuildpackReleaseFailed
	}
	return models.StagingErrorID
}

// StagingReporter posts each staging's outcome to CC's completion callback
// once: the uploader's result, the docker image's config, or the failure of
// a staging pod (without waiting for the uploader). As for tasks, the outcome
// and its delivery are kept on the Job.
type StagingReporter struct {
	*worker
	*jobLifecycle
	pods      StagingJobSource
	images    ImageStager
	clientset kubernetes.Interface
}

// NewStagingReporter registers for staging Job and pod events.
func NewStagingReporter(logger lager.Logger, clientset kubernetes.Interface, jobs StagingJobSource, callbacks CallbackPoster, images ImageStager, opts Options) (*StagingReporter, error) {
	r := &StagingReporter{pods: jobs, images: images, clientset: clientset}
	r.worker = newWorker(logger, "staging-reporter", opts, func(ctx context.Context, logger lager.Logger, key string) error {
		return r.deliver(ctx, logger, key, r.callback)
	})
	r.resync = resyncJobs(jobs, k8s.SourceTypeStaging)
	r.jobLifecycle = newJobLifecycle(clientset, jobs, callbacks, r.worker, opts.JobTTL)

	enqueueJob := onlySourceType(k8s.SourceTypeStaging, func(obj any) {
		job := obj.(*batchv1.Job)
		r.add(job.Namespace + "/" + job.Name)
	})
	if err := jobs.AddJobEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueueJob,
		UpdateFunc: func(_, obj any) { enqueueJob(obj) },
	}); err != nil {
		return nil, err
	}
	// A staging pod that cannot pull its image never fails its Job: watch
	// the pods too, so such a staging fails at once.
	isOPIStaging := func(pod metav1.Object) bool {
		return pod.GetLabels()[k8s.LabelSourceType] == k8s.SourceTypeStaging && !k8s.IsRecipeTask(pod)
	}
	if err := enqueueJobsOfPods(jobs, isOPIStaging, r.add); err != nil {
		return nil, err
	}
	return r, nil
}

// callback is the staging's outcome in the form deliver posts.
func (r *StagingReporter) callback(ctx context.Context, job *batchv1.Job) (any, lager.Data, bool, error) {
	body, done, err := r.outcome(ctx, job)
	if err != nil || !done {
		return nil, nil, done, err
	}
	return body, lager.Data{"staging_guid": job.Labels[k8s.LabelStagingGUID], "failed": body.Error != nil}, true, nil
}

// outcome is the callback body, once the staging is over.
func (r *StagingReporter) outcome(ctx context.Context, job *batchv1.Job) (models.StagingCallback, bool, error) {
	if job.Annotations[k8s.AnnotationCancelled] != "" {
		return failure("StagingError", StagingCancelledMessage), true, nil
	}
	if recorded := job.Annotations[k8s.AnnotationStagingResult]; recorded != "" {
		var body models.StagingCallback
		if err := json.Unmarshal([]byte(recorded), &body); err != nil {
			return failure("StagingError", "unreadable staging result: "+err.Error()), true, nil
		}
		return body, true, nil
	}
	if job.Annotations[k8s.AnnotationStagingLifecycle] == k8s.StagingLifecycleDocker {
		return r.stageImage(ctx, job)
	}
	return r.buildpackFailure(ctx, job)
}

func (r *StagingReporter) stageImage(ctx context.Context, job *batchv1.Job) (models.StagingCallback, bool, error) {
	username, password, err := r.registryCredentials(ctx, job)
	if err != nil {
		return models.StagingCallback{}, false, err
	}
	result, stagingErr := r.images.StageImage(ctx, job.Annotations[k8s.AnnotationStagingImage], username, password)
	if stagingErr != nil {
		return models.StagingCallback{Error: stagingErr}, true, nil
	}
	return models.StagingCallback{Result: result}, true, nil
}

// registryCredentials reads back the credentials CC sent with the staging,
// kept in the Job's registry Secret rather than in memory.
func (r *StagingReporter) registryCredentials(ctx context.Context, job *batchv1.Job) (string, string, error) {
	secret, err := r.clientset.CoreV1().Secrets(job.Namespace).Get(ctx, job.Name+"-registry", metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return "", "", nil
		}
		return "", "", fmt.Errorf("reading registry credentials: %w", err)
	}
	var config struct {
		Auths map[string]struct {
			Username string `json:"username"`
			Password string `json:"password"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(secret.Data[corev1.DockerConfigJsonKey], &config); err != nil {
		return "", "", fmt.Errorf("parsing registry credentials: %w", err)
	}
	for _, auth := range config.Auths {
		return auth.Username, auth.Password, nil
	}
	return "", "", nil
}

// buildpackFailure reports a buildpack staging whose pod failed or cannot
// start; a staging still running, or one that finished (the uploader
// reports those), is not done yet.
func (r *StagingReporter) buildpackFailure(ctx context.Context, job *batchv1.Job) (models.StagingCallback, bool, error) {
	for _, pod := range r.pods.JobPods(job.Namespace, job.Name) {
		if c := k8s.PodCondition(pod, corev1.PodScheduled); c != nil && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return r.unschedulable(ctx, job, k8s.PlacementError(c.Message))
		}
		statuses := append(append([]corev1.ContainerStatus(nil), pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
		for _, s := range statuses {
			if w := s.State.Waiting; w != nil && startFailure(w.Reason) {
				return failure("StagingError", startFailureDescription("staging "+s.Name, w)), true, nil
			}
			if t := s.State.Terminated; t != nil && t.ExitCode != 0 {
				return failure(buildpackErrorID(t.ExitCode), fmt.Sprintf("staging %s exited with status %d", s.Name, t.ExitCode)), true, nil
			}
		}
	}
	failed, finished := k8s.JobFinished(job)
	switch {
	case failed:
		message := "staging failed"
		for _, c := range job.Status.Conditions {
			if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue && c.Message != "" {
				message = "staging failed: " + c.Message
			}
		}
		return failure("StagingError", message), true, nil
	case finished:
		return failure("StagingError", "staging finished without reporting a result"), true, nil
	}
	return models.StagingCallback{}, false, nil
}

// unschedulable fails a staging the scheduler found no node for at once,
// as Diego fails one its auction cannot place, instead of at the staging
// deadline: InsufficientResources or NoCompatibleCell, by Diego's wording
// of the placement error. The failure is recorded on the Job before it is
// returned (so it stays the outcome whatever happens to the pod) and the
// Job is suspended, which deletes its pod: scheduled later, that pod would
// stage and upload a droplet for a build CC has been told failed.
func (r *StagingReporter) unschedulable(ctx context.Context, job *batchv1.Job, placementError string) (models.StagingCallback, bool, error) {
	body := models.StagingCallback{Error: models.StagingFailure(placementError)}
	recorded, err := json.Marshal(body)
	if err != nil {
		return models.StagingCallback{}, false, err
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{k8s.AnnotationStagingResult: string(recorded)}},
		"spec":     map[string]any{"suspend": true},
	})
	if err != nil {
		return models.StagingCallback{}, false, err
	}
	_, err = r.clientset.BatchV1().Jobs(job.Namespace).Patch(ctx, job.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return models.StagingCallback{}, false, nil // deleted: cancelled or expired, nothing to report
	}
	if err != nil {
		return models.StagingCallback{}, false, fmt.Errorf("stopping unschedulable staging %s/%s: %w", job.Namespace, job.Name, err)
	}
	return body, true, nil
}

func failure(id, message string) models.StagingCallback {
	return models.StagingCallback{Error: &models.StagingError{ID: id, Message: message}}
}
