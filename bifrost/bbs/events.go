package bbs

import (
	"errors"
	"sync"

	"code.cloudfoundry.org/bbs/format"
	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
)

// DefaultSubscriberBuffer is how many events a subscriber may fall behind
// before it is cut, as many as BBS allows (its MAX_PENDING_SUBSCRIBER_EVENTS).
const DefaultSubscriberBuffer = 1024

// ErrHubClosed is returned by Subscribe once the hub has shut down.
var ErrHubClosed = errors.New("event hub closed")

// ErrSlowSubscriber is logged when a subscriber is cut for falling behind.
var ErrSlowSubscriber = errors.New("subscriber fell a whole buffer behind")

// EventHub fans the lrp_instances events out to every subscriber: desired
// LRP created/changed/removed, actual LRP instance created/changed/removed,
// and crashes. Whatever watches LRPs and pods calls Publish; each open
// /v1/events/lrp_instances.r1 stream is a Subscription.
//
// Publish never waits for a subscriber. Each subscriber has its own bounded
// buffer; one that falls a whole buffer behind is cut (its stream ends)
// rather than slowing the publisher, because a publisher that waited would
// hold up every other subscriber and, behind it, the informers feeding it.
// A cut client sees its stream end cleanly, as with BBS, and resubscribes;
// tps-watcher and route-emitter resynchronise from the list routes when
// they do, so nothing is lost for good, whereas a stalled hub would delay
// crash reports and route updates for everyone.
type EventHub struct {
	logger     lager.Logger
	bufferSize int

	mu          sync.Mutex
	subscribers map[*Subscription]struct{}
	closed      bool
}

// NewEventHub returns a hub whose subscribers may each fall bufferSize
// events behind (DefaultSubscriberBuffer if not positive).
func NewEventHub(logger lager.Logger, bufferSize int) *EventHub {
	if bufferSize <= 0 {
		bufferSize = DefaultSubscriberBuffer
	}
	return &EventHub{
		logger:      logger.Session("event-hub"),
		bufferSize:  bufferSize,
		subscribers: map[*Subscription]struct{}{},
	}
}

// Subscribe opens a subscription to every event published from now on;
// with a cellID, actual LRP events of other cells are left out (desired
// LRP events always come), as BBS filters. Close it when done.
func (h *EventHub) Subscribe(cellID string) (*Subscription, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrHubClosed
	}
	s := &Subscription{
		hub:    h,
		cellID: cellID,
		events: make(chan models.Event, h.bufferSize),
		done:   make(chan struct{}),
	}
	h.subscribers[s] = struct{}{}
	h.logger.Info("subscribed", lager.Data{"cell_id": cellID, "subscribers": len(h.subscribers)})
	return s, nil
}

// Publish hands event to every subscriber that wants it, in the order
// Publish is called, without waiting for any of them. Desired LRPs in
// events are served in their current (V3) form, as BBS serves the .r1
// stream.
func (h *EventHub) Publish(event models.Event) {
	if event == nil {
		return
	}
	event = models.VersionDesiredLRPsTo(event, format.V3)
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subscribers {
		if !s.wants(event) {
			continue
		}
		select {
		case s.events <- event:
		default:
			h.logger.Error("cut-slow-subscriber", ErrSlowSubscriber, lager.Data{"cell_id": s.cellID, "buffer": h.bufferSize})
			h.removeLocked(s)
		}
	}
}

// Subscribers is the number of open subscriptions.
func (h *EventHub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subscribers)
}

// Reset ends every open subscription, as a broken stream would, and keeps
// accepting new ones: after a gap in what the hub was fed (another
// backend's stream broke), subscribers must resubscribe and list again
// rather than carry on missing events.
func (h *EventHub) Reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := len(h.subscribers)
	for s := range h.subscribers {
		h.removeLocked(s)
	}
	h.logger.Info("reset", lager.Data{"subscriptions_ended": n})
}

// Close ends every subscription (their streams end) and refuses new ones,
// so a shutting-down server is not held open by long-lived streams.
func (h *EventHub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for s := range h.subscribers {
		h.removeLocked(s)
	}
	h.logger.Info("closed")
}

func (h *EventHub) removeLocked(s *Subscription) {
	if _, ok := h.subscribers[s]; !ok {
		return
	}
	delete(h.subscribers, s)
	close(s.done)
}

// Subscription is one subscriber's view of the hub.
type Subscription struct {
	hub    *EventHub
	cellID string
	events chan models.Event
	done   chan struct{}
}

// Events delivers the subscription's events in order. It is never closed;
// watch Done as well.
func (s *Subscription) Events() <-chan models.Event { return s.events }

// Done is closed when the subscription ends: closed by its owner, cut for
// falling behind, or the hub shut down. Events still buffered then are
// not to be delivered: the stream ends there.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Close ends the subscription; calling it more than once is harmless.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.hub.removeLocked(s)
}

// wants applies BBS's cell filter: with a cell id, instance events and
// crashes of other cells are dropped (a changed event by the cell of its
// instance key), everything else passes.
func (s *Subscription) wants(event models.Event) bool {
	if s.cellID == "" {
		return true
	}
	switch e := event.(type) {
	case *models.ActualLRPInstanceCreatedEvent:
		return e.ActualLrp != nil && e.ActualLrp.CellId == s.cellID
	case *models.ActualLRPInstanceChangedEvent:
		return e.CellId == s.cellID
	case *models.ActualLRPInstanceRemovedEvent:
		return e.ActualLrp != nil && e.ActualLrp.CellId == s.cellID
	case *models.ActualLRPCrashedEvent:
		return e.CellId == s.cellID
	default:
		return true
	}
}
