package kubernetes

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strings"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/iris-cf/iris/actions"
	"github.com/iris-cf/iris/cc"
	"github.com/iris-cf/iris/k8s"
	irismodels "github.com/iris-cf/iris/models"
)

const (
	// AnnotationTask holds, on the Job only, the task as desired
	// (models.Task protobuf, base64: definition, guid, domain, created_at)
	// without image credentials and without the callback URL's user and
	// password (those live in Secrets): get and list answer from it and
	// from the Job's state, so a restarted Iris loses nothing.
	AnnotationTask = "cloudfoundry.org/bbs_task"
	// StagingDomain is the domain of CC's staging tasks; their pods log as STG.
	StagingDomain = "cf-app-staging"
	// taskLogSourcePrefix is CC's log source of a `cf run-task` task.
	taskLogSourcePrefix = "APP/TASK/"
)

// TaskJobs is what the task backend needs of k8s.RecipeTaskClient.
type TaskJobs interface {
	// Create creates the task's objects; k8s.ErrTaskExists if its guid is taken.
	Create(ctx context.Context, logger lager.Logger, task *k8s.RecipeTask) error
	// Job finds the task's Job; irismodels.ErrNotFound if there is none.
	Job(ctx context.Context, guid string) (*batchv1.Job, error)
	Jobs(fn func(*batchv1.Job))
	Pods(job *batchv1.Job) []*corev1.Pod
	// Fresh reads the Job again through the API; irismodels.ErrNotFound if gone.
	Fresh(ctx context.Context, job *batchv1.Job) (*batchv1.Job, error)
	Cancel(ctx context.Context, job *batchv1.Job) error
}

// Tasks carries out the BBS front's task routes on Kubernetes: each task a
// Job whose pod runs the TaskDefinition with Iris's runner. States come
// from the Job and its pods (k8s.RecipeTaskStatusOf); the completion
// callback is events.RecipeTaskReporter's.
type Tasks struct {
	jobs  TaskJobs
	opts  TranslateOptions
	clock clock.PassiveClock
}

// NewTasks returns the task backend.
func NewTasks(jobs TaskJobs, opts TranslateOptions, clock clock.PassiveClock) *Tasks {
	return &Tasks{jobs: jobs, opts: opts, clock: clock}
}

// DesireTask starts the task; ResourceExists if the guid is taken.
func (t *Tasks) DesireTask(ctx context.Context, logger lager.Logger, guid, domain string, def *models.TaskDefinition) error {
	task, err := TranslateTask(guid, domain, def, t.opts)
	if err != nil {
		return err
	}
	stored := &models.Task{TaskGuid: guid, Domain: domain, TaskDefinition: storedTaskDefinition(def), CreatedAt: t.clock.Now().UnixNano()}
	state, err := encodeTask(stored)
	if err != nil {
		return err
	}
	task.FrontState = map[string]string{AnnotationTask: state}
	err = t.jobs.Create(ctx, logger, task)
	switch {
	case errors.Is(err, k8s.ErrTaskExists):
		return models.ErrResourceExists
	case errors.Is(err, k8s.ErrNoRunnerImage):
		return invalid("%v", err)
	case err != nil:
		return bbsError(err)
	}
	return nil
}

// Tasks lists the tasks matching filter, sorted by guid.
func (t *Tasks) Tasks(ctx context.Context, logger lager.Logger, filter models.TaskFilter) ([]*models.Task, error) {
	var tasks []*models.Task
	var failed error
	t.jobs.Jobs(func(job *batchv1.Job) {
		if filter.Domain != "" && job.Annotations[k8s.AnnotationBBSDomain] != filter.Domain {
			return
		}
		task, err := t.task(job)
		if err != nil {
			failed = err
			return
		}
		if task == nil || (filter.CellID != "" && task.CellId != filter.CellID) {
			return
		}
		tasks = append(tasks, task)
	})
	if failed != nil {
		// A partial list makes CC's sync fail tasks that run.
		return nil, failed
	}
	sort.Slice(tasks, func(i, j int) bool { return tasks[i].TaskGuid < tasks[j].TaskGuid })
	return tasks, nil
}

// TaskByGuid returns one task; ResourceNotFound for an unknown guid.
func (t *Tasks) TaskByGuid(ctx context.Context, logger lager.Logger, guid string) (*models.Task, error) {
	job, err := t.lookup(ctx, guid)
	if err != nil {
		return nil, err
	}
	task, err := t.task(job)
	if err != nil {
		return nil, err
	}
	if task == nil {
		return nil, models.ErrResourceNotFound
	}
	return task, nil
}

