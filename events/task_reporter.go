package events

import (
	"context"
	"fmt"

	"code.cloudfoundry.org/lager/v3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

// CallbackPoster posts to a callback URL CC handed Iris; *cc.Client implements it.
type CallbackPoster interface {
	PostURL(ctx context.Context, url string, body any) error
}

// JobSource delivers task Job events and serves Jobs and their pods from the
// cache; *k8s.Caches implements it.
type JobSource interface {
	AddJobEventHandler(handler cache.ResourceEventHandler) error
	Job(namespace, name string) *batchv1.Job
	JobPods(namespace, jobName string) []*corev1.Pod
	EachJob(fn func(*batchv1.Job))
}

// TaskCancelledReason is the failure reason CC gets for a cancelled task.
const TaskCancelledReason = "task was cancelled"

// TaskReporter posts each task's completion to its callback once, then
// deletes the Job a TTL later. The outcome and the fact of delivery live on
// the Job, so a restarted Iris (or a new leader) delivers what is pending and
// nothing twice.
type TaskReporter struct {
	*worker
	*jobLifecycle
}

// NewTaskReporter registers for Job events; Run starts reporting.
func NewTaskReporter(logger lager.Logger, clientset kubernetes.Interface, jobs JobSource, callbacks CallbackPoster, opts Options) (*TaskReporter, error) {
	r := &TaskReporter{}
	r.worker = newWorker(logger, "task-reporter", opts, func(ctx context.Context, logger lager.Logger, key string) error {
		return r.deliver(ctx, logger, key, r.outcome)
	})
	r.resync = resyncJobs(jobs, k8s.SourceTypeTask)
	r.jobLifecycle = newJobLifecycle(clientset, jobs, callbacks, r.worker, opts.JobTTL)
	enqueue := func(obj any) {
		if job, ok := obj.(*batchv1.Job); ok {
			r.add(job.Namespace + "/" + job.Name)
		}
	}
	enqueue = onlySourceType(k8s.SourceTypeTask, enqueue)
	err := jobs.AddJobEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// outcome is the completion to report, once the task is over.
func (r *TaskReporter) outcome(_ context.Context, job *batchv1.Job) (any, lager.Data, bool, error) {
	result := models.TaskCompletedRequest{TaskGUID: job.Labels[k8s.LabelTaskGUID]}
	failed, finished := k8s.JobFinished(job)
	switch {
	case job.Annotations[k8s.AnnotationCancelled] != "":
		result.Failed, result.FailureReason = true, TaskCancelledReason
	case !finished:
		return nil, nil, false, nil
	case failed:
		result.Failed, result.FailureReason = true, r.failureReason(job)
	}
	return result, lager.Data{"task_guid": result.TaskGUID, "failed": result.Failed, "failure_reason": result.FailureReason}, true, nil
}

// failureReason explains a failed task as Diego does ("Exited with status
// 1"), from the task container's termination, else the Job's condition.
func (r *TaskReporter) failureReason(job *batchv1.Job) string {
	for _, pod := range r.jobs.JobPods(job.Namespace, job.Name) {
		for _, s := range pod.Status.ContainerStatuses {
			if t := s.State.Terminated; s.Name == k8s.TaskContainerName && t != nil {
				reason := fmt.Sprintf("Exited with status %d", t.ExitCode)
				if t.Reason == "OOMKilled" {
					reason += " (out of memory)"
				}
				return reason
			}
		}
	}
	for _, c := range job.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue && c.Message != "" {
			return c.Message
		}
	}
	return "task failed"
}
