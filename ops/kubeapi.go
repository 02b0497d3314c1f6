package ops

import (
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// CountKubeAPIRequests wraps a Kubernetes client's transport (a
// rest.Config's WrapTransport) to count the requests Iris makes to the API
// server, by verb and resource: iris_kube_api_requests_total. Every read
// is meant to come from the informer caches, so at steady state only
// watches (re-opened every few minutes) and writes CC asked for should
// appear; anything else is load Iris adds to the API server.
func (s *Server) CountKubeAPIRequests() func(http.RoundTripper) http.RoundTripper {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "iris", Name: "kube_api_requests_total",
		Help: "Requests Iris made to the Kubernetes API server, by verb (list, watch, get, create, apply, ...) and resource.",
	}, []string{"verb", "resource"})
	s.registry.MustRegister(requests)
	return func(next http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			verb, resource := kubeRequest(r)
			requests.WithLabelValues(verb, resource).Inc()
			return next.RoundTrip(r)
		})
	}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// kubeRequest names a request as the API server's metrics do: the verb
// from the method (GET of a collection is list, with watch=true watch;
// PATCH with the apply content type is apply) and the resource (with its
// subresource) from the path.
func kubeRequest(r *http.Request) (verb, resource string) {
	// /api/v1/namespaces/NS/RESOURCE[/NAME[/SUB]] or /apis/GROUP/VERSION/...;
	// cluster-scoped resources lack the namespaces/NS pair.
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return strings.ToLower(r.Method), "other"
	}
	if len(parts) >= 3 && parts[0] == "namespaces" {
		parts = parts[2:]
	}
	named := len(parts) >= 2
	if len(parts) > 0 {
		resource = parts[0]
	}
	if len(parts) >= 3 {
		resource += "/" + parts[2]
	}
	switch r.Method {
	case http.MethodGet:
		switch {
		case r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1":
			verb = "watch"
		case named:
			verb = "get"
		default:
			verb = "list"
		}
	case http.MethodPatch:
		verb = "patch"
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/apply-patch") {
			verb = "apply"
		}
	case http.MethodPost:
		verb = "create"
	case http.MethodPut:
		verb = "update"
	case http.MethodDelete:
		verb = "delete"
		if !named {
			verb = "deletecollection"
		}
	default:
		verb = strings.ToLower(r.Method)
	}
	return verb, resource
}
