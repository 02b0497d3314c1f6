package k8s

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"code.cloudfoundry.org/lager/v3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/models"
)

// Staging lifecycles as recorded on the staging Job.
const (
	StagingLifecycleDocker    = "docker"
	StagingLifecycleBuildpack = "buildpack"
)

// StagingObjects are the objects one staging becomes.
type StagingObjects struct {
	Job            *batchv1.Job
	RegistrySecret *corev1.Secret
	// CallbackSecret holds the completion callback when it carries CC's
	// credentials (see completionCallback).
	CallbackSecret *corev1.Secret
	// CompletionSecret holds a buildpack staging's completion token and the
	// CA its reporter verifies Iris with (see StagingCompletion).
	CompletionSecret *corev1.Secret
	// RecipeSecret holds a buildpack staging's recipe (see
	// buildpackStagingPod).
	RecipeSecret *corev1.Secret
}

// StagingCompletion is what a buildpack staging's reporter proves itself
// with when it reports to Iris: Iris's TLS listener asks CC for a client
// certificate, which staging pods have none of, so a pod without one may
// report only its own staging, with a token minted for it (see
// VerifyCompletionToken). Only the reporter container gets the token,
// from a Secret: the staging container runs buildpack and app code.
type StagingCompletion struct {
	// Token is random and this staging's alone.
	Token string
	// CA is the PEM the uploader verifies Iris's server certificate with;
	// nil: the system roots.
	CA []byte
}

// Keys of a staging's completion Secret, and where the reporter finds them.
const (
	completionSecretSuffix    = "-completion"
	completionTokenKey        = "token"
	completionCAKey           = "ca.crt"
	completionCAVolume        = "completion-ca"
	completionCAMountPath     = "/etc/iris-staging"
	StagingCompletionTokenEnv = "STAGING_COMPLETION_TOKEN"
	StagingCompletionCAEnv    = "STAGING_COMPLETION_CA_FILE"
)

// NewStagingCompletion mints a token and takes the CA in caFile (none when
// empty), read at each staging so a rotated file is picked up.
func NewStagingCompletion(caFile string) (StagingCompletion, error) {
	token := make([]byte, 32)
	if _, err := rand.Read(token); err != nil {
		return StagingCompletion{}, fmt.Errorf("minting a staging completion token: %w", err)
	}
	completion := StagingCompletion{Token: base64.RawURLEncoding.EncodeToString(token)}
	if caFile != "" {
		ca, err := os.ReadFile(caFile)
		if err != nil {
			return StagingCompletion{}, fmt.Errorf("reading the CA staging pods verify Iris with (staging.iris_ca_file): %w", err)
		}
		completion.CA = ca
	}
	return completion, nil
}

// BuildStaging returns the Job for one staging. A buildpack staging runs
// CC's staging recipe with Iris's action runner, then reports to Iris's
// PUT /stage/{guid}/completed (see buildpackStagingPod). A docker staging runs no pod: Iris
// reads the image's config itself, and the suspended Job is the durable
// record that keeps the callback from being lost.
func (b *Builder) BuildStaging(guid string, req *models.StagingRequest, namespace string, cfg config.Staging, completion StagingCompletion) (*StagingObjects, error) {
	name := StatefulSetName(req.AppName, "staging", guid)
	labels := jobLabels(LabelStagingGUID, guid, SourceTypeStaging, req.AppGUID, req.OrgGUID, req.SpaceGUID)
	annotations := map[string]string{
		AnnotationAppName:   req.AppName,
		AnnotationOrgName:   req.OrgName,
		AnnotationSpaceName: req.SpaceName,
	}
	callbackSecret, err := completionCallback(annotations, name, namespace, labels, req.CompletionCallback)
	if err != nil {
		return nil, err
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels, Annotations: annotations},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To(int32(0)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec: corev1.PodSpec{
					RestartPolicy:                 corev1.RestartPolicyNever,
					AutomountServiceAccountToken:  ptr.To(false),
					ServiceAccountName:            b.cfg.ServiceAccountName,
					EnableServiceLinks:            ptr.To(false),
					TerminationGracePeriodSeconds: ptr.To(b.cfg.TerminationGracePeriodSeconds),
					SecurityContext:               b.podSecurityContext(),
				},
			},
		},
	}
	b.hardenSandbox(&job.Spec.Template.Spec)
	b.placeJob(&job.Spec.Template.Spec, req.IsolationSegment)
	if cfg.TimeoutSeconds > 0 {
		// A staging that cannot be scheduled or hangs fails at the deadline,
		// and the reporter tells CC.
		job.Spec.ActiveDeadlineSeconds = ptr.To(cfg.TimeoutSeconds)
	}
	objects := &StagingObjects{Job: job, CallbackSecret: callbackSecret}

	switch {
	case req.Lifecycle.DockerLifecycle != nil:
		d := req.Lifecycle.DockerLifecycle
		annotations[AnnotationStagingLifecycle] = StagingLifecycleDocker
		annotations[AnnotationStagingImage] = d.Image
		job.Spec.Suspend = ptr.To(true)
		job.Spec.Template.Spec.Containers = []corev1.Container{{Name: "record", Image: d.Image, SecurityContext: containerSecurityContext()}}
		if d.RegistryUsername != "" {
			secret, err := registrySecret(name+registrySecretSuffix, namespace, labels, d.Image, d.RegistryUsername, d.RegistryPassword)
			if err != nil {
				return nil, err
			}
			objects.RegistrySecret = secret
		}
	case req.Lifecycle.BuildpackLifecycle != nil:
		annotations[AnnotationStagingLifecycle] = StagingLifecycleBuildpack
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name + completionSecretSuffix, Namespace: namespace, Labels: labels},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{completionTokenKey: []byte(completion.Token)},
		}
		if len(completion.CA) > 0 {
			secret.Data[completionCAKey] = completion.CA
		}
		objects.CompletionSecret = secret
		annotations[AnnotationStagingCompletionSecret] = secret.Name
		if objects.RecipeSecret, err = b.buildpackStagingPod(&job.Spec.Template.Spec, name, namespace, labels, guid, req, cfg, secret); err != nil {
			return nil, err
		}
	default:
		return nil, models.Invalidf("lifecycle: one of docker_lifecycle or buildpack_lifecycle is required")
	}
	return objects, nil
}

