package spaces

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
)

// Status is every space's state, from both sides' LRPs, the placement and
// the moves under way.
type Status struct {
	Kubernetes, Diego Backend
	Placement         interface {
		Placement
		PlacedSpaces() []string
	}
	Moves interface{ Snapshot() Moves }
}

// Spaces lists each space's state.
func (s Status) Spaces(ctx context.Context, logger lager.Logger) ([]SpaceState, error) {
	kube, err := s.Kubernetes.DesiredLRPRoutingInfos(ctx, logger, models.DesiredLRPFilter{})
	if err != nil {
		return nil, fmt.Errorf("listing LRPs on kubernetes: %w", err)
	}
	diego, err := s.Diego.DesiredLRPRoutingInfos(ctx, logger, models.DesiredLRPFilter{})
	if err != nil {
		return nil, fmt.Errorf("listing LRPs on diego: %w", err)
	}
	return Report(kube, diego, s.Placement, s.Placement.PlacedSpaces(), s.Moves.Snapshot()), nil
}

// SpaceStateJSON is a space's state as the admin endpoint answers it.
type SpaceStateJSON struct {
	Space               string `json:"space_guid"`
	Placement           Side   `json:"placement"`
	State               string `json:"state"`
	KubernetesLRPs      int    `json:"kubernetes_lrps"`
	KubernetesInstances int    `json:"kubernetes_instances"`
	DiegoLRPs           int    `json:"diego_lrps"`
	DiegoInstances      int    `json:"diego_instances"`
	Copying             int    `json:"copying"`
	Switched            int    `json:"switched"`
	Failing             int    `json:"failing"`
}

// AsJSON is s for the admin endpoint.
func (s SpaceState) AsJSON() SpaceStateJSON {
	return SpaceStateJSON{Space: s.SpaceGUID, Placement: s.Placement, State: s.State(),
		KubernetesLRPs: s.KubernetesLRPs, KubernetesInstances: s.KubernetesInstances,
		DiegoLRPs: s.DiegoLRPs, DiegoInstances: s.DiegoInstances,
		Copying: s.Moving.Copying, Switched: s.Moving.Switched, Failing: s.Moving.Failing}
}

// PlacementRequest is the body of PUT /admin/placement.
type PlacementRequest struct {
	// Scope is "space", "org" or "default".
	Scope string `json:"scope"`
	// GUID of the space or org; empty for default.
	GUID string `json:"guid"`
	// Backend is "diego" or "kubernetes"; empty removes the setting.
	Backend string `json:"backend"`
}

// AdminHandler serves the operator's view and switch of placement:
//
//	GET /admin/spaces      every space's placement, state and counts
//	PUT /admin/placement   {"scope","guid","backend"}: set (or, with an
//	                       empty backend, remove) a placement; a space
//	                       whose placement changes migrates live
//
// It is mounted on the ops listener behind mutual TLS only (cmd/iris).
type AdminHandler struct {
	logger    lager.Logger
	status    Status
	clientset kubernetes.Interface
	namespace string
	configMap string
	mux       *http.ServeMux
}

// NewAdminHandler serves status and writes placement ConfigMap
// namespace/configMap.
func NewAdminHandler(logger lager.Logger, status Status, clientset kubernetes.Interface, namespace, configMap string) *AdminHandler {
	h := &AdminHandler{logger: logger.Session("spaces-admin"), status: status, clientset: clientset, namespace: namespace, configMap: configMap, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /admin/spaces", h.list)
	h.mux.HandleFunc("PUT /admin/placement", h.set)
	return h
}

func (h *AdminHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *AdminHandler) list(w http.ResponseWriter, r *http.Request) {
	states, err := h.status.Spaces(r.Context(), h.logger)
	if err != nil {
		h.logger.Error("list-failed", err)
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	out := make([]SpaceStateJSON, 0, len(states))
	for _, s := range states {
		out = append(out, s.AsJSON())
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (h *AdminHandler) set(w http.ResponseWriter, r *http.Request) {
	var req PlacementRequest
	decoder := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(&req); err != nil {
		http.Error(w, "want a JSON body {\"scope\", \"guid\", \"backend\"}: "+err.Error(), http.StatusBadRequest)
		return
	}
	key, err := PlacementKey(req.Scope, req.GUID)
	if err == nil {
		if problems := validation.IsConfigMapKey(key); len(problems) > 0 {
			err = fmt.Errorf("guid %q: %s", req.GUID, strings.Join(problems, "; "))
		}
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var side *Side
	if req.Backend != "" {
		s, err := ParseSide(req.Backend)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		side = &s
	}
	if err := SetPlacement(r.Context(), h.clientset, h.namespace, h.configMap, key, side); err != nil {
		h.logger.Error("set-failed", err, lager.Data{"key": key})
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	h.logger.Info("placement-set", lager.Data{"key": key, "backend": req.Backend})
	w.WriteHeader(http.StatusNoContent)
}

// PlacedSpaces are the spaces the ConfigMap names.
func (p *ConfigMapPlacement) PlacedSpaces() []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var out []string
	for key := range p.sides {
		if space, ok := strings.CutPrefix(key, KeySpacePrefix); ok {
			out = append(out, space)
		}
	}
	sort.Strings(out)
	return out
}
