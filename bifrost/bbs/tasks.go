package bbs

import (
	"net/http"

	"code.cloudfoundry.org/bbs/format"
	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
)

// taskRoutes are the task routes CC (desire.r2, cancel, list.r2,
// get_by_task_guid.r2) and newer clients (the .r3 reads) call. The routes
// a Diego cell's rep calls (start, complete, fail, reject) and the ones a
// client without a completion callback cleans up with (resolving, delete)
// are not served: Iris's own reporter completes and removes tasks.
func (h *Handler) taskRoutes() map[string]http.HandlerFunc {
	return map[string]http.HandlerFunc{
		"/v1/tasks/desire.r2":           h.desireTask,
		"/v1/tasks/cancel":              h.cancelTask,
		"/v1/tasks/list.r2":             h.listTasks(format.V2),
		"/v1/tasks/list.r3":             h.listTasks(format.V3),
		"/v1/tasks/get_by_task_guid.r2": h.taskByGuid(format.V2),
		"/v1/tasks/get_by_task_guid.r3": h.taskByGuid(format.V3),
	}
}

func (h *Handler) desireTask(w http.ResponseWriter, r *http.Request) {
	logger := h.session(r, "desire-task")
	request := &models.DesireTaskRequest{}
	response := &models.TaskLifecycleResponse{}
	err := h.decode(logger, r, request)
	if err == nil {
		logger = logger.WithData(lager.Data{"task_guid": request.TaskGuid, "domain": request.Domain})
		err = h.tasks.DesireTask(r.Context(), logger, request.TaskGuid, request.Domain, request.TaskDefinition)
	}
	response.Error = responseError(logger, err)
	h.write(logger, w, response)
}

func (h *Handler) cancelTask(w http.ResponseWriter, r *http.Request) {
	logger := h.session(r, "cancel-task")
	request := &models.TaskGuidRequest{}
	response := &models.TaskLifecycleResponse{}
	err := h.decode(logger, r, request)
	if err == nil {
		logger = logger.WithData(lager.Data{"task_guid": request.TaskGuid})
		err = h.tasks.CancelTask(r.Context(), logger, request.TaskGuid)
	}
	response.Error = responseError(logger, err)
	h.write(logger, w, response)
}

// listTasks serves the task list in the route's version: .r2, which CC
// reads, turns image layers into cached dependencies and download actions.
func (h *Handler) listTasks(version format.Version) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		logger := h.session(r, "tasks").WithData(lager.Data{"version": version})
		request := &models.TasksRequest{}
		response := &models.TasksResponse{}
		err := h.decode(logger, r, request)
		if err == nil {
			var tasks []*models.Task
			tasks, err = h.tasks.Tasks(r.Context(), logger, models.TaskFilter{Domain: request.Domain, CellID: request.CellId})
			if err == nil {
				response.Tasks = make([]*models.Task, len(tasks))
				for i, task := range tasks {
					response.Tasks[i] = task.VersionDownTo(version)
				}
			}
		}
		response.Error = responseError(logger, err)
		h.write(logger, w, response)
	}
}

func (h *Handler) taskByGuid(version format.Version) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		logger := h.session(r, "task-by-guid").WithData(lager.Data{"version": version})
		request := &models.TaskByGuidRequest{}
		response := &models.TaskResponse{}
		err := h.decode(logger, r, request)
		if err == nil {
			var task *models.Task
			task, err = h.tasks.TaskByGuid(r.Context(), logger, request.TaskGuid)
			if task != nil && err == nil {
				response.Task = task.VersionDownTo(version)
			}
		}
		response.Error = responseError(logger, err)
		h.write(logger, w, response)
	}
}
