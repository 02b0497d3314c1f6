package spaces

import (
	"context"
	"fmt"
	"sort"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"

	"github.com/iris-cf/iris/bifrost/bbs"
)

// TaskRouter implements bifrost/bbs's Tasks over the two sides, as Router
// does for LRPs:
//   - desire: the side the placement names for the task's space (CC's
//     metric tags space_id and organization_id), refused with
//     ResourceExists when the other side has the guid;
//   - get and cancel, which carry only a guid: the side that has the
//     task, Kubernetes (its caches) asked first;
//   - list: the union of both sides, failing as a whole when either
//     fails (CC's task sync fails tasks missing from a list).
type TaskRouter struct {
	sides     map[Side]bbs.Tasks
	placement Placement
}

// NewTaskRouter routes tasks between the Kubernetes and Diego task backends by placement.
func NewTaskRouter(kubernetes, diego bbs.Tasks, placement Placement) *TaskRouter {
	return &TaskRouter{sides: map[Side]bbs.Tasks{Kubernetes: kubernetes, Diego: diego}, placement: placement}
}

func (r *TaskRouter) DesireTask(ctx context.Context, logger lager.Logger, guid, domain string, def *models.TaskDefinition) error {
	side := r.placement.SideFor(taskSpace(def))
	_, err := r.sides[other(side)].TaskByGuid(ctx, logger, guid)
	switch {
	case err == nil:
		return models.ErrResourceExists
	case !isNotFound(err):
		return fmt.Errorf("checking that %s does not have the task already: %w", other(side), err)
	}
	logger.Info("desire-task", lager.Data{"backend": side, "task_guid": guid})
	return r.sides[side].DesireTask(ctx, logger, guid, domain, def)
}

func (r *TaskRouter) Tasks(ctx context.Context, logger lager.Logger, filter models.TaskFilter) ([]*models.Task, error) {
	var all []*models.Task
	for _, side := range order {
		tasks, err := r.sides[side].Tasks(ctx, logger, filter)
		if err != nil {
			return nil, fmt.Errorf("listing tasks on %s: %w", side, err)
		}
		all = append(all, tasks...)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].TaskGuid < all[j].TaskGuid })
	return all, nil
}

func (r *TaskRouter) TaskByGuid(ctx context.Context, logger lager.Logger, guid string) (*models.Task, error) {
	task, err := r.sides[Kubernetes].TaskByGuid(ctx, logger, guid)
	if err == nil || !isNotFound(err) {
		return task, err
	}
	return r.sides[Diego].TaskByGuid(ctx, logger, guid)
}

func (r *TaskRouter) CancelTask(ctx context.Context, logger lager.Logger, guid string) error {
	err := r.sides[Kubernetes].CancelTask(ctx, logger, guid)
	if err == nil || !isNotFound(err) {
		return err
	}
	return r.sides[Diego].CancelTask(ctx, logger, guid)
}

// taskSpace reads the org and space CC tags every task with.
func taskSpace(def *models.TaskDefinition) (org, space string) {
	return spaceOfTags(def.MetricTags)
}