// CancelTask stops a PENDING or RUNNING task; its callback then reports it
// failed with "task was cancelled". A completed task cannot be cancelled:
// BBS answers InvalidStateTransition.
func (t *Tasks) CancelTask(ctx context.Context, logger lager.Logger, guid string) error {
	job, err := t.lookup(ctx, guid)
	if err == nil {
		// A cancel right after a cancel must find the task completed.
		job, err = t.jobs.Fresh(ctx, job)
		if errors.Is(err, irismodels.ErrNotFound) {
			err = models.ErrResourceNotFound
		}
	}
	if err != nil {
		return err
	}
	status := k8s.RecipeTaskStatusOf(job, t.jobs.Pods(job), t.clock.Now().UnixNano())
	if job.Annotations[k8s.AnnotationCallbackDelivered] != "" {
		return models.ErrResourceNotFound
	}
	if state := taskState(status.Phase); state == models.Task_Completed || state == models.Task_Resolving {
		// BBS's own words (models.Task.ValidateTransitionTo).
		return models.NewError(models.Error_InvalidStateTransition, fmt.Sprintf("Cannot transition from %s to %s", state, models.Task_Completed))
	}
	if err := t.jobs.Cancel(ctx, job); err != nil {
		if errors.Is(err, irismodels.ErrNotFound) {
			return models.ErrResourceNotFound
		}
		return err
	}
	logger.Info("cancelled", lager.Data{"job": job.Name, "phase": status.Phase})
	return nil
}

func (t *Tasks) lookup(ctx context.Context, guid string) (*batchv1.Job, error) {
	job, err := t.jobs.Job(ctx, guid)
	if errors.Is(err, irismodels.ErrNotFound) {
		return nil, models.ErrResourceNotFound
	}
	return job, err
}

// task is the BBS task a Job stands for, or nil once its callback was
// answered: BBS deletes a task then, while Iris keeps the Job (and its
// pod's logs) a little longer.
func (t *Tasks) task(job *batchv1.Job) (*models.Task, error) {
	if job.Annotations[k8s.AnnotationCallbackDelivered] != "" {
		return nil, nil
	}
	task, err := StoredTask(job)
	if err != nil {
		return nil, err
	}
	status := k8s.RecipeTaskStatusOf(job, t.jobs.Pods(job), t.clock.Now().UnixNano())
	task.State = taskState(status.Phase)
	task.CellId = status.CellID
	task.UpdatedAt = task.CreatedAt
	if o := status.Outcome; o != nil {
		task.Failed, task.FailureReason, task.Result = o.Failed, o.FailureReason, o.Result
		task.FirstCompletedAt, task.UpdatedAt = o.CompletedAt, o.CompletedAt
		// BBS clears the cell when a task completes.
		task.CellId = ""
	}
	return task, nil
}

// TranslateTask turns a validated TaskDefinition into the task Kubernetes
// runs: the recipe runs with Iris's runner in the root file system image
// (docker:// names it; preloaded:<stack> is the operator's image for the
// stack). What Iris cannot or may not run is an InvalidRequest saying why.
func TranslateTask(guid, domain string, def *models.TaskDefinition, opts TranslateOptions) (*k8s.RecipeTask, error) {
	image, runsAsImageUser, err := taskImage(def, opts)
	if err != nil {
		return nil, err
	}
	if def.Privileged && !opts.AllowPrivileged {
		return nil, invalid("privileged: privileged containers are not allowed by this Iris (bbs.allow_privileged)")
	}
	tags := staticMetricTags(def.MetricTags)
	task := &k8s.RecipeTask{
		GUID:               guid,
		Domain:             domain,
		SourceType:         k8s.SourceTypeTask,
		AppGUID:            firstNonEmpty(tags[tagAppID], def.LogGuid),
		AppName:            tags[tagAppName],
		SpaceGUID:          tags[tagSpaceID],
		SpaceName:          tags[tagSpaceName],
		OrgGUID:            firstNonEmpty(tags[tagOrgID], tags[tagOrgIDShort]),
		OrgName:            tags[tagOrgName],
		TaskName:           strings.TrimPrefix(def.LogSource, taskLogSourcePrefix),
		Image:              image,
		InStack:            strings.HasPrefix(def.RootFs, preloadedRootFSScheme),
		RegistryUsername:   def.ImageUsername,
		RegistryPassword:   def.ImagePassword,
		RunsAsImageUser:    runsAsImageUser,
		Recipe:             actions.RecipeFromTaskDefinition(def),
		MemoryMB:           int64(def.MemoryMb),
		DiskMB:             int64(def.DiskMb),
		CPUWeight:          int64(def.CpuWeight),
		PlacementTags:      append([]string(nil), def.PlacementTags...),
		CompletionCallback: def.CompletionCallbackUrl,
	}
	if domain == StagingDomain {
		task.SourceType, task.TaskName = k8s.SourceTypeStaging, ""
	}
	if err := task.Recipe.Validate(); err != nil {
		return nil, invalid("%v", err)
	}
	return task, nil
}

