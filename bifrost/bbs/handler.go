// Package bbs is Iris's BBS front: Diego's BBS API (protobuf over HTTP) as
// current Cloud Controller, tps-watcher, route-emitter and ssh-proxy call
// it, and the lrp_instances event stream. Handlers only decode, validate
// (with the models' own Validate) and encode; the work is done behind the
// DesiredLRPs, ActualLRPs and Domains interfaces, as bbs's handlers leave it
// to its controllers.
package bbs

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"code.cloudfoundry.org/bbs/format"
	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	"github.com/gogo/protobuf/proto"
)

// requestIDHeader carries CC's request id; BBS puts it into its events as
// the trace id.
const requestIDHeader = "X-Vcap-Request-Id"

// protobufContentType is what every BBS answer carries; the Go client
// decodes only answers of this type and maps a 404 of any other type to
// EndpointNotFound.
const protobufContentType = "application/x-protobuf"

// Backends are what the handlers hand their work to.
type Backends struct {
	DesiredLRPs DesiredLRPs
	ActualLRPs  ActualLRPs
	Domains     Domains
	// Tasks serves the task routes; nil leaves them unknown (404).
	Tasks Tasks
}

// EventSubscriber opens event subscriptions; *EventHub is one.
type EventSubscriber interface {
	Subscribe(cellID string) (*Subscription, error)
}

// Handler serves the BBS routes Iris implements.
type Handler struct {
	logger      lager.Logger
	desired     DesiredLRPs
	actual      ActualLRPs
	domains     Domains
	tasks       Tasks
	events      EventSubscriber
	maxBodySize int64
	mux         *http.ServeMux
}

// message is a BBS request: gogo-protobuf generated, validating itself.
type message interface {
	Unmarshal([]byte) error
	Validate() error
}

// NewHandler routes the BBS paths Iris serves (the task routes only with a
// Tasks backend). Anything else gets the
// plain-text 404 the real BBS gives an unknown path, which the Go client
// turns into EndpointNotFound and route-emitter falls back on. Bodies over
// maxBodySize are refused as invalid requests.
func NewHandler(logger lager.Logger, backends Backends, events EventSubscriber, maxBodySize int64) *Handler {
	h := &Handler{
		logger:      logger.Session("bbs"),
		desired:     backends.DesiredLRPs,
		actual:      backends.ActualLRPs,
		domains:     backends.Domains,
		tasks:       backends.Tasks,
		events:      events,
		maxBodySize: maxBodySize,
		mux:         http.NewServeMux(),
	}
	routes := map[string]http.HandlerFunc{
		"/v1/ping":                                h.ping,
		"/v1/domains/upsert":                      h.upsertDomain,
		"/v1/domains/list":                        h.listDomains,
		"/v1/desired_lrp/desire.r2":               h.desireLRP,
		"/v1/desired_lrp/update":                  h.updateDesiredLRP,
		"/v1/desired_lrp/remove":                  h.removeDesiredLRP,
		"/v1/desired_lrps/get_by_process_guid.r2": h.desiredLRPByProcessGuid(format.V2),
		"/v1/desired_lrps/get_by_process_guid.r3": h.desiredLRPByProcessGuid(format.V3),
		"/v1/desired_lrps/list.r3":                h.desiredLRPs(format.V3),
		"/v1/desired_lrp_scheduling_infos/list":   h.schedulingInfos,
		"/v1/desired_lrp_routing_infos/list":      h.routingInfos,
		"/v1/actual_lrps/list":                    h.actualLRPs,
		"/v1/actual_lrps/list_by_process_guids":   h.actualLRPsByProcessGuids,
		"/v1/actual_lrps/retire":                  h.retireActualLRP,
		"/v1/events/lrp_instances.r1":             h.lrpInstanceEvents,
	}
	if h.tasks != nil {
		for path, serve := range h.taskRoutes() {
			routes[path] = serve
		}
	}
	for path, serve := range routes {
		h.mux.HandleFunc("POST "+path, serve)
	}
	return h
}

// ServeHTTP logs each request (never its body: desired LRPs carry image
// credentials) and routes it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.logger.Debug("serving", lager.Data{"method": r.Method, "path": r.URL.Path, "remote_addr": r.RemoteAddr, "request_id": r.Header.Get(requestIDHeader)})
	r = r.WithContext(withRequestID(r.Context(), r.Header.Get(requestIDHeader)))
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) ping(w http.ResponseWriter, r *http.Request) {
	h.write(h.session(r, "ping"), w, &models.PingResponse{Available: true})
}

