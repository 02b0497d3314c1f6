package k8s

import (
	"context"
	"fmt"
	"net/url"
	"slices"

	"code.cloudfoundry.org/lager/v3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/models"
)

// chooseNamespace returns the namespace a request names, or the default,
// and rejects namespaces Iris does not manage.
func chooseNamespace(requested string, namespaces []string) (string, error) {
	if requested == "" {
		return namespaces[0], nil
	}
	if !slices.Contains(namespaces, requested) {
		return "", models.Invalidf("namespace %q is not one of Iris's workloads namespaces %v", requested, namespaces)
	}
	return requested, nil
}

// IsolationSegmentOfApp is the isolation segment the app's LRPs run in (""
// when it has none, or no LRP yet).
//
// Why: CC's OPI task and staging bodies carry no placement (unlike its BBS
// recipes, which put the space's isolation segment into placement_tags), yet
// in CF a task and a staging run in the app's space's segment, the one CC
// also sends with each of the app's LRPs. So the app's LRPs are where Iris
// learns it, without a config setting that would put every space's tasks in
// one segment. An app without LRPs (never started, or stopped) has its tasks
// and first staging on the shared nodes.
func IsolationSegmentOfApp(caches *Caches, appGUID string) string {
	if appGUID == "" {
		return ""
	}
	for _, sts := range caches.IsolatedStatefulSetsByAppGUID(appGUID) {
		if sts.DeletionTimestamp == nil && sts.Annotations[AnnotationIsolationSegment] != "" {
			return sts.Annotations[AnnotationIsolationSegment]
		}
	}
	return ""
}

// placeJob puts a task or staging pod where an LRP of the same isolation
// segment would run: on the segment's (tainted) nodes, or on nodes of none
// for "", as Diego places tasks on cells with exactly their placement tags.
func (b *Builder) placeJob(spec *corev1.PodSpec, segment string) {
	spec.Affinity = &corev1.Affinity{NodeAffinity: b.segmentNodeAffinity(segment)}
	spec.Tolerations = b.segmentTolerations(segment)
}

// jobLabels are the labels of a task or staging Job and its pod; empty
// values are left out.
func jobLabels(guidLabel, guid, sourceType, appGUID, orgGUID, spaceGUID string) map[string]string {
	labels := map[string]string{
		guidLabel:       sanitizeLabelValue(guid),
		LabelAppGUID:    sanitizeLabelValue(appGUID),
		LabelSourceType: sourceType,
		LabelOrgGUID:    sanitizeLabelValue(orgGUID),
		LabelSpaceGUID:  sanitizeLabelValue(spaceGUID),
	}
	for k, v := range labels {
		if v == "" {
			delete(labels, k)
		}
	}
	return labels
}

// callbackSecretSuffix names the Secret of a Job's completion callback.
const callbackSecretSuffix = "-callback"

// callbackSecretKey is the key of the callback URL in its Secret.
const callbackSecretKey = "url"

// completionCallback records a Job's completion callback in annotations.
// A callback with a user or password (a staging's: CC's internal API
// credentials) goes into a Secret, returned, that only Iris reads; the
// annotations, which anyone who may read Jobs or pods sees, then carry it
// without them and the Secret's name.
func completionCallback(annotations map[string]string, jobName, namespace string, labels map[string]string, callback string) (*corev1.Secret, error) {
	u, err := url.Parse(callback)
	if err != nil {
		return nil, models.Invalidf("completion_callback is not a URL")
	}
	if u.User == nil {
		annotations[AnnotationCompletionCallback] = callback
		return nil, nil
	}
	u.User = nil
	annotations[AnnotationCompletionCallback] = u.String()
	annotations[AnnotationCompletionCallbackSecret] = jobName + callbackSecretSuffix
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: jobName + callbackSecretSuffix, Namespace: namespace, Labels: labels},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{callbackSecretKey: []byte(callback)},
	}, nil
}

