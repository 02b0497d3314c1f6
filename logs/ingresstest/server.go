// Package ingresstest is a real Loggregator v2 ingress gRPC server for tests
// and benchmarks: it speaks the service from go-loggregator's protobuf
// definitions over mutual TLS and records what it receives.
package ingresstest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"code.cloudfoundry.org/go-loggregator/v9/rpc/loggregator_v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Server records envelopes. Stop it when done.
type Server struct {
	loggregator_v2.UnimplementedIngressServer

	grpc     *grpc.Server
	listener net.Listener

	mu        sync.Mutex
	envelopes []*loggregator_v2.Envelope
	keep      bool
	count     atomic.Int64
	logs      atomic.Int64
	paused    chan struct{} // closed while receiving is allowed
}

// Options for Start.
type Options struct {
	// Address to listen on; "127.0.0.1:0" when empty.
	Address string
	// Cert is the server certificate; ClientCAs verifies client certificates,
	// which are required.
	Cert      tls.Certificate
	ClientCAs *x509.CertPool
	// CountOnly keeps no envelopes (benchmarks), only the count.
	CountOnly bool
}

// Start listens and serves in the background.
func Start(opts Options) (*Server, error) {
	addr := opts.Address
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	creds := credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{opts.Cert},
		ClientCAs:    opts.ClientCAs,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	})
	s := &Server{grpc: grpc.NewServer(grpc.Creds(creds)), listener: lis, keep: !opts.CountOnly, paused: make(chan struct{})}
	close(s.paused)
	loggregator_v2.RegisterIngressServer(s.grpc, s)
	go func() { _ = s.grpc.Serve(lis) }()
	return s, nil
}

// Addr is the listening address.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// Stop closes all streams and the listener.
func (s *Server) Stop() { s.Resume(); s.grpc.Stop() }

// Pause stops reading from streams (as a slow or stuck Loggregator would)
// until Resume; gRPC flow control then pushes back on senders.
func (s *Server) Pause() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.paused:
		s.paused = make(chan struct{})
	default:
	}
}

// Resume reading after Pause.
func (s *Server) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.paused:
	default:
		close(s.paused)
	}
}

func (s *Server) gate() {
	s.mu.Lock()
	ch := s.paused
	s.mu.Unlock()
	<-ch
}

// Envelopes returns a copy of everything received so far, in arrival order.
func (s *Server) Envelopes() []*loggregator_v2.Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*loggregator_v2.Envelope(nil), s.envelopes...)
}

// Count is how many envelopes arrived.
func (s *Server) Count() int64 { return s.count.Load() }

// LogCount is how many of them were log lines (the rest being metrics),
// to tell what a benchmark lost of each without keeping envelopes.
func (s *Server) LogCount() int64 { return s.logs.Load() }

func (s *Server) record(envelopes ...*loggregator_v2.Envelope) {
	s.count.Add(int64(len(envelopes)))
	var logs int64
	for _, e := range envelopes {
		if e.GetLog() != nil {
			logs++
		}
	}
	s.logs.Add(logs)
	if !s.keep {
		return
	}
	s.mu.Lock()
	s.envelopes = append(s.envelopes, envelopes...)
	s.mu.Unlock()
}

// BatchSender is the stream go-loggregator clients use.
func (s *Server) BatchSender(stream loggregator_v2.Ingress_BatchSenderServer) error {
	for {
		s.gate()
		batch, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&loggregator_v2.BatchSenderResponse{})
		}
		if err != nil {
			return err
		}
		s.record(batch.GetBatch()...)
	}
}

// Sender is the one-envelope-per-message stream.
func (s *Server) Sender(stream loggregator_v2.Ingress_SenderServer) error {
	for {
		s.gate()
		e, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&loggregator_v2.IngressResponse{})
		}
		if err != nil {
			return err
		}
		s.record(e)
	}
}

// Send is the unary batch call.
func (s *Server) Send(_ context.Context, batch *loggregator_v2.EnvelopeBatch) (*loggregator_v2.SendResponse, error) {
	s.gate()
	s.record(batch.GetBatch()...)
	return &loggregator_v2.SendResponse{}, nil
}