func (h *Handler) listDomains(w http.ResponseWriter, r *http.Request) {
	logger := h.session(r, "domains")
	response := &models.DomainsResponse{}
	var err error
	response.Domains, err = h.domains.FreshDomains(r.Context(), logger)
	response.Error = responseError(logger, err)
	h.write(logger, w, response)
}

func (h *Handler) upsertDomain(w http.ResponseWriter, r *http.Request) {
	logger := h.session(r, "upsert-domain")
	request := &models.UpsertDomainRequest{}
	response := &models.UpsertDomainResponse{}
	err := h.decode(logger, r, request)
	if err == nil {
		err = h.domains.UpsertDomain(r.Context(), logger, request.Domain, request.Ttl)
	}
	response.Error = responseError(logger, err)
	h.write(logger, w, response)
}

func (h *Handler) desireLRP(w http.ResponseWriter, r *http.Request) {
	logger := h.session(r, "desire-lrp")
	request := &models.DesireLRPRequest{}
	response := &models.DesiredLRPLifecycleResponse{}
	err := h.decode(logger, r, request)
	if err == nil {
		logger = logger.WithData(lager.Data{"process_guid": request.DesiredLrp.ProcessGuid})
		err = h.desired.DesireLRP(r.Context(), logger, request.DesiredLrp)
	}
	response.Error = responseError(logger, err)
	h.write(logger, w, response)
}

func (h *Handler) updateDesiredLRP(w http.ResponseWriter, r *http.Request) {
	logger := h.session(r, "update-desired-lrp")
	request := &models.UpdateDesiredLRPRequest{}
	response := &models.DesiredLRPLifecycleResponse{}
	err := h.decode(logger, r, request)
	// The models accept a request without an update. BBS looks the LRP up
	// first (an unknown guid is ResourceNotFound), then fails on a known
	// one (a nil dereference); refuse that as invalid instead.
	if err == nil && request.Update == nil {
		if _, err = h.desired.DesiredLRPByProcessGuid(r.Context(), logger, request.ProcessGuid); err == nil {
			err = invalidRequest(models.ValidationError{}.Append(models.ErrInvalidField{Field: "update"}))
		}
	}
	if err == nil {
		logger = logger.WithData(lager.Data{"process_guid": request.ProcessGuid})
		err = h.desired.UpdateDesiredLRP(r.Context(), logger, request.ProcessGuid, request.Update)
	}
	response.Error = responseError(logger, err)
	h.write(logger, w, response)
}

func (h *Handler) removeDesiredLRP(w http.ResponseWriter, r *http.Request) {
	logger := h.session(r, "remove-desired-lrp")
	request := &models.RemoveDesiredLRPRequest{}
	response := &models.DesiredLRPLifecycleResponse{}
	err := h.decode(logger, r, request)
	if err == nil {
		logger = logger.WithData(lager.Data{"process_guid": request.ProcessGuid})
		err = h.desired.RemoveDesiredLRP(r.Context(), logger, request.ProcessGuid)
	}
	response.Error = responseError(logger, err)
	h.write(logger, w, response)
}

// desiredLRPByProcessGuid serves the LRP in the route's version: CC reads
// .r2, where BBS turns image layers into cached dependencies and download
// actions; ssh-proxy reads .r3, the current form.
func (h *Handler) desiredLRPByProcessGuid(version format.Version) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		logger := h.session(r, "desired-lrp-by-process-guid").WithData(lager.Data{"version": version})
		request := &models.DesiredLRPByProcessGuidRequest{}
		response := &models.DesiredLRPResponse{}
		err := h.decode(logger, r, request)
		if err == nil {
			var lrp *models.DesiredLRP
			lrp, err = h.desired.DesiredLRPByProcessGuid(r.Context(), logger, request.ProcessGuid)
			if lrp != nil && err == nil {
				response.DesiredLrp = lrp.VersionDownTo(version).PopulateMetricsGuid()
			}
		}
		response.Error = responseError(logger, err)
		h.write(logger, w, response)
	}
}

// desiredLRPs serves list.r3 as BBS does: each LRP in the route's version,
// metrics guid and source_id tag filled from each other, and no empty
// cached-dependency list.
func (h *Handler) desiredLRPs(version format.Version) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		logger := h.session(r, "desired-lrps").WithData(lager.Data{"version": version})
		request := &models.DesiredLRPsRequest{}
		response := &models.DesiredLRPsResponse{}
		err := h.decode(logger, r, request)
		if streamer, ok := h.desired.(StreamedDesiredLRPs); ok && err == nil {
			h.streamDesiredLRPs(logger, w, r, streamer, desiredFilter(request), version)
			return
		}
		if err == nil {
			var lrps []*models.DesiredLRP
			lrps, err = h.desired.DesiredLRPs(r.Context(), logger, desiredFilter(request))
			if err == nil {
				response.DesiredLrps = make([]*models.DesiredLRP, len(lrps))
				for i, lrp := range lrps {
					response.DesiredLrps[i] = listedLRP(lrp, version)
				}
			}
		}
		response.Error = responseError(logger, err)
		h.write(logger, w, response)
	}
}

