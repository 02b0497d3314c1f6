// Package ops serves Iris's own operational endpoints on a separate
// listener: /healthz (liveness), /readyz (readiness) and /metrics
// (Prometheus), so probes and scrapes never need CC's client certificate;
// and, over mutual TLS only, admin routes (per-space placement).
package ops

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/tedsuo/ifrit"

	"github.com/iris-cf/iris/certreload"
)

// Server is an ifrit runner serving the endpoints. It is ready, for
// ifrit, as soon as it listens: liveness must answer while the caches sync.
// /readyz answers 200 only between MarkReady and shutdown.
type Server struct {
	logger   lager.Logger
	address  string
	registry *prometheus.Registry
	ready    atomic.Bool

	tlsConfig *tls.Config
	// admin routes, served only to verified client certificates.
	admin       map[string]http.Handler
	adminServed bool
}

// NewServer returns a server for address with a registry holding the Go
// runtime and process collectors.
func NewServer(logger lager.Logger, address string) *Server {
	registry := prometheus.NewRegistry()
	// go_gc_heap_live_bytes (the heap the last GC kept) beside the usual
	// memstats: it is what a cached object costs, without the garbage.
	registry.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
		collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)},
	)), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Server{logger: logger.Session("ops"), address: address, registry: registry}
}

// ServeTLS makes the listener serve HTTPS with certFile and keyFile (both
// reloaded when they change). With clientCAFile, admin routes are served
// to clients presenting a certificate it signed.
//
// Why not require client certificates on the whole listener: the
// kubelet's probes and most Prometheus setups present none, and liveness
// must not depend on a CA. So the handshake asks for a certificate without
// requiring it (a certificate given must verify), and each admin request
// is refused unless its connection carried a verified one. Without
// clientCAFile no admin route is served at all: changing placement moves
// apps, which an unauthenticated caller must never be able to do.
func (s *Server) ServeTLS(certFile, keyFile, clientCAFile string) error {
	logger := s.logger.Session("tls")
	reloaded := func(what string) func(error) {
		return func(err error) {
			if err != nil {
				logger.Error("reload-failed", err, lager.Data{"what": what})
				return
			}
			logger.Info("reloaded", lager.Data{"what": what})
		}
	}
	pair, err := certreload.LoadKeyPair(certFile, keyFile, reloaded("server certificate"))
	if err != nil {
		return fmt.Errorf("ops: %w", err)
	}
	if clientCAFile == "" {
		s.tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return pair.Current(), nil }}
		return nil
	}
	clientCAs, err := certreload.LoadCAPool(clientCAFile, reloaded("client CA"))
	if err != nil {
		return fmt.Errorf("ops: %w", err)
	}
	config, err := certreload.ServerConfig(pair, clientCAs)
	if err != nil {
		return fmt.Errorf("ops: building TLS config: %w", err)
	}
	// The per-handshake configs are clones of this one.
	config.ClientAuth = tls.VerifyClientCertIfGiven
	s.tlsConfig = config
	s.adminServed = true
	return nil
}

// HandleAdmin serves handler at pattern (a ServeMux pattern under
// /admin/) to clients with a verified certificate, when ServeTLS was given
// a client CA; otherwise not at all. Call it before Run.
func (s *Server) HandleAdmin(pattern string, handler http.Handler) {
	if s.admin == nil {
		s.admin = map[string]http.Handler{}
	}
	s.admin[pattern] = handler
}

// requireClientCertificate refuses requests whose connection presented no
// verified client certificate.
func requireClientCertificate(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			http.Error(w, "admin routes need a client certificate signed by ops.client_ca_file", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Registry is where components' metrics are registered.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// CounterFunc registers a counter read from fn at scrape time.
func (s *Server) CounterFunc(name, help string, fn func() float64) {
	s.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "iris", Name: name, Help: help}, fn))
}

// GaugeFunc registers a gauge read from fn at scrape time.
func (s *Server) GaugeFunc(name, help string, labels prometheus.Labels, fn func() float64) {
	s.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "iris", Name: name, Help: help, ConstLabels: labels}, fn))
}

// InstrumentHandler counts and times the requests of h (Cloud Controller's
// API) by method and status code.
func (s *Server) InstrumentHandler(listener string, h http.Handler) http.Handler {
	labels := prometheus.Labels{"listener": listener}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "iris", Name: "api_requests_total", Help: "Requests to the API, by method and status code.", ConstLabels: labels,
	}, []string{"method", "code"})
	durations := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "iris", Name: "api_request_duration_seconds", Help: "Latency of API requests, by method.", ConstLabels: labels,
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"method"})
	s.registry.MustRegister(requests, durations)
	return promhttp.InstrumentHandlerCounter(requests, promhttp.InstrumentHandlerDuration(durations, h))
}

// ReadyMarker is a runner that marks the server ready while it runs: put it
// last in an ordered group, so readiness means every member started.
func (s *Server) ReadyMarker() ifrit.Runner {
	return ifrit.RunFunc(func(signals <-chan os.Signal, ready chan<- struct{}) error {
		s.ready.Store(true)
		close(ready)
		<-signals
		s.ready.Store(false)
		return nil
	})
}

// Run serves until signalled.
func (s *Server) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	for pattern, handler := range s.admin {
		if !s.adminServed {
			s.logger.Info("admin-route-off", lager.Data{"pattern": pattern, "reason": "ops.client_ca_file not set"})
			continue
		}
		mux.Handle(pattern, requireClientCertificate(handler))
	}
	listener, err := net.Listen("tcp", s.address)
	if err != nil {
		return fmt.Errorf("ops listener %s: %w", s.address, err)
	}
	if s.tlsConfig != nil {
		listener = tls.NewListener(listener, s.tlsConfig)
	}
	// Probes and scrapes send no body: a request not read within 10 s is
	// not one of them.
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	if s.tlsConfig != nil {
		// The admin list reads both sides (Diego over the network).
		server.WriteTimeout = time.Minute
	}
	errs := make(chan error, 1)
	go func() { errs <- server.Serve(listener) }()
	s.logger.Info("listening", lager.Data{"address": listener.Addr().String()})
	close(ready)
	select {
	case <-signals:
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return server.Shutdown(ctx)
	case err := <-errs:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("ops server: %w", err)
	}
}
