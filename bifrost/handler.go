// Package bifrost is the HTTP API Cloud Controller's OPI client calls.
// It speaks CC's JSON and hands the work to a backend.
package bifrost

//go:generate go tool counterfeiter -generate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"strconv"
	"strings"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/iris-cf/iris/models"
	"github.com/iris-cf/iris/workload"
)

//counterfeiter:generate . LRPBackend
//counterfeiter:generate . TaskBackend
//counterfeiter:generate . StagingBackend

// LRPBackend carries out LRP requests; the k8s package implements it.
// Errors: models.ErrNotFound → 404, models.InvalidRequestError → 400,
// anything else → 500.
type LRPBackend interface {
	Desire(ctx context.Context, logger lager.Logger, lrp *workload.DesiredLRP) error
	Get(ctx context.Context, guid, version string) (*models.DesiredLRP, error)
	List() []models.DesiredLRPSchedulingInfo
	Update(ctx context.Context, logger lager.Logger, req *models.UpdateDesiredLRPRequest) error
	Stop(ctx context.Context, logger lager.Logger, guid, version string) error
	StopInstance(ctx context.Context, logger lager.Logger, guid, version string, index int) error
	Instances(ctx context.Context, guid, version string) ([]*models.Instance, error)
}

// StreamedSchedulingInfos is what an LRPBackend may also offer for
// GET /apps: List's infos yielded one at a time (each valid until the
// next), which the handler writes as they come instead of collecting
// 100,000 of them first.
type StreamedSchedulingInfos interface {
	SchedulingInfos() iter.Seq[*models.DesiredLRPSchedulingInfo]
}

// TaskBackend carries out task requests; errors map as for LRPBackend.
type TaskBackend interface {
	Desire(ctx context.Context, logger lager.Logger, task *models.TaskRequest) error
	Get(ctx context.Context, guid string) (*models.TaskResponse, error)
	List() []models.TaskResponse
	Cancel(ctx context.Context, logger lager.Logger, guid string) error
}

// StagingBackend carries out staging requests; errors map as for LRPBackend.
type StagingBackend interface {
	Stage(ctx context.Context, logger lager.Logger, guid string, req *models.StagingRequest) error
	Complete(ctx context.Context, logger lager.Logger, guid string, done *models.StagingCompletedRequest) error
	Cancel(ctx context.Context, logger lager.Logger, guid string) error
	// VerifyCompletionToken checks the token a staging pod presents for its
	// staging: models.ErrUnauthorized unless it is the one minted for it.
	VerifyCompletionToken(ctx context.Context, guid, token string) error
}

// Backends are what the API hands its work to.
type Backends struct {
	LRPs    LRPBackend
	Tasks   TaskBackend
	Staging StagingBackend
}

// Limits bound what one request may ask for and how many are served at once.
type Limits struct {
	// MaxRequestBodyBytes: larger bodies are refused with 400.
	MaxRequestBodyBytes int64
	// MaxInstances: a desire or update asking for more is refused with 400.
	MaxInstances int
	// MaxInFlightRequests: more requests at once are answered 503.
	MaxInFlightRequests int
	// DefaultTaskMemoryMB and DefaultTaskDiskMB limit a task whose request
	// (and environment) carries no limits of its own; see taskResources.
	DefaultTaskMemoryMB int64
	DefaultTaskDiskMB   int64
}

// Handler routes CC's requests.
type Handler struct {
	lrps    LRPBackend
	tasks   TaskBackend
	staging StagingBackend
	logger  lager.Logger
	limits  Limits
}

