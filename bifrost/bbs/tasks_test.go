package bbs_test

import (
	"errors"

	"code.cloudfoundry.org/bbs/models"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/bifrost/bbs"
	"github.com/iris-cf/iris/bifrost/bbs/bbsfakes"
)

const taskGuid = "8e3c1f52-9a4b-4c1d-8e2f-3a5b6c7d8e9f"

// ccRunTask is a TaskDefinition shaped as CC's TaskRecipeBuilder builds a
// `cf run-task` of a buildpack app: the lifecycle as a shared image layer,
// the droplet as an exclusive one, the launcher running the command.
func ccRunTask() *models.TaskDefinition {
	return &models.TaskDefinition{
		RootFs:                "preloaded:cflinuxfs4",
		LogGuid:               "5d1dc1c4-8b5f-4e1d-9c4a-2b9e3f1a7c60",
		LogSource:             "APP/TASK/migrate",
		MemoryMb:              256,
		DiskMb:                1024,
		CpuWeight:             1,
		MaxPids:               1024,
		CompletionCallbackUrl: "https://cloud-controller-ng.service.cf.internal:9023/internal/v4/tasks/" + taskGuid + "/completed",
		MetricTags: map[string]*models.MetricTagValue{
			"source_id": {Static: "5d1dc1c4-8b5f-4e1d-9c4a-2b9e3f1a7c60"},
			"space_id":  {Static: "b3c8d5a0-0000-4000-8000-000000000002"},
		},
		LegacyDownloadUser: "vcap",
		ImageLayers: []*models.ImageLayer{
			{Name: "cflinuxfs4-lifecycle", Url: "https://file-server.service.cf.internal:8447/v1/static/buildpack_app_lifecycle/buildpack_app_lifecycle.tgz",
				DestinationPath: "/tmp/lifecycle", LayerType: models.LayerTypeShared, MediaType: models.MediaTypeTgz},
			{Name: "droplet", Url: "https://cc-uploader.service.cf.internal:9091/v1/static/droplet.tgz", DestinationPath: "/home/vcap",
				LayerType: models.LayerTypeExclusive, MediaType: models.MediaTypeTgz,
				DigestAlgorithm: models.DigestAlgorithmSha256, DigestValue: "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4"},
		},
		Action: models.WrapAction(&models.RunAction{Path: "/tmp/lifecycle/launcher", Args: []string{"app", "bin/rake db:migrate", ""}, User: "vcap"}),
	}
}