// listedLRP is lrp as list.r3 answers it.
func listedLRP(lrp *models.DesiredLRP, version format.Version) *models.DesiredLRP {
	versioned := lrp.VersionDownTo(version).PopulateMetricsGuid()
	if len(versioned.CachedDependencies) == 0 {
		versioned.CachedDependencies = nil
	}
	return versioned
}

// streamDesiredLRPs answers the whole-LRP list encoding each LRP as the
// backend hands it over, in chunks. A failure before anything went out is
// answered as BBS does (the error alone); one after part of the list went
// out ends the list with the error field, which the client reads as the
// call's error (a protobuf message's fields may come in any order).
func (h *Handler) streamDesiredLRPs(logger lager.Logger, w http.ResponseWriter, r *http.Request, streamer StreamedDesiredLRPs, filter models.DesiredLRPFilter, version format.Version) {
	const (
		errorField = 1 // DesiredLRPsResponse.error
		lrpsField  = 2 // DesiredLRPsResponse.desired_lrps
	)
	out := newListWriter(w, -1)
	err := streamer.EachDesiredLRP(r.Context(), logger, filter, func(lrp *models.DesiredLRP) error {
		return out.message(lrpsField, listedLRP(lrp, version))
	})
	if out.failed != nil {
		logger.Error("failed-to-write-response", out.failed)
		return
	}
	if err != nil && !out.started {
		h.write(logger, w, &models.DesiredLRPsResponse{Error: responseError(logger, err)})
		return
	}
	if err != nil {
		_ = out.message(errorField, responseError(logger, err))
	}
	if err := out.finish(); err != nil {
		logger.Error("failed-to-write-response", err)
	}
}

func (h *Handler) schedulingInfos(w http.ResponseWriter, r *http.Request) {
	logger := h.session(r, "desired-lrp-scheduling-infos")
	request := &models.DesiredLRPsRequest{}
	response := &models.DesiredLRPSchedulingInfosResponse{}
	err := h.decode(logger, r, request)
	if encoder, ok := h.desired.(EncodedSchedulingInfos); ok && err == nil {
		var infos [][]byte
		if infos, err = encoder.EncodedSchedulingInfos(r.Context(), logger, desiredFilter(request)); err == nil {
			const infosField = 2 // DesiredLRPSchedulingInfosResponse.desired_lrp_scheduling_infos
			size := 0
			for _, info := range infos {
				size += encodedFieldSize(len(info))
			}
			out := newListWriter(w, size)
			for _, info := range infos {
				if out.encoded(infosField, info) != nil {
					break
				}
			}
			if err := out.finish(); err != nil {
				logger.Error("failed-to-write-response", err)
			}
			return
		}
	} else if err == nil {
		response.DesiredLrpSchedulingInfos, err = h.desired.DesiredLRPSchedulingInfos(r.Context(), logger, desiredFilter(request))
	}
	response.Error = responseError(logger, err)
	h.write(logger, w, response)
}

func (h *Handler) routingInfos(w http.ResponseWriter, r *http.Request) {
	logger := h.session(r, "desired-lrp-routing-infos")
	request := &models.DesiredLRPsRequest{}
	response := &models.DesiredLRPsResponse{}
	err := h.decode(logger, r, request)
	if err == nil {
		// BBS filters routing infos by domain and process guids only.
		filter := models.DesiredLRPFilter{Domain: request.Domain, ProcessGuids: request.ProcessGuids}
		response.DesiredLrps, err = h.desired.DesiredLRPRoutingInfos(r.Context(), logger, filter)
	}
	response.Error = responseError(logger, err)
	h.write(logger, w, response)
}

func (h *Handler) actualLRPs(w http.ResponseWriter, r *http.Request) {
	logger := h.session(r, "actual-lrps")
	request := &models.ActualLRPsRequest{}
	response := &models.ActualLRPsResponse{}
	err := h.decode(logger, r, request)
	if err == nil {
		filter := models.ActualLRPFilter{Domain: request.Domain, CellID: request.CellId, ProcessGuid: request.ProcessGuid}
		// The index is optional (a oneof): absent means every index, which
		// differs from index 0.
		if request.IndexExists() {
			index := request.GetIndex()
			filter.Index = &index
		}
		response.ActualLrps, err = h.actual.ActualLRPs(r.Context(), logger, filter)
	}
	response.Error = responseError(logger, err)
	h.write(logger, w, response)
}