// NewHandler returns the API's http.Handler. Every listener serving it
// shares its bound on in-flight requests.
func NewHandler(logger lager.Logger, backends Backends, limits Limits) http.Handler {
	h := &Handler{lrps: backends.LRPs, tasks: backends.Tasks, staging: backends.Staging, logger: logger.Session("bifrost"), limits: limits}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /apps/{process_guid}", h.desireLRP)
	mux.HandleFunc("GET /apps", h.listLRPs)
	mux.HandleFunc("POST /apps/{process_guid}", h.updateLRP)
	mux.HandleFunc("GET /apps/{guid}/{version}", h.getLRP)
	mux.HandleFunc("PUT /apps/{guid}/{version}/stop", h.stopLRP)
	mux.HandleFunc("PUT /apps/{guid}/{version}/stop/{index}", h.stopInstance)
	mux.HandleFunc("GET /apps/{guid}/{version}/instances", h.getInstances)
	mux.HandleFunc("POST /tasks/{guid}", h.desireTask)
	mux.HandleFunc("GET /tasks", h.listTasks)
	mux.HandleFunc("GET /tasks/{guid}", h.getTask)
	mux.HandleFunc("DELETE /tasks/{guid}", h.cancelTask)
	mux.HandleFunc("POST /stage/{guid}", h.stage)
	mux.HandleFunc("PUT /stage/{guid}/completed", h.stagingCompleted)
	mux.HandleFunc("DELETE /stage/{guid}", h.cancelStaging)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	return h.logRequests(h.limitInFlight(mux))
}

// NewStagingTokenHandler serves the TLS clients that present no client
// certificate: staging pods, which have none, reporting their staging's
// outcome. It has one route, PUT /stage/{guid}/completed, and serves it
// only with "Authorization: Bearer <token>" carrying the token minted for
// that staging (StagingBackend.VerifyCompletionToken); everything else is
// 401. The token is never logged.
func NewStagingTokenHandler(logger lager.Logger, staging StagingBackend, limits Limits) http.Handler {
	h := &Handler{staging: staging, logger: logger.Session("bifrost-staging-token"), limits: limits}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /stage/{guid}/completed", h.stagingCompletedWithToken)
	onlyMux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			h.writeError(w, r, errNoClientCertificate)
			return
		}
		mux.ServeHTTP(w, r)
	})
	return h.logRequests(h.limitInFlight(onlyMux))
}

// errNoClientCertificate refuses a request without a client certificate
// anywhere but on a staging's completion.
var errNoClientCertificate = fmt.Errorf("%w: a client certificate is required (staging pods may only PUT /stage/{guid}/completed, with their staging's token)", models.ErrUnauthorized)

func (h *Handler) stagingCompletedWithToken(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		h.writeError(w, r, fmt.Errorf("%w: no bearer token", models.ErrUnauthorized))
		return
	}
	if err := h.staging.VerifyCompletionToken(r.Context(), r.PathValue("guid"), token); err != nil {
		if errors.Is(err, models.ErrUnauthorized) {
			err = fmt.Errorf("%w: not the token of staging %s", models.ErrUnauthorized, r.PathValue("guid"))
		}
		h.writeError(w, r, err)
		return
	}
	h.stagingCompleted(w, r)
}

// limitInFlight answers 503 with Retry-After at once when MaxInFlightRequests
// are being served. Shedding rather than queueing keeps memory, goroutines
// and API-server calls bounded under a burst; CC retries (its periodic sync
// re-desires what is missing), and a 503 is what its OPI client sees when
// Iris is down anyway.
func (h *Handler) limitInFlight(next http.Handler) http.Handler {
	slots := make(chan struct{}, h.limits.MaxInFlightRequests)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
			next.ServeHTTP(w, r)
		default:
			w.Header().Set("Retry-After", "1")
			h.writeError(w, r, errOverloaded{max: h.limits.MaxInFlightRequests})
		}
	})
}

// errOverloaded is answered 503.
type errOverloaded struct{ max int }

func (e errOverloaded) Error() string {
	return fmt.Sprintf("Iris is serving its maximum of %d requests at once (api.max_in_flight_requests); retry later", e.max)
}

