package route

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/nats-io/nats.go"
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
	if o.CACertFile != "" {
		opts = append(opts, nats.RootCAs(o.CACertFile))
	}
	if o.CertFile != "" {
		opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
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

// Subscribe hands each message on subject to handler.
func (b *NATSBus) Subscribe(subject string, handler func([]byte)) error {
	_, err := b.conn.Subscribe(subject, func(m *nats.Msg) { handler(m.Data) })
	return err
}

// Greet asks every router for its greeting; replies may come from several.
func (b *NATSBus) Greet(handler func([]byte)) error {
	inbox := b.conn.NewRespInbox()
	if _, err := b.conn.Subscribe(inbox, func(m *nats.Msg) {
		// With no router listening the server answers with an empty
		// "503 no responders" status message: nothing to adopt.
		if len(m.Data) == 0 {
			return
		}
		handler(m.Data)
	}); err != nil {
		return err
	}
	return b.conn.PublishRequest(SubjectGreet, inbox, nil)
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
