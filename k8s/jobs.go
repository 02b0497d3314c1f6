package k8s

import (
	"context"
	"fmt"
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

// createJob creates job, and first its registry secret if it has one. A Job
// that exists already is success (CC retries); any other failure removes
// the secret again, so bad input leaves nothing behind. what names the kind
// of Job in errors ("task", "staging").
func createJob(ctx context.Context, clientset kubernetes.Interface, logger lager.Logger, what string, job *batchv1.Job, secret *corev1.Secret) error {
	if secret != nil {
		if err := applySecret(ctx, clientset, secret); err != nil {
			return err
		}
	}
	created, err := clientset.BatchV1().Jobs(job.Namespace).Create(ctx, job, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		logger.Info("already-exists", lager.Data{"job": job.Name})
		return nil
	}
	if err != nil {
		deleteSecret(ctx, clientset, logger, secret)
		if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
			return models.Invalidf("invalid %s: %s", what, apiErrorMessage(err))
		}
		return fmt.Errorf("creating %s job %s/%s: %w", what, job.Namespace, job.Name, err)
	}
	if secret != nil {
		owner := metav1.OwnerReference{APIVersion: "batch/v1", Kind: "Job", Name: created.Name, UID: created.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}
		if err := adopt(ctx, clientset.CoreV1().Secrets(secret.Namespace), secret.Name, owner); err != nil {
			// The Job runs; only garbage collection of the secret is at stake.
			logger.Error("adopting-registry-secret", err)
		}
	}
	logger.Info("created", lager.Data{"job": created.Name, "namespace": created.Namespace})
	return nil
}