func (h *Handler) desireLRP(w http.ResponseWriter, r *http.Request) {
	var lrp models.DesireLRPRequest
	if !h.decode(w, r, &lrp) {
		return
	}
	upgradeDesire(&lrp)
	if err := validateDesire(r.PathValue("process_guid"), &lrp, h.limits); err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := h.lrps.Desire(r.Context(), h.requestLogger(r), DesiredLRP(&lrp)); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (h *Handler) listLRPs(w http.ResponseWriter, r *http.Request) {
	var infos iter.Seq[*models.DesiredLRPSchedulingInfo]
	if streamed, ok := h.lrps.(StreamedSchedulingInfos); ok {
		infos = streamed.SchedulingInfos()
	} else {
		list := h.lrps.List()
		infos = func(yield func(*models.DesiredLRPSchedulingInfo) bool) {
			for i := range list {
				if !yield(&list[i]) {
					return
				}
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if err := writeSchedulingInfos(w, infos); err != nil {
		h.requestLogger(r).Error("writing-response", err)
	}
}

func (h *Handler) updateLRP(w http.ResponseWriter, r *http.Request) {
	var req models.UpdateDesiredLRPRequest
	if !h.decode(w, r, &req) {
		return
	}
	if err := validateUpdate(r.PathValue("process_guid"), &req, h.limits); err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := h.lrps.Update(r.Context(), h.requestLogger(r), &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	// CC's update_app accepts only 200.
	h.writeJSON(w, r, http.StatusOK, struct{}{})
}

func (h *Handler) getLRP(w http.ResponseWriter, r *http.Request) {
	lrp, err := h.lrps.Get(r.Context(), r.PathValue("guid"), r.PathValue("version"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	h.writeJSON(w, r, http.StatusOK, models.DesiredLRPResponse{DesiredLRP: *lrp})
}

func (h *Handler) stopLRP(w http.ResponseWriter, r *http.Request) {
	if err := h.lrps.Stop(r.Context(), h.requestLogger(r), r.PathValue("guid"), r.PathValue("version")); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (h *Handler) stopInstance(w http.ResponseWriter, r *http.Request) {
	index, err := strconv.Atoi(r.PathValue("index"))
	if err != nil || index < 0 {
		h.writeError(w, r, models.Invalidf("instance index %q must be a non-negative integer", r.PathValue("index")))
		return
	}
	err = h.lrps.StopInstance(r.Context(), h.requestLogger(r), r.PathValue("guid"), r.PathValue("version"), index)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (h *Handler) getInstances(w http.ResponseWriter, r *http.Request) {
	guid, version := r.PathValue("guid"), r.PathValue("version")
	resp := models.GetInstancesResponse{ProcessGUID: guid + "-" + version, Instances: []*models.Instance{}}
	instances, err := h.lrps.Instances(r.Context(), guid, version)
	switch {
	case errors.Is(err, models.ErrNotFound):
		// CC reads the "error" field, not the status, and tolerates
		// "not found" for a stopped process.
		resp.Error = "not found"
		h.writeJSON(w, r, http.StatusNotFound, resp)
		return
	case err != nil:
		h.writeError(w, r, err)
		return
	}
	resp.Instances = instances
	h.writeJSON(w, r, http.StatusOK, resp)
}

func (h *Handler) desireTask(w http.ResponseWriter, r *http.Request) {
	var task models.TaskRequest
	if !h.decode(w, r, &task) {
		return
	}
	if err := validateTask(r.PathValue("guid"), &task, h.limits); err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := h.tasks.Desire(r.Context(), h.requestLogger(r), &task); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (h *Handler) listTasks(w http.ResponseWriter, r *http.Request) {
	tasks := h.tasks.List()
	if tasks == nil {
		tasks = []models.TaskResponse{}
	}
	h.writeJSON(w, r, http.StatusOK, tasks)
}

func (h *Handler) getTask(w http.ResponseWriter, r *http.Request) {
	task, err := h.tasks.Get(r.Context(), r.PathValue("guid"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	h.writeJSON(w, r, http.StatusOK, task)
}

func (h *Handler) cancelTask(w http.ResponseWriter, r *http.Request) {
	if err := h.tasks.Cancel(r.Context(), h.requestLogger(r), r.PathValue("guid")); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) stage(w http.ResponseWriter, r *http.Request) {
	var req models.StagingRequest
	if !h.decode(w, r, &req) {
		return
	}
	if err := upgradeStaging(&req); err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := validateStaging(r.PathValue("guid"), &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := h.staging.Stage(r.Context(), h.requestLogger(r), r.PathValue("guid"), &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (h *Handler) stagingCompleted(w http.ResponseWriter, r *http.Request) {
	var done models.StagingCompletedRequest
	if !h.decode(w, r, &done) {
		return
	}
	if err := h.staging.Complete(r.Context(), h.requestLogger(r), r.PathValue("guid"), &done); err != nil {
		h.writeError(w, r, err)
		return
	}
	h.writeJSON(w, r, http.StatusOK, struct{}{})
}

func (h *Handler) cancelStaging(w http.ResponseWriter, r *http.Request) {
	if err := h.staging.Cancel(r.Context(), h.requestLogger(r), r.PathValue("guid")); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// decode reads a JSON body of at most maxBodySize bytes. Unknown fields are
// accepted: newer CCs send fields older Iris versions do not know.
func (h *Handler) decode(w http.ResponseWriter, r *http.Request, into any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, h.limits.MaxRequestBodyBytes)
	if err := json.NewDecoder(r.Body).Decode(into); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.writeError(w, r, models.Invalidf("request body exceeds %d bytes", h.limits.MaxRequestBodyBytes))
			return false
		}
		h.writeError(w, r, models.Invalidf("malformed JSON body: %v", err))
		return false
	}
	return true
}

func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, models.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, models.ErrUnauthorized):
		status = http.StatusUnauthorized
		w.Header().Set("WWW-Authenticate", "Bearer")
	case models.IsInvalid(err):
		status = http.StatusBadRequest
	case errors.Is(err, context.Canceled), errors.As(err, new(errOverloaded)):
		// The client went away (nobody reads the answer), or too many
		// requests are in flight.
		status = http.StatusServiceUnavailable
	}
	// Shed requests are counted (api_requests_total, code 503), not logged
	// as failures: under a burst that would flood the log.
	if status >= 500 && !errors.As(err, new(errOverloaded)) {
		h.requestLogger(r).Error("request-failed", err)
	} else {
		h.requestLogger(r).Info("request-rejected", lager.Data{"status": status, "reason": err.Error()})
	}
	message := err.Error()
	if errors.Is(err, models.ErrNotFound) {
		message = fmt.Sprintf("%s %s: not found", r.Method, r.URL.Path)
	}
	h.writeJSON(w, r, status, errorBody(r, message))
}

// errorBody shapes an error as the CC client calling r reads it: CC's
// stager and task clients (lib/cloud_controller/opi/stager_client.rb,
// task_client.rb) raise with the body's top-level "message", so anything
// else reaches the user as "Runner error: " with no reason; the LRP update
// reads "error"."message". The instances client reads "error" as a string:
// for a stopped process it calls error.include?("not found"), which on an
// object would look for a key and fail differently (instances_client.rb
// raise_non_404_error, 2021-02 on). The other LRP calls read no error body.
func errorBody(r *http.Request, message string) any {
	path := r.URL.Path
	switch {
	case strings.HasPrefix(path, "/stage/") || path == "/tasks" || strings.HasPrefix(path, "/tasks/"):
		return models.MessageResponse{Message: message}
	case r.Method == http.MethodGet && strings.HasPrefix(path, "/apps/") && strings.HasSuffix(path, "/instances"):
		resp := models.GetInstancesResponse{Error: message, Instances: []*models.Instance{}}
		if guid, version := r.PathValue("guid"), r.PathValue("version"); guid != "" {
			resp.ProcessGUID = guid + "-" + version
		}
		return resp
	}
	return models.ErrorResponse{Error: models.Error{Message: message}}
}

func (h *Handler) writeJSON(w http.ResponseWriter, r *http.Request, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(body); err != nil {
		h.requestLogger(r).Error("writing-response", err)
	}
}

type loggerKey struct{}

func (h *Handler) requestLogger(r *http.Request) lager.Logger {
	if l, ok := r.Context().Value(loggerKey{}).(lager.Logger); ok {
		return l
	}
	return h.logger
}

// statusRecorder remembers the status code for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// logRequests gives each request its own lager session and logs its outcome.
func (h *Handler) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		logger := h.logger.Session("request", lager.Data{"method": r.Method, "path": r.URL.Path})
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), loggerKey{}, logger)))
		logger.Debug("served", lager.Data{"status": rec.status, "duration": time.Since(start).String()})
	})
}