// StagingClient carries out CC's staging requests.
type StagingClient struct {
	clientset  kubernetes.Interface
	caches     *Caches
	builder    *Builder
	cfg        config.Staging
	namespaces []string
}

// NewStagingClient returns a client staging in namespaces (the first is the default).
func NewStagingClient(clientset kubernetes.Interface, caches *Caches, builder *Builder, cfg config.Staging, namespaces []string) *StagingClient {
	return &StagingClient{clientset: clientset, caches: caches, builder: builder, cfg: cfg, namespaces: namespaces}
}

// Stage starts a staging; staging the same guid again does nothing.
func (c *StagingClient) Stage(ctx context.Context, logger lager.Logger, guid string, req *models.StagingRequest) error {
	logger = logger.Session("stage", lager.Data{"staging_guid": guid})
	namespace, err := chooseNamespace(req.Namespace, c.namespaces)
	if err != nil {
		return err
	}
	var completion StagingCompletion
	if req.Lifecycle.BuildpackLifecycle != nil {
		if completion, err = NewStagingCompletion(c.cfg.IrisCAFile); err != nil {
			return err
		}
	}
	if req.IsolationSegment == "" {
		placed := *req
		placed.IsolationSegment = IsolationSegmentOfApp(c.caches, req.AppGUID)
		req = &placed
	}
	objects, err := c.builder.BuildStaging(guid, req, namespace, c.cfg, completion)
	if err != nil {
		return err
	}
	if len(c.caches.JobsByTaskGUID(guid)) > 0 {
		logger.Info("already-staging")
		return nil
	}
	return createJob(ctx, c.clientset, logger, "staging", objects.Job, objects.RegistrySecret, objects.CallbackSecret, objects.CompletionSecret, objects.RecipeSecret)
}

// VerifyCompletionToken checks the token a staging pod without a client
// certificate presents against the one minted for that staging, read from
// its Secret (the one the pod got it from, so both always agree). Any
// mismatch, and a staging without a token, is models.ErrUnauthorized.
func (c *StagingClient) VerifyCompletionToken(ctx context.Context, guid, token string) error {
	job, err := lookupJob(ctx, c.clientset, c.caches, c.namespaces, LabelStagingGUID, SourceTypeStaging, guid)
	if errors.Is(err, models.ErrNotFound) {
		return models.ErrUnauthorized
	}
	if err != nil {
		return err
	}
	name := job.Annotations[AnnotationStagingCompletionSecret]
	if name == "" || token == "" {
		return models.ErrUnauthorized
	}
	secret, err := c.clientset.CoreV1().Secrets(job.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return models.ErrUnauthorized
	}
	if err != nil {
		return fmt.Errorf("reading the completion token of staging %s: %w", guid, err)
	}
	want := secret.Data[completionTokenKey]
	if len(want) == 0 || subtle.ConstantTimeCompare(want, []byte(token)) != 1 {
		return models.ErrUnauthorized
	}
	return nil
}

// Complete records the reported outcome on the staging Job; the reporter
// forwards it to CC and cleans up.
func (c *StagingClient) Complete(ctx context.Context, logger lager.Logger, guid string, done *models.StagingCompletedRequest) error {
	job, err := lookupJob(ctx, c.clientset, c.caches, c.namespaces, LabelStagingGUID, SourceTypeStaging, guid)
	if err != nil {
		return err
	}
	callback := models.StagingCallback{}
	if done.Failed {
		// The runner's failure reason ends in the builder's exit status
		// ("Exited with status 223"): CC tells a failed detect or compile
		// from its id.
		callback.Error = models.StagingFailure(done.FailureReason)
	} else {
		if !json.Valid([]byte(done.Result)) {
			return models.Invalidf("result must be a JSON document")
		}
		callback.Result = json.RawMessage(done.Result)
	}
	body, err := json.Marshal(callback)
	if err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{AnnotationStagingResult: string(body)}}})
	if err != nil {
		return err
	}
	if _, err := c.clientset.BatchV1().Jobs(job.Namespace).Patch(ctx, job.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return models.ErrNotFound
		}
		return fmt.Errorf("recording staging result on %s/%s: %w", job.Namespace, job.Name, err)
	}
	logger.Info("staging-completed", lager.Data{"staging_guid": guid, "failed": done.Failed})
	return nil
}

// Cancel stops a staging; CC is told it was cancelled.
func (c *StagingClient) Cancel(ctx context.Context, logger lager.Logger, guid string) error {
	job, err := lookupJob(ctx, c.clientset, c.caches, c.namespaces, LabelStagingGUID, SourceTypeStaging, guid)
	if err != nil {
		return err
	}
	if job.Annotations[AnnotationStagingResult] != "" {
		return nil // finished first: CC gets the real outcome
	}
	if err := cancelJob(ctx, c.clientset, job); err != nil {
		return err
	}
	logger.Info("cancelled-staging", lager.Data{"staging_guid": guid, "job": job.Name})
	return nil
}