// CompletionCallbackURL is the URL to report job's outcome to, credentials
// included: from the Job's callback Secret if it has one.
func CompletionCallbackURL(ctx context.Context, clientset kubernetes.Interface, job *batchv1.Job) (string, error) {
	name := job.Annotations[AnnotationCompletionCallbackSecret]
	if name == "" {
		return job.Annotations[AnnotationCompletionCallback], nil
	}
	secret, err := clientset.CoreV1().Secrets(job.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("reading the completion callback of job %s/%s from secret %s: %w", job.Namespace, job.Name, name, err)
	}
	callback := string(secret.Data[callbackSecretKey])
	if callback == "" {
		return "", fmt.Errorf("secret %s/%s holds no completion callback", job.Namespace, name)
	}
	return callback, nil
}

// createJob creates job, and first its secrets (registry credentials, the
// completion callback; nil ones are skipped). A Job that exists already is
// success (CC retries); any other failure removes the secrets again, so bad
// input leaves nothing behind. what names the kind of Job in errors ("task",
// "staging").
func createJob(ctx context.Context, clientset kubernetes.Interface, logger lager.Logger, what string, job *batchv1.Job, secrets ...*corev1.Secret) error {
	if err := requireUploadIdentity(ctx, clientset, job); err != nil {
		return err
	}
	var applied []*corev1.Secret
	removeSecrets := func() {
		for _, secret := range applied {
			deleteSecret(ctx, clientset, logger, secret)
		}
	}
	for _, secret := range secrets {
		if secret == nil {
			continue
		}
		if err := applySecret(ctx, clientset, secret); err != nil {
			removeSecrets()
			return err
		}
		applied = append(applied, secret)
	}
	created, err := clientset.BatchV1().Jobs(job.Namespace).Create(ctx, job, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		logger.Info("already-exists", lager.Data{"job": job.Name})
		return nil
	}
	if err != nil {
		removeSecrets()
		if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
			return models.Invalidf("invalid %s: %s", what, apiErrorMessage(err))
		}
		return fmt.Errorf("creating %s job %s/%s: %w", what, job.Namespace, job.Name, err)
	}
	owner := metav1.OwnerReference{APIVersion: "batch/v1", Kind: "Job", Name: created.Name, UID: created.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}
	for _, secret := range applied {
		if err := adopt(ctx, clientset.CoreV1().Secrets(secret.Namespace), secret.Name, owner); err != nil {
			// The Job runs; only garbage collection of the secret is at stake.
			logger.Error("adopting-secret", err, lager.Data{"secret": secret.Name})
		}
	}
	logger.Info("created", lager.Data{"job": created.Name, "namespace": created.Namespace})
	return nil
}

// runOncePodSpec is the pod of a task: container run once, never
// restarted (CC decides whether to run a task again), without a service
// account token or service links, as the fixed app user.
func (b *Builder) runOncePodSpec(container corev1.Container) corev1.PodSpec {
	return corev1.PodSpec{
		RestartPolicy:                 corev1.RestartPolicyNever,
		AutomountServiceAccountToken:  ptr.To(false),
		ServiceAccountName:            b.cfg.ServiceAccountName,
		EnableServiceLinks:            ptr.To(false),
		TerminationGracePeriodSeconds: ptr.To(b.cfg.TerminationGracePeriodSeconds),
		SecurityContext:               b.podSecurityContext(),
		Containers:                    []corev1.Container{container},
	}
}

// runOnceJob is the Job that runs podSpec exactly once: no retries, one
// completion.
func runOnceJob(name, namespace string, labels, jobAnnotations, podAnnotations map[string]string, podSpec corev1.PodSpec) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels, Annotations: jobAnnotations},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To(int32(0)),
			Completions:  ptr.To(int32(1)),
			Parallelism:  ptr.To(int32(1)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: podAnnotations},
				Spec:       podSpec,
			},
		},
	}
}