var _ = Describe("Task routes, driven by the real BBS Go client over mTLS", func() {
	var (
		f     *fixture
		tasks *bbsfakes.FakeTasks
	)

	BeforeEach(func() {
		tasks = &bbsfakes.FakeTasks{}
		f = newFixtureWith(0, tasks)
	})

	Describe("desire.r2", func() {
		It("hands the task to the backend with its guid and domain, and the request id in the context", func() {
			def := ccRunTask()
			Expect(f.client.DesireTask(f.logger, "request-7", taskGuid, "cf-tasks", def)).To(Succeed())
			Expect(tasks.DesireTaskCallCount()).To(Equal(1))
			ctx, _, guid, domain, got := tasks.DesireTaskArgsForCall(0)
			Expect(guid).To(Equal(taskGuid))
			Expect(domain).To(Equal("cf-tasks"))
			Expect(got).To(Equal(def))
			Expect(bbs.RequestID(ctx)).To(Equal("request-7"))
		})

		It("answers a taken guid with ResourceExists and BBS's exact message", func() {
			tasks.DesireTaskReturns(models.ErrResourceExists)
			err := f.client.DesireTask(f.logger, "", taskGuid, "cf-tasks", ccRunTask())
			Expect(err).To(MatchError(models.ErrResourceExists))
			Expect(err.Error()).To(Equal("the requested resource already exists"))
		})

		DescribeTable("refuses what the models refuse, with their message, and calls no backend",
			func(guid, domain string, change func(*models.TaskDefinition), message string) {
				def := ccRunTask()
				change(def)
				err := f.client.DesireTask(f.logger, "", guid, domain, def)
				Expect(err).To(MatchError(models.NewError(models.Error_InvalidRequest, message)))
				Expect(tasks.DesireTaskCallCount()).To(BeZero())
			},
			Entry("a guid with a slash", "a/b", "cf-tasks", func(*models.TaskDefinition) {}, "Invalid field: task_guid"),
			Entry("no domain", taskGuid, "", func(*models.TaskDefinition) {}, "Invalid field: domain"),
			Entry("no root fs", taskGuid, "cf-tasks", func(d *models.TaskDefinition) { d.RootFs = "" }, "Invalid field: rootfs"),
			Entry("no action", taskGuid, "cf-tasks", func(d *models.TaskDefinition) { d.Action = nil }, "invalid action type"),
			Entry("an image password without a user", taskGuid, "cf-tasks", func(d *models.TaskDefinition) { d.ImagePassword = "p" }, "Invalid field: image_username"),
		)
	})

	Describe("get_by_task_guid", func() {
		It("answers .r2, CC's read, in V2 form: image layers become a cached dependency and a download action", func() {
			tasks.TaskByGuidReturns(&models.Task{TaskGuid: taskGuid, Domain: "cf-tasks", TaskDefinition: ccRunTask(), State: models.Task_Running, CellId: "node-1"}, nil)
			task, err := f.client.TaskByGuid(f.logger, "", taskGuid) // the client reads .r3
			Expect(err).NotTo(HaveOccurred())
			Expect(task.ImageLayers).To(HaveLen(2))

			response := &models.TaskResponse{}
			f.postProto("/v1/tasks/get_by_task_guid.r2", &models.TaskByGuidRequest{TaskGuid: taskGuid}, response)
			Expect(response.Error).To(BeNil())
			Expect(response.Task.State).To(Equal(models.Task_Running))
			Expect(response.Task.CellId).To(Equal("node-1"))
			Expect(response.Task.ImageLayers).To(BeEmpty())
			Expect(response.Task.CachedDependencies).To(ConsistOf(HaveField("To", "/tmp/lifecycle")))
			Expect(response.Task.Action.SerialAction).NotTo(BeNil())
			_, _, guid := tasks.TaskByGuidArgsForCall(1)
			Expect(guid).To(Equal(taskGuid))
		})

		It("answers an unknown guid with ResourceNotFound", func() {
			tasks.TaskByGuidReturns(nil, models.ErrResourceNotFound)
			_, err := f.client.TaskByGuid(f.logger, "", taskGuid)
			Expect(err).To(MatchError(models.ErrResourceNotFound))
		})

		It("refuses a request without a guid", func() {
			response := &models.TaskResponse{}
			f.postProto("/v1/tasks/get_by_task_guid.r2", &models.TaskByGuidRequest{}, response)
			Expect(response.Error).To(Equal(models.NewError(models.Error_InvalidRequest, "Invalid field: task_guid")))
			Expect(tasks.TaskByGuidCallCount()).To(BeZero())
		})
	})

	Describe("list", func() {
		It("passes domain and cell id as the filter and answers every task (.r2 downgraded)", func() {
			tasks.TasksReturns([]*models.Task{
				{TaskGuid: "a", Domain: "cf-tasks", TaskDefinition: ccRunTask(), State: models.Task_Pending},
				{TaskGuid: "b", Domain: "cf-tasks", TaskDefinition: ccRunTask(), State: models.Task_Completed, Failed: true, FailureReason: "task was cancelled"},
			}, nil)
			response := &models.TasksResponse{}
			f.postProto("/v1/tasks/list.r2", &models.TasksRequest{Domain: "cf-tasks", CellId: "node-1"}, response)
			Expect(response.Error).To(BeNil())
			Expect(response.Tasks).To(HaveLen(2))
			Expect(response.Tasks[1].FailureReason).To(Equal("task was cancelled"))
			Expect(response.Tasks[0].ImageLayers).To(BeEmpty())
			_, _, filter := tasks.TasksArgsForCall(0)
			Expect(filter).To(Equal(models.TaskFilter{Domain: "cf-tasks", CellID: "node-1"}))
		})

		It("fails as a whole when the backend fails", func() {
			tasks.TasksReturns(nil, errors.New("listing on diego: connection refused"))
			_, err := f.client.TasksByDomain(f.logger, "", "cf-tasks")
			Expect(err).To(MatchError(models.NewError(models.Error_UnknownError, "listing on diego: connection refused")))
		})
	})

	Describe("cancel", func() {
		It("cancels by guid", func() {
			Expect(f.client.CancelTask(f.logger, "", taskGuid)).To(Succeed())
			_, _, guid := tasks.CancelTaskArgsForCall(0)
			Expect(guid).To(Equal(taskGuid))
		})

		It("answers an unknown guid with ResourceNotFound and a completed task with InvalidStateTransition", func() {
			tasks.CancelTaskReturnsOnCall(0, models.ErrResourceNotFound)
			tasks.CancelTaskReturnsOnCall(1, models.NewError(models.Error_InvalidStateTransition, "Cannot transition from Completed to Completed"))
			Expect(f.client.CancelTask(f.logger, "", taskGuid)).To(MatchError(models.ErrResourceNotFound))
			err := f.client.CancelTask(f.logger, "", taskGuid)
			Expect(err).To(MatchError(models.NewError(models.Error_InvalidStateTransition, "Cannot transition from Completed to Completed")))
		})
	})

	It("serves no task route without a Tasks backend", func() {
		plain := newFixture(0)
		answer := plain.post("/v1/tasks/list.r2", "application/x-protobuf", nil)
		Expect(answer.StatusCode).To(Equal(404))
	})
})
