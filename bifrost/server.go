package bifrost

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/iris-cf/iris/certreload"
)

// Server is an ifrit runner serving one listener. On a signal it stops
// accepting, lets in-flight requests finish within the shutdown timeout, and
// returns nil, so SIGTERM ends Iris with exit code 0.
type Server struct {
	logger    lager.Logger
	address   string
	handler   http.Handler
	tlsConfig *tls.Config
	timeouts  Timeouts
	// anonymous serves TLS clients without a client certificate, if set.
	anonymous http.Handler
	// bound is the address listened on, known once Run is ready.
	bound atomic.Value
}

// Timeouts of a server's connections.
type Timeouts struct {
	// Read bounds reading one whole request, headers and body: a client
	// that sends its body slowly is cut off rather than holding a
	// connection (and a slot of the in-flight bound) for ever.
	Read time.Duration
	// Idle closes a keep-alive connection without a request this long.
	Idle time.Duration
	// Shutdown bounds how long a signal waits for in-flight requests.
	Shutdown time.Duration
}

// headerTimeout bounds reading the request line and headers, which are
// small; the read timeout, if shorter, wins.
const headerTimeout = 10 * time.Second

// NewServer serves handler on address in plain HTTP.
func NewServer(logger lager.Logger, address string, handler http.Handler, timeouts Timeouts) *Server {
	return &Server{logger: logger.Session("server", lager.Data{"address": address}), address: address, handler: handler, timeouts: timeouts}
}

// Address is the address the server listens on (with the port chosen when
// it was asked for port 0), once Run is ready; empty before.
func (s *Server) Address() string {
	addr, _ := s.bound.Load().(string)
	return addr
}

// NewMutualTLSServer serves handler on address over TLS 1.2+ and accepts
// only clients whose certificate is signed by the CA in clientCAFile. The
// files are re-read when they change (a rotated Secret), without a restart.
func NewMutualTLSServer(logger lager.Logger, address string, handler http.Handler, timeouts Timeouts, certFile, keyFile, clientCAFile string) (*Server, error) {
	tlsLogger := logger.Session("tls-server", lager.Data{"address": address})
	reloaded := func(what string) func(error) {
		return func(err error) {
			if err != nil {
				tlsLogger.Error("reload-failed", err, lager.Data{"what": what})
				return
			}
			tlsLogger.Info("reloaded", lager.Data{"what": what})
		}
	}
	pair, err := certreload.LoadKeyPair(certFile, keyFile, reloaded("server certificate"))
	if err != nil {
		return nil, err
	}
	clientCAs, err := certreload.LoadCAPool(clientCAFile, reloaded("client CA"))
	if err != nil {
		return nil, err
	}
	tlsConfig, err := certreload.ServerConfig(pair, clientCAs)
	if err != nil {
		return nil, fmt.Errorf("building server TLS config: %w", err)
	}
	s := NewServer(logger, address, handler, timeouts)
	s.logger = tlsLogger
	s.tlsConfig = tlsConfig
	return s, nil
}

// AcceptWithoutClientCertificate lets TLS clients that present no client
// certificate complete the handshake and serves their requests with
// anonymous, never with the server's handler; a client that presents a
// certificate must still present a valid one. Call it before Run.
func (s *Server) AcceptWithoutClientCertificate(anonymous http.Handler) {
	s.anonymous = anonymous
	if s.tlsConfig != nil {
		// The per-handshake configs are clones of this one.
		s.tlsConfig.ClientAuth = tls.VerifyClientCertIfGiven
	}
}

// handlerFor picks the handler of a request: the anonymous one for a TLS
// request without a verified client certificate.
func (s *Server) handlerFor() http.Handler {
	if s.anonymous == nil || s.tlsConfig == nil {
		return s.handler
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
			s.handler.ServeHTTP(w, r)
			return
		}
		s.anonymous.ServeHTTP(w, r)
	})
}

// Run listens first, so a port clash fails start-up rather than the first request.
func (s *Server) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	listener, err := net.Listen("tcp", s.address)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.address, err)
	}
	s.bound.Store(listener.Addr().String())
	if s.tlsConfig != nil {
		listener = tls.NewListener(listener, s.tlsConfig)
	}
	readHeader := headerTimeout
	if s.timeouts.Read > 0 {
		readHeader = min(readHeader, s.timeouts.Read)
	}
	server := &http.Server{
		Handler:           s.handlerFor(),
		ReadHeaderTimeout: readHeader,
		ReadTimeout:       s.timeouts.Read,
		IdleTimeout:       s.timeouts.Idle,
	}
	served := make(chan error, 1)
	go func() { served <- server.Serve(listener) }()
	s.logger.Info("listening")
	close(ready)

	select {
	case err := <-served:
		return fmt.Errorf("serving on %s: %w", s.address, err)
	case sig := <-signals:
		s.logger.Info("draining", lager.Data{"signal": sig.String()})
		ctx, cancel := context.WithTimeout(context.Background(), s.timeouts.Shutdown)
		defer cancel()
		if err := server.Shutdown(ctx); err != nil {
			s.logger.Error("drain-incomplete", err)
			_ = server.Close()
		}
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		s.logger.Info("stopped")
		return nil
	}
}
