package events

import (
	"context"
	"errors"
	"net/http"
	"time"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	bbsbackend "github.com/iris-cf/iris/backends/kubernetes"
	"github.com/iris-cf/iris/cc"
	"github.com/iris-cf/iris/k8s"
	irismodels "github.com/iris-cf/iris/models"
)

// CompletedTaskExpiry is how long BBS keeps a completed task that has no
// completion callback before deleting it (bbs expire_completed_task_duration).
const CompletedTaskExpiry = 2 * time.Minute

// RecipeTaskReporter completes the tasks desired through the BBS front as
// BBS does (taskworkpool.HandleCompletedTask): once a task's outcome is
// known it is recorded on the Job together with the start of RESOLVING,
// then posted as JSON {task_guid, failed, failure_reason, result,
// annotation, created_at} to the task's completion_callback_url with
// Iris's CC client identity (mTLS). Any answer but 503 and 504 resolves
// the task, which is then gone for the BBS front and its Job deleted a TTL
// later. As for the OPI reporters, the outcome and the fact of delivery
// live on the Job, so a restarted Iris or a new leader posts what is
// pending and nothing twice.
//
// Where Iris differs: BBS tries a callback three times at once and then
// again every 30 s (convergence) until 2 minutes after completion, when it
// deletes the task unreported. Iris retries 503, 504 and transport errors
// with the reporters' backoff (events.max_retries, by default for ever),
// so CC hears the outcome once it is back.
type RecipeTaskReporter struct {
	*worker
	*jobLifecycle
}

// NewRecipeTaskReporter registers for the recipe tasks' Job and pod events;
// Run starts reporting.
func NewRecipeTaskReporter(logger lager.Logger, clientset kubernetes.Interface, jobs StagingJobSource, callbacks CallbackPoster, opts Options) (*RecipeTaskReporter, error) {
	r := &RecipeTaskReporter{}
	r.worker = newWorker(logger, "bbs-task-reporter", opts, func(ctx context.Context, logger lager.Logger, key string) error {
		return r.deliver(ctx, logger, key, r.outcome)
	})
	r.resync = func(add func(string)) {
		jobs.EachJob(func(job *batchv1.Job) {
			if k8s.IsRecipeTask(job) {
				add(job.Namespace + "/" + job.Name)
			}
		})
	}
	r.jobLifecycle = newJobLifecycle(clientset, jobs, callbacks, r.worker, opts.JobTTL)
	r.final = callbackResolved
	enqueueJob := func(obj any) {
		if job, ok := obj.(*batchv1.Job); ok && k8s.IsRecipeTask(job) {
			r.add(job.Namespace + "/" + job.Name)
		}
	}
	if err := jobs.AddJobEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueueJob,
		UpdateFunc: func(_, obj any) { enqueueJob(obj) },
	}); err != nil {
		return nil, err
	}
	// The outcome is on the pod (the runner's report, an unschedulable or
	// unstartable pod) before the Job controller reflects it, if ever.
	if err := enqueueJobsOfPods(jobs, k8s.IsRecipeTask, r.add); err != nil {
		return nil, err
	}
	return r, nil
}

// outcome is the callback body once the task completed. It first records
// the outcome (and RESOLVING) on the Job, so what CC is told never
// changes, whatever happens to the pod. A task without a callback stays
// COMPLETED for CompletedTaskExpiry and is then removed unreported.
func (r *RecipeTaskReporter) outcome(ctx context.Context, job *batchv1.Job) (any, lager.Data, bool, error) {
	status := k8s.RecipeTaskStatusOf(job, r.jobs.JobPods(job.Namespace, job.Name), r.jobLifecycle.clock.Now().UnixNano())
	if status.Outcome == nil {
		return nil, nil, false, nil
	}
	key := job.Namespace + "/" + job.Name
	data := lager.Data{"task_guid": job.Annotations[k8s.AnnotationRecipeTaskGUID], "failed": status.Outcome.Failed, "failure_reason": status.Outcome.FailureReason}
	hasCallback := job.Annotations[k8s.AnnotationCompletionCallback] != ""
	if !status.Recorded || (hasCallback && status.Phase != k8s.TaskPhaseResolving) {
		resolving := ""
		if hasCallback {
			resolving = r.jobLifecycle.clock.Now().UTC().Format(time.RFC3339Nano)
		}
		err := k8s.RecordRecipeTaskOutcome(ctx, r.clientset, job, status.Outcome, resolving)
		if errors.Is(err, irismodels.ErrNotFound) {
			return nil, nil, false, nil
		}
		if err != nil {
			return nil, nil, false, err
		}
	}
	if !hasCallback {
		completed := time.Unix(0, status.Outcome.CompletedAt)
		if wait := completed.Add(CompletedTaskExpiry).Sub(r.jobLifecycle.clock.Now()); wait > 0 {
			r.later(key, wait)
			return nil, nil, false, nil
		}
		return nil, nil, false, r.markDelivered(ctx, key, job)
	}
	task, err := bbsbackend.StoredTask(job)
	if err != nil {
		// Unreadable: tell CC what is known rather than nothing.
		task = &models.Task{TaskDefinition: &models.TaskDefinition{}}
	}
	body := &models.TaskCallbackResponse{
		TaskGuid:      job.Annotations[k8s.AnnotationRecipeTaskGUID],
		Failed:        status.Outcome.Failed,
		FailureReason: status.Outcome.FailureReason,
		Result:        status.Outcome.Result,
		Annotation:    task.TaskDefinition.Annotation,
		CreatedAt:     task.CreatedAt,
	}
	return body, data, true, nil
}

// callbackResolved is BBS's reading of a callback's answer: every status
// but 503 and 504 resolves the task (a 4xx will not get better by
// retrying, and BBS deletes the task on it as on success); 503, 504 and
// transport errors are retried. A request that cannot be built is final.
func callbackResolved(err error) bool {
	if errors.Is(err, cc.ErrUnsendable) {
		return true
	}
	var status *cc.StatusError
	if !errors.As(err, &status) {
		return false
	}
	return status.StatusCode != http.StatusServiceUnavailable && status.StatusCode != http.StatusGatewayTimeout
}
