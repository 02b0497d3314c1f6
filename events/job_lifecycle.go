package events

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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/cc"
	"github.com/iris-cf/iris/k8s"
)

// jobLifecycle is the tail every task and staging Job goes through once its
// callback reached CC: record the delivery on the Job, then delete the Job a
// TTL later (keeping it that long leaves its pod's logs readable).
type jobLifecycle struct {
	clientset kubernetes.Interface
	jobs      JobSource
	cc        CallbackPoster
	clock     clock.Clock
	// later queues a key again after a delay (the worker's addAfter).
	later func(key string, after time.Duration)
	ttl   time.Duration
	// final says whether a failed post is an answer to accept as the end
	// (CC's refusals for OPI callbacks: cc.IsFinal) rather than retry.
	final func(error) bool
	// posted remembers Jobs whose callback CC accepted until the cache shows
	// the delivery record: events arriving in between (the Job's own status,
	// its pods) must not post the callback again. Only the worker touches it.
	posted map[string]posted
}

type posted struct {
	uid      types.UID
	recorded bool // the delivery record is written; the cache just lags
}

func newJobLifecycle(clientset kubernetes.Interface, jobs JobSource, callbacks CallbackPoster, w *worker, ttl time.Duration) *jobLifecycle {
	return &jobLifecycle{clientset: clientset, jobs: jobs, cc: callbacks, clock: w.clock, later: w.addAfter, ttl: ttl, final: cc.IsFinal, posted: map[string]posted{}}
}

// outcomeFunc says what to post to CC for a Job (and what to log about it),
// or done=false while the Job is still running.
type outcomeFunc func(ctx context.Context, job *batchv1.Job) (body any, data lager.Data, done bool, err error)

// deliver reconciles the Job at key: once outcome has a body it is posted to
// the Job's completion callback, once; CC's 4xx is final; then the Job is
// deleted a TTL later. Errors (CC down, 5xx) are retried by the worker.
func (l *jobLifecycle) deliver(ctx context.Context, logger lager.Logger, key string, outcome outcomeFunc) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	job := l.jobs.Job(namespace, name)
	if job == nil || job.DeletionTimestamp != nil {
		return nil
	}
	if delivered := job.Annotations[k8s.AnnotationCallbackDelivered]; delivered != "" {
		return l.expire(ctx, logger, key, job, delivered)
	}
	if done, err := l.afterPosting(ctx, key, job); done || err != nil {
		return err
	}
	body, data, done, err := outcome(ctx, job)
	if err != nil || !done {
		return err
	}
	callback, err := k8s.CompletionCallbackURL(ctx, l.clientset, job)
	if err != nil {
		return err
	}
	err = l.cc.PostURL(ctx, callback, body)
	switch {
	case err == nil:
		logger.Info("reported", data)
	case l.final(err):
		logger.Error("rejected-by-cc", err, data)
	default:
		return err
	}
	return l.markDelivered(ctx, key, job)
}

// afterPosting handles a Job whose callback already reached CC: it writes
// the delivery record if that failed before, and otherwise does nothing. It
// returns false for a Job not posted yet.
func (l *jobLifecycle) afterPosting(ctx context.Context, key string, job *batchv1.Job) (bool, error) {
	p, ok := l.posted[key]
	switch {
	case !ok:
		return false, nil
	case p.uid != job.UID:
		delete(l.posted, key) // a new Job of the same name
		return false, nil
	case p.recorded:
		return true, nil
	default:
		return true, l.markDelivered(ctx, key, job)
	}
}

// markDelivered records that CC accepted the Job's callback, on the Job
// (durable) and in memory (until the cache catches up).
func (l *jobLifecycle) markDelivered(ctx context.Context, key string, job *batchv1.Job) error {
	l.posted[key] = posted{uid: job.UID}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		k8s.AnnotationCallbackDelivered: l.clock.Now().UTC().Format(time.RFC3339),
	}}})
	if err != nil {
		return err
	}
	_, err = l.clientset.BatchV1().Jobs(job.Namespace).Patch(ctx, job.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("recording delivered callback on %s: %w", key, err)
	}
	l.posted[key] = posted{uid: job.UID, recorded: true}
	l.later(key, l.ttl)
	return nil
}

// expire deletes a reported Job once its TTL has passed.
func (l *jobLifecycle) expire(ctx context.Context, logger lager.Logger, key string, job *batchv1.Job, delivered string) error {
	at, err := time.Parse(time.RFC3339, delivered)
	if err != nil {
		at = time.Time{}
	}
	delete(l.posted, key) // the cache shows the record now
	if wait := at.Add(l.ttl).Sub(l.clock.Now()); wait > 0 {
		l.later(key, wait)
		return nil
	}
	err = l.clientset.BatchV1().Jobs(job.Namespace).Delete(ctx, job.Name, metav1.DeleteOptions{
		PropagationPolicy: ptr.To(metav1.DeletePropagationBackground),
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting reported job %s: %w", key, err)
	}
	logger.Info("deleted-reported-job", lager.Data{"job": key})
	return nil
}

// resyncJobs adds the key of every cached OPI Job of one kind (TASK or
// STG); recipe tasks of the same kinds have their own reporter.
func resyncJobs(jobs JobSource, sourceType string) func(add func(string)) {
	return func(add func(string)) {
		jobs.EachJob(func(job *batchv1.Job) {
			if job.Labels[k8s.LabelSourceType] == sourceType && !k8s.IsRecipeTask(job) {
				add(job.Namespace + "/" + job.Name)
			}
		})
	}
}

// onlySourceType filters Job events to OPI Jobs of one kind (TASK or STG).
func onlySourceType(sourceType string, fn func(any)) func(any) {
	return func(obj any) {
		if job, ok := obj.(*batchv1.Job); ok && job.Labels[k8s.LabelSourceType] == sourceType && !k8s.IsRecipeTask(job) {
			fn(obj)
		}
	}
}

// enqueueJobsOfPods queues the Job (namespace/name) of every added or
// updated Job pod that want accepts: a pod shows a Job's outcome (a
// report, an image it cannot pull, no node to run on) before the Job
// controller reflects it, if it ever does.
func enqueueJobsOfPods(jobs interface {
	AddJobPodEventHandler(handler cache.ResourceEventHandler) error
}, want func(metav1.Object) bool, add func(key string)) error {
	enqueue := func(obj any) {
		if pod, ok := obj.(*corev1.Pod); ok && want(pod) {
			if name := pod.Labels[batchv1.JobNameLabel]; name != "" {
				add(pod.Namespace + "/" + name)
			}
		}
	}
	return jobs.AddJobPodEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	})
}
