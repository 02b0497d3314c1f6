package diego

import (
	"errors"
	"os"
	"time"

	"code.cloudfoundry.org/bbs/events"
	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	"k8s.io/utils/clock"
)

// Hub is where relayed events go; bifrost/bbs's EventHub is one.
type Hub interface {
	Publish(event models.Event)
	// Reset ends every open subscription (their streams end, and clients
	// resubscribe and list again) without refusing new ones.
	Reset()
}

// Relay subscribes to Diego's lrp_instances stream and publishes each
// event into Iris's hub, so subscribers of Iris's one stream see both
// sides. Diego's events are lost while its stream is down, so the relay
// resets the hub (every subscriber's stream ends; they resubscribe and
// list again, as BBS's own clients do after any broken stream) when the
// stream breaks, and again once it is back, for those who subscribed in
// the gap. It resubscribes with a capped backoff. It is an ifrit runner.
type Relay struct {
	logger     lager.Logger
	client     Client
	hub        Hub
	clock      clock.Clock
	maxBackoff time.Duration
}

// NewRelay returns a relay from client's instance events to hub.
func NewRelay(logger lager.Logger, client Client, hub Hub, clk clock.Clock) *Relay {
	return &Relay{logger: logger.Session("diego-event-relay"), client: client, hub: hub, clock: clk, maxBackoff: 30 * time.Second}
}

// Run relays until signalled. It is ready at once: Diego being down must
// not keep Iris's own LRPs from being served.
func (r *Relay) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	close(ready)
	backoff := time.Second
	subscribedBefore := false
	for {
		source, err := r.client.SubscribeToInstanceEvents(r.logger)
		if err != nil {
			r.logger.Error("subscribe-failed", err, lager.Data{"retry_in": backoff.String()})
		} else {
			r.logger.Info("subscribed")
			if subscribedBefore {
				r.hub.Reset()
			}
			subscribedBefore = true
			stopped, relayed := r.relay(source, signals)
			if stopped {
				return nil
			}
			// A stream that worked for a while broke: news, not the same
			// failure again.
			if relayed {
				backoff = time.Second
			}
			r.hub.Reset()
		}
		select {
		case <-signals:
			return nil
		case <-r.clock.After(backoff):
		}
		backoff = min(2*backoff, r.maxBackoff)
	}
}

// relay publishes source's events until it breaks or a signal arrives
// (stopped). relayed reports whether any event came through.
func (r *Relay) relay(source events.EventSource, signals <-chan os.Signal) (stopped, relayed bool) {
	type next struct {
		event models.Event
		err   error
	}
	results := make(chan next)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			event, err := source.Next()
			select {
			case results <- next{event, err}:
			case <-done:
				return
			}
			if err != nil && !errors.Is(err, events.ErrUnrecognizedEventType) && !errors.Is(err, events.ErrNoData) {
				return
			}
		}
	}()
	for {
		select {
		case <-signals:
			_ = source.Close()
			return true, relayed
		case n := <-results:
			// An event of a type this client does not know (a newer
			// Diego) is skipped: the stream itself is fine.
			if errors.Is(n.err, events.ErrUnrecognizedEventType) || errors.Is(n.err, events.ErrNoData) {
				r.logger.Info("skipped-event", lager.Data{"reason": n.err.Error()})
				continue
			}
			if n.err != nil {
				_ = source.Close()
				if errors.Is(n.err, events.ErrSourceClosed) {
					r.logger.Info("stream-closed")
				} else {
					r.logger.Error("stream-broke", n.err)
				}
				return false, relayed
			}
			r.hub.Publish(n.event)
			relayed = true
		}
	}
}
