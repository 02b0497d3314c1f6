package diego

import (
	"context"

	bbsclient "code.cloudfoundry.org/bbs"
	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"

	"github.com/iris-cf/iris/bifrost/bbs"
)

// Tasks forwards the BBS front's task routes to Diego's BBS, whose own
// cells run the tasks and whose own task workpool posts their callbacks.
// Errors as for Backend.
type Tasks struct {
	client bbsclient.ExternalTaskClient
}

// NewTasks returns the task routes over client.
func NewTasks(client bbsclient.ExternalTaskClient) *Tasks {
	return &Tasks{client: client}
}

func (t *Tasks) DesireTask(ctx context.Context, logger lager.Logger, guid, domain string, def *models.TaskDefinition) error {
	return wrap("desire task", t.client.DesireTask(logger, bbs.RequestID(ctx), guid, domain, def))
}

func (t *Tasks) Tasks(ctx context.Context, logger lager.Logger, filter models.TaskFilter) ([]*models.Task, error) {
	tasks, err := t.client.TasksWithFilter(logger, bbs.RequestID(ctx), filter)
	return tasks, wrap("tasks", err)
}

func (t *Tasks) TaskByGuid(ctx context.Context, logger lager.Logger, guid string) (*models.Task, error) {
	task, err := t.client.TaskByGuid(logger, bbs.RequestID(ctx), guid)
	return task, wrap("task by guid", err)
}

func (t *Tasks) CancelTask(ctx context.Context, logger lager.Logger, guid string) error {
	return wrap("cancel task", t.client.CancelTask(logger, bbs.RequestID(ctx), guid))
}
