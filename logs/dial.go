package logs

import (
	"fmt"

	"code.cloudfoundry.org/go-loggregator/v9/rpc/loggregator_v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/iris-cf/iris/certreload"
)

// IngressConfig is where Loggregator's v2 ingress listens and the
// certificates for mutual TLS with it.
type IngressConfig struct {
	Address    string
	CACertFile string
	CertFile   string
	KeyFile    string
	// ServerName expected in the ingress certificate ("metron" on CF).
	ServerName string
}

// Dial connects lazily to the ingress (gRPC reconnects by itself); the
// returned connection must be closed after the sender stopped.
func Dial(cfg IngressConfig) (loggregator_v2.IngressClient, *grpc.ClientConn, error) {
	// Certificate and CA are re-read when their files change (rotation).
	pair, err := certreload.LoadKeyPair(cfg.CertFile, cfg.KeyFile, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("loggregator client certificate: %w", err)
	}
	roots, err := certreload.LoadCAPool(cfg.CACertFile, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("loggregator CA: %w", err)
	}
	tlsConfig, err := certreload.ClientConfig(pair, roots, cfg.ServerName)
	if err != nil {
		return nil, nil, fmt.Errorf("loggregator TLS config: %w", err)
	}
	conn, err := grpc.NewClient(cfg.Address, grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)))
	if err != nil {
		return nil, nil, fmt.Errorf("loggregator ingress %s: %w", cfg.Address, err)
	}
	return loggregator_v2.NewIngressClient(conn), conn, nil
}