// taskImage is the image a task runs in, and whether the image's own user
// applies (privileged docker tasks, root images where allowed).
func taskImage(def *models.TaskDefinition, opts TranslateOptions) (string, bool, error) {
	rootFS := def.RootFs
	switch {
	case strings.HasPrefix(rootFS, dockerRootFSScheme):
		image, err := dockerImage(rootFS)
		return image, def.Privileged && opts.AllowPrivileged, err
	case strings.HasPrefix(rootFS, preloadedRootFSScheme):
		stack := strings.TrimPrefix(rootFS, preloadedRootFSScheme)
		image := opts.Stacks[stack]
		if image == "" {
			return "", false, invalid("rootfs %q: this Iris has no image for stack %q (bbs.stacks)", rootFS, stack)
		}
		return image, false, nil
	}
	return "", false, invalid("rootfs %q: want docker://<image> or preloaded:<stack>", rootFS)
}

// storedTaskDefinition is def without what must not sit in an annotation
// anyone who may read Jobs sees: image credentials, the callback URL's
// user and password, and the environment (CC puts VCAP_SERVICES, with
// service credentials, into a task's run action): those live only in the
// recipe and registry Secrets, so get and list answer without them.
func storedTaskDefinition(def *models.TaskDefinition) *models.TaskDefinition {
	stored := &models.TaskDefinition{}
	data, err := def.Marshal()
	if err != nil || stored.Unmarshal(data) != nil {
		// A validated definition always encodes; keep nothing rather than secrets.
		stored = &models.TaskDefinition{RootFs: def.RootFs, LogGuid: def.LogGuid, Annotation: def.Annotation}
	}
	stored.ImageUsername, stored.ImagePassword = "", ""
	if stored.CompletionCallbackUrl != "" {
		stored.CompletionCallbackUrl = cc.RedactURL(stored.CompletionCallbackUrl)
	}
	stored.EnvironmentVariables = nil
	forEachRunAction(stored.Action, func(run *models.RunAction) { run.Env = nil })
	return stored
}

// forEachRunAction calls fn with every run action in action's tree.
func forEachRunAction(action *models.Action, fn func(*models.RunAction)) {
	findRun(action, func(run *models.RunAction) bool {
		fn(run)
		return false // visit them all
	})
}

func encodeTask(task *models.Task) (string, error) {
	data, err := task.Marshal()
	if err != nil {
		return "", fmt.Errorf("encoding task %s: %w", task.TaskGuid, err)
	}
	return base64.StdEncoding.EncodeToString(data), nil
}

func decodeTask(state string) (*models.Task, error) {
	data, err := base64.StdEncoding.DecodeString(state)
	if err != nil {
		return nil, fmt.Errorf("decoding %s: %w", AnnotationTask, err)
	}
	task := &models.Task{}
	if err := task.Unmarshal(data); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", AnnotationTask, err)
	}
	return task, nil
}

// StoredTask is the task as desired, from its Job.
func StoredTask(job *batchv1.Job) (*models.Task, error) {
	task, err := decodeTask(job.Annotations[AnnotationTask])
	if err != nil {
		return nil, fmt.Errorf("job %s/%s: %w", job.Namespace, job.Name, err)
	}
	if task.TaskDefinition == nil {
		task.TaskDefinition = &models.TaskDefinition{}
	}
	return task, nil
}

// taskState is BBS's state for a recipe task's phase.
func taskState(phase string) models.Task_State {
	switch phase {
	case k8s.TaskPhaseRunning:
		return models.Task_Running
	case k8s.TaskPhaseCompleted:
		return models.Task_Completed
	case k8s.TaskPhaseResolving:
		return models.Task_Resolving
	}
	return models.Task_Pending
}
