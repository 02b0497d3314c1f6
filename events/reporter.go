package events

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"code.cloudfoundry.org/lager/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/iris-cf/iris/cc"
)

// CCPoster sends a callback to Cloud Controller; *cc.Client implements it.
type CCPoster interface {
	Post(ctx context.Context, path string, body any) error
}

// PodSource delivers pod events and serves pods from the cache;
// *k8s.Caches implements it.
type PodSource interface {
	AddEventHandlers(statefulSets, pods cache.ResourceEventHandler) error
	Pod(namespace, name string) *corev1.Pod
}

// CrashReporter posts each crash to CC once. Pods with an unreported crash
// go on a rate-limited work queue; a worker posts the crash and then records
// its key on the pod. CC down or answering 5xx: retried with capped
// exponential backoff up to maxRetries; 4xx: final, logged and recorded so
// it is not retried.
type CrashReporter struct {
	*worker
	clientset kubernetes.Interface
	pods      PodSource
	cc        CCPoster
	// posted remembers crashes CC accepted whose record on the pod is not
	// written yet, so retrying the record never posts them again. Only the
	// single worker goroutine touches it.
	posted map[string]string
}

// NewCrashReporter registers for pod events; Run starts reporting.
func NewCrashReporter(logger lager.Logger, clientset kubernetes.Interface, pods PodSource, ccClient CCPoster, maxRetries int, maxBackoff time.Duration) (*CrashReporter, error) {
	r := &CrashReporter{
		clientset: clientset,
		pods:      pods,
		cc:        ccClient,
		posted:    map[string]string{},
	}
	r.worker = newWorker(logger, "crash-reporter", maxRetries, maxBackoff, r.report)
	enqueue := func(obj any) {
		if pod, ok := obj.(*corev1.Pod); ok && unreported(pod) {
			r.queue.Add(pod.Namespace + "/" + pod.Name)
		}
	}
	err := pods.AddEventHandlers(cache.ResourceEventHandlerFuncs{}, cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

func unreported(pod *corev1.Pod) bool {
	crash, ok := CrashFromPod(pod)
	return ok && pod.Annotations[AnnotationLastReportedCrash] != crash.Key
}

// report posts the pod's current crash unless it was reported already.
func (r *CrashReporter) report(ctx context.Context, logger lager.Logger, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod := r.pods.Pod(namespace, name)
	if pod == nil || !unreported(pod) {
		return nil
	}
	crash, _ := CrashFromPod(pod)
	if r.posted[key] == crash.Key {
		return r.markReported(ctx, key, pod, crash.Key)
	}
	path := fmt.Sprintf("/internal/v4/apps/%s/crashed", crash.ProcessGUID)
	err = r.cc.Post(ctx, path, crash.Request)
	switch {
	case err == nil:
		logger.Info("reported", lager.Data{"process_guid": crash.ProcessGUID, "index": crash.Request.Index,
			"crash_count": crash.Request.CrashCount, "exit_description": crash.Request.ExitDescription})
	case cc.IsFinal(err):
		// CC will never take this report (e.g. 404 ProcessNotFound after
		// the app was deleted); record it so it is not sent again.
		logger.Error("rejected-by-cc", err, lager.Data{"process_guid": crash.ProcessGUID})
	default:
		return err
	}
	r.posted[key] = crash.Key
	return r.markReported(ctx, key, pod, crash.Key)
}

// markReported records crashKey on the pod. Until that succeeds the crash
// stays in posted; a restart of Iris in that window reports it once more.
func (r *CrashReporter) markReported(ctx context.Context, podKey string, pod *corev1.Pod, crashKey string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{AnnotationLastReportedCrash: crashKey}}})
	if err != nil {
		return err
	}
	_, err = r.clientset.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("recording reported crash on %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	delete(r.posted, podKey)
	return nil
}
