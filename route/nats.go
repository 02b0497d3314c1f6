package route

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/nats-io/nats.go"

	"github.com/iris-cf/iris/certreload"
)

// NATSOptions say how to reach the NATS cluster gorouter listens on.
type NATSOptions struct {
	Servers  []string
	Username string
	Password string
	// CACertFile enables TLS; CertFile and KeyFile add a client certificate.
	CACertFile string
	CertFile   string
	KeyFile    string
}

// NATSBus is the emitter's Bus over a nats.go connection.
type NATSBus struct {
	conn *nats.Conn

	mu          sync.Mutex
	onReconnect func()
}

// ConnectNATS connects, retrying in the background if no server answers yet
// and reconnecting forever: the emitter must outlive NATS restarts.
func ConnectNATS(logger lager.Logger, o NATSOptions) (*NATSBus, error) {
	logger = logger.Session("nats")
	bus := &NATSBus{}
	reconnected := func(c *nats.Conn) {
		logger.Info("connected", lager.Data{"server": c.ConnectedUrlRedacted()})
		bus.mu.Lock()
		fn := bus.onReconnect
		bus.mu.Unlock()
		if fn != nil {
			fn()
		}
	}
	opts := []nats.Option{
		nats.Name("iris-route-emitter"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectHandler(reconnected),
		nats.ConnectHandler(reconnected),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			logger.Info("disconnected", lager.Data{"reason": fmt.Sprint(err)})
		}),
	}
	if o.Username != "" {
		opts = append(opts, nats.UserInfo(o.Username, o.Password))
	}
	// nats.go asks for certificate and CAs at every (re)connect; they come
	// from files re-read when they change, so a rotation needs no restart.
	var certCB nats.TLSCertHandler
	var rootsCB nats.RootCAsHandler
	if o.CertFile != "" {
		pair, err := certreload.LoadKeyPair(o.CertFile, o.KeyFile, nil)
		if err != nil {
			return nil, fmt.Errorf("nats client certificate: %w", err)
		}
		certCB = func() (tls.Certificate, error) { return *pair.Current(), nil }
	}
	if o.CACertFile != "" {
		roots, err := certreload.LoadCAPool(o.CACertFile, nil)
		if err != nil {
			return nil, fmt.Errorf("nats CA: %w", err)
		}
		rootsCB = func() (*x509.CertPool, error) { return roots.Current(), nil }
	}
	if certCB != nil || rootsCB != nil {
		opts = append(opts, nats.ClientTLSConfig(certCB, rootsCB))
	}
	servers := nats.DefaultURL
	if len(o.Servers) > 0 {
		servers = strings.Join(o.Servers, ",")
	}
	conn, err := nats.Connect(servers, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to nats %s: %w", servers, err)
	}
	bus.conn = conn
	return bus, nil
}

// Publish sends data on subject.
func (b *NATSBus) Publish(subject string, data []byte) error {
	return b.conn.Publish(subject, data)
}

// Subscribe hands each message on subject to handler until unsubscribe.
func (b *NATSBus) Subscribe(subject string, handler func([]byte)) (func(), error) {
	sub, err := b.conn.Subscribe(subject, func(m *nats.Msg) { handler(m.Data) })
	if err != nil {
		return nil, err
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// Greet asks every router for its greeting; replies may come from several,
// until stop.
func (b *NATSBus) Greet(handler func([]byte)) (func(), error) {
	inbox := b.conn.NewRespInbox()
	sub, err := b.conn.Subscribe(inbox, func(m *nats.Msg) {
		// With no router listening the server answers with an empty
		// "503 no responders" status message: nothing to adopt.
		if len(m.Data) == 0 {
			return
		}
		handler(m.Data)
	})
	if err != nil {
		return nil, err
	}
	stop := func() { _ = sub.Unsubscribe() }
	if err := b.conn.PublishRequest(SubjectGreet, inbox, nil); err != nil {
		stop()
		return nil, err
	}
	return stop, nil
}

// OnReconnect registers fn to run after every (re)connect.
func (b *NATSBus) OnReconnect(fn func()) {
	b.mu.Lock()
	b.onReconnect = fn
	b.mu.Unlock()
}

// Close flushes what is buffered and closes the connection.
func (b *NATSBus) Close() {
	_ = b.conn.FlushTimeout(2 * time.Second)
	b.conn.Close()
}

// Run is an ifrit runner that holds the connection until signalled, then
// closes it. It starts before and stops after the (leader-elected)
// emitter, so a standby stays connected and takes over without dialling.
func (b *NATSBus) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	close(ready)
	<-signals
	b.Close()
	return nil
}
