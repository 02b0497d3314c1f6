package bbs

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/grouper"

	"github.com/iris-cf/iris/bifrost"
	"github.com/iris-cf/iris/config"
)

// Server is an ifrit runner serving the BBS front on its configured
// listeners: mutual TLS (certificates re-read when they rotate) and,
// optionally, plain HTTP for local use.
type Server struct {
	logger  lager.Logger
	events  *EventHub
	members grouper.Members
}

// NewServer serves handler as cfg says; cfg must enable at least one
// listener. On a signal it first closes events, so the open event streams
// end (their clients resubscribe elsewhere or later) instead of holding the
// graceful shutdown for its whole timeout, then drains the listeners.
func NewServer(logger lager.Logger, cfg config.BBS, handler http.Handler, events *EventHub, shutdownTimeout time.Duration) (*Server, error) {
	logger = logger.Session("bbs-server")
	// No read timeout: on net/http a read deadline that passes while a
	// handler still runs can cancel its request, and the event stream runs
	// for hours. Headers are bounded by the server's header timeout and
	// bodies by the handler's size limit.
	timeouts := bifrost.Timeouts{Idle: 2 * time.Minute, Shutdown: shutdownTimeout}
	var members grouper.Members
	if cfg.TLSListenAddress != "" {
		server, err := bifrost.NewMutualTLSServer(logger, cfg.TLSListenAddress, handler, timeouts, cfg.TLSCertFile, cfg.TLSKeyFile, cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("bbs tls listener: %w", err)
		}
		members = append(members, grouper.Member{Name: "bbs-tls", Runner: server})
	}
	if cfg.ListenAddress != "" {
		members = append(members, grouper.Member{Name: "bbs-plain", Runner: bifrost.NewServer(logger, cfg.ListenAddress, handler, timeouts)})
	}
	if len(members) == 0 {
		return nil, errors.New("bbs: no listen_address or tls_listen_address")
	}
	return &Server{logger: logger, events: events, members: members}, nil
}

// Run serves until signalled or a listener fails.
func (s *Server) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	process := ifrit.Background(grouper.NewParallel(os.Interrupt, s.members))
	select {
	case <-process.Ready():
		close(ready)
	case err := <-process.Wait():
		s.events.Close()
		return err
	}
	select {
	case sig := <-signals:
		s.events.Close()
		process.Signal(sig)
		return <-process.Wait()
	case err := <-process.Wait():
		s.events.Close()
		return err
	}
}