func (h *Handler) actualLRPsByProcessGuids(w http.ResponseWriter, r *http.Request) {
	logger := h.session(r, "actual-lrps-by-process-guids")
	request := &models.ActualLRPsByProcessGuidsRequest{}
	response := &models.ActualLRPsByProcessGuidsResponse{}
	err := h.decode(logger, r, request)
	if err == nil {
		filter := models.ActualLRPsByProcessGuidsFilter{ProcessGuids: request.ProcessGuids}
		response.ActualLrps, err = h.actual.ActualLRPsByProcessGuids(r.Context(), logger, filter)
	}
	response.Error = responseError(logger, err)
	h.write(logger, w, response)
}

func (h *Handler) retireActualLRP(w http.ResponseWriter, r *http.Request) {
	logger := h.session(r, "retire-actual-lrp")
	request := &models.RetireActualLRPRequest{}
	response := &models.ActualLRPLifecycleResponse{}
	err := h.decode(logger, r, request)
	if err == nil {
		logger = logger.WithData(lager.Data{"process_guid": request.ActualLrpKey.ProcessGuid, "index": request.ActualLrpKey.Index})
		err = h.actual.RetireActualLRP(r.Context(), logger, request.ActualLrpKey)
	}
	response.Error = responseError(logger, err)
	h.write(logger, w, response)
}

func desiredFilter(request *models.DesiredLRPsRequest) models.DesiredLRPFilter {
	return models.DesiredLRPFilter{Domain: request.Domain, ProcessGuids: request.ProcessGuids, AppGuids: request.AppGuids}
}

func (h *Handler) session(r *http.Request, name string) lager.Logger {
	return h.logger.Session(name, lager.Data{"request_id": RequestID(r.Context())})
}

// decode reads and validates a request as BBS does: a body that is not the
// route's protobuf message (JSON, say) is "the request received is
// invalid"; one that fails the models' validation is InvalidRequest with
// the models' own message ("Invalid field: process_guid").
func (h *Handler) decode(logger lager.Logger, r *http.Request, request message) error {
	data, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, h.maxBodySize))
	if err != nil {
		if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
			logger.Error("request-body-too-large", err)
			return models.NewError(models.Error_InvalidRequest, fmt.Sprintf("the request body exceeds %d bytes", h.maxBodySize))
		}
		logger.Error("failed-to-read-body", err)
		return models.ErrUnknownError
	}
	if err := request.Unmarshal(data); err != nil {
		logger.Error("failed-to-parse-request-body", err)
		return models.ErrBadRequest
	}
	if err := request.Validate(); err != nil {
		logger.Error("invalid-request", err)
		return invalidRequest(err)
	}
	return nil
}

func invalidRequest(err error) *models.Error {
	return models.NewError(models.Error_InvalidRequest, err.Error())
}

// responseError is err as BBS puts it into a response: its own *models.Error
// unchanged, anything else an UnknownError carrying the text.
func responseError(logger lager.Logger, err error) *models.Error {
	if err == nil {
		return nil
	}
	// errors.As rather than models.ConvertError: a backend that wrapped a
	// BBS error with context still gets BBS's type and exact message to the
	// client (CC matches them textually).
	var modelErr *models.Error
	if !errors.As(err, &modelErr) || modelErr == nil {
		modelErr = models.NewError(models.Error_UnknownError, err.Error())
	}
	if modelErr.Type == models.Error_UnknownError {
		logger.Error("failed", err)
	} else {
		logger.Info("refused", lager.Data{"error_type": modelErr.Type.String(), "message": modelErr.Message})
	}
	return modelErr
}

// write answers 200 with the protobuf response, errors included: BBS
// clients (CC) accept only 200 and read the error from the body.
func (h *Handler) write(logger lager.Logger, w http.ResponseWriter, response proto.Message) {
	body, err := proto.Marshal(response)
	if err != nil {
		// Only a model that cannot be encoded gets here: a server fault.
		logger.Error("failed-to-encode-response", err)
		http.Error(w, "failed to encode response", http.StatusInternalServerError)
		return
	}
	writeBody(w, body)
}

// writeBody answers 200 with an encoded protobuf response.
func writeBody(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", protobufContentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}
