// Package ops serves Iris's own operational endpoints on a separate
// listener: /healthz (liveness), /readyz (readiness) and /metrics
// (Prometheus), so probes and scrapes never need CC's client certificate.
package ops

import (
	"context"
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
)

// Server is an ifrit runner serving the endpoints. It is ready, for
// ifrit, as soon as it listens: liveness must answer while the caches sync.
// /readyz answers 200 only between MarkReady and shutdown.
type Server struct {
	logger   lager.Logger
	address  string
	registry *prometheus.Registry
	ready    atomic.Bool
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
	listener, err := net.Listen("tcp", s.address)
	if err != nil {
		return fmt.Errorf("ops listener %s: %w", s.address, err)
	}
	// Probes and scrapes send no body: a request not read within 10 s is
	// not one of them.
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
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
