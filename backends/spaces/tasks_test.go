package spaces_test

import (
	"context"
	"errors"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/backends/spaces"
	"github.com/iris-cf/iris/bifrost/bbs/bbsfakes"
)

// knowsTasks makes a fake side know exactly guids.
func knowsTasks(side *bbsfakes.FakeTasks, guids ...string) {
	side.TaskByGuidCalls(func(_ context.Context, _ lager.Logger, guid string) (*models.Task, error) {
		for _, g := range guids {
			if g == guid {
				return &models.Task{TaskGuid: guid}, nil
			}
		}
		return nil, models.ErrResourceNotFound
	})
	side.CancelTaskCalls(func(_ context.Context, _ lager.Logger, guid string) error {
		for _, g := range guids {
			if g == guid {
				return nil
			}
		}
		return models.ErrResourceNotFound
	})
}

func taggedTask(org, space string) *models.TaskDefinition {
	return &models.TaskDefinition{MetricTags: map[string]*models.MetricTagValue{"organization_id": {Static: org}, "space_id": {Static: space}}}
}

var _ = Describe("TaskRouter", func() {
	var (
		kube, diego *bbsfakes.FakeTasks
		router      *spaces.TaskRouter
		ctx         context.Context
		logger      *lagertest.TestLogger
	)

	BeforeEach(func() {
		kube, diego = &bbsfakes.FakeTasks{}, &bbsfakes.FakeTasks{}
		knowsTasks(kube)
		knowsTasks(diego)
		ctx, logger = context.Background(), lagertest.NewTestLogger("task-router")
		router = spaces.NewTaskRouter(kube, diego, placementFunc(func(org, space string) spaces.Side {
			if space == "diego-space" {
				return spaces.Diego
			}
			return spaces.Kubernetes
		}))
	})

	It("desires a task on its space's side", func() {
		Expect(router.DesireTask(ctx, logger, "t1", "cf-tasks", taggedTask("org", "diego-space"))).To(Succeed())
		Expect(router.DesireTask(ctx, logger, "t2", "cf-app-staging", taggedTask("org", "k8s-space"))).To(Succeed())
		Expect(diego.DesireTaskCallCount()).To(Equal(1))
		_, _, guid, _, _ := diego.DesireTaskArgsForCall(0)
		Expect(guid).To(Equal("t1"))
		Expect(kube.DesireTaskCallCount()).To(Equal(1))
		_, _, guid, domain, _ := kube.DesireTaskArgsForCall(0)
		Expect(guid).To(Equal("t2"))
		Expect(domain).To(Equal("cf-app-staging"))
	})

	It("refuses a guid the other side has with ResourceExists, and fails when that side cannot be asked", func() {
		knowsTasks(diego, "t1")
		Expect(router.DesireTask(ctx, logger, "t1", "cf-tasks", taggedTask("org", "k8s-space"))).To(MatchError(models.ErrResourceExists))
		diego.TaskByGuidReturns(nil, errors.New("diego bbs task by guid: connection refused"))
		Expect(router.DesireTask(ctx, logger, "t3", "cf-tasks", taggedTask("org", "k8s-space"))).To(MatchError(ContainSubstring("connection refused")))
		Expect(kube.DesireTaskCallCount()).To(BeZero())
	})

	It("sends guid-only calls to the side that has the task", func() {
		knowsTasks(kube, "on-k8s")
		knowsTasks(diego, "on-diego")
		Expect(router.TaskByGuid(ctx, logger, "on-diego")).To(HaveField("TaskGuid", "on-diego"))
		Expect(router.TaskByGuid(ctx, logger, "on-k8s")).To(HaveField("TaskGuid", "on-k8s"))
		Expect(router.CancelTask(ctx, logger, "on-diego")).To(Succeed())
		Expect(router.CancelTask(ctx, logger, "nowhere")).To(MatchError(models.ErrResourceNotFound))
		_, err := router.TaskByGuid(ctx, logger, "nowhere")
		Expect(err).To(MatchError(models.ErrResourceNotFound))
	})

	It("lists the union of both sides, and fails as a whole when one fails", func() {
		kube.TasksReturns([]*models.Task{{TaskGuid: "b"}}, nil)
		diego.TasksReturns([]*models.Task{{TaskGuid: "a"}}, nil)
		filter := models.TaskFilter{Domain: "cf-tasks"}
		Expect(router.Tasks(ctx, logger, filter)).To(Equal([]*models.Task{{TaskGuid: "a"}, {TaskGuid: "b"}}))
		_, _, got := diego.TasksArgsForCall(0)
		Expect(got).To(Equal(filter))

		diego.TasksReturns(nil, errors.New("diego bbs tasks: connection refused"))
		_, err := router.Tasks(ctx, logger, filter)
		Expect(err).To(MatchError(ContainSubstring("listing tasks on diego")))
	})
})
