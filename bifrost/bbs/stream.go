package bbs

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	"github.com/gogo/protobuf/proto"
	"github.com/vito/go-sse/sse"
)

// streamWriteTimeout bounds each write to an event stream. A client that
// stopped reading blocks the write once its socket buffers are full; the hub
// cuts its subscription soon after, and this frees the handler (and the
// connection) instead of leaving it blocked for good.
const streamWriteTimeout = 30 * time.Second

// lrpInstanceEvents serves /v1/events/lrp_instances.r1 as BBS writes it:
// server-sent events, each `id: N` (0, 1, 2, ... per stream), `event:
// <event type>`, `data: <base64 of the protobuf event>`, one chunk per
// event. The stream starts with the events published after it opened (BBS
// replays nothing, Last-Event-ID is ignored) and ends cleanly when the
// subscription is cut or the hub closes, so the client's Next returns
// io.EOF and it resubscribes.
func (h *Handler) lrpInstanceEvents(w http.ResponseWriter, r *http.Request) {
	logger := h.session(r, "lrp-instance-events")
	request := &models.EventsByCellId{}
	if err := h.decode(logger, r, request); err != nil {
		// BBS answers a subscription it cannot read with a bare 500.
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	logger = logger.WithData(lager.Data{"cell_id": request.CellId})
	subscription, err := h.events.Subscribe(request.CellId)
	if err != nil {
		logger.Error("failed-to-subscribe", err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	defer subscription.Close()
	logger.Info("subscribed")
	defer logger.Info("stream-ended")

	rc := http.NewResponseController(w)
	header := w.Header()
	header.Set("Content-Type", "text/event-stream; charset=utf-8")
	header.Set("Cache-Control", "no-cache, no-store, must-revalidate")
	// BBS closes the connection when a stream ends; so does Iris, which
	// also keeps a stream's write deadlines from reaching a later request
	// on the same connection.
	header.Set("Connection", "close")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		logger.Error("failed-to-flush", err)
		return
	}
	// However the stream ends, its last chunk gets a fresh deadline.
	defer func() { _ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout)) }()

	for id := 0; ; id++ {
		var event models.Event
		select {
		case <-subscription.Done():
			return
		case <-r.Context().Done():
			return
		case event = <-subscription.Events():
		}
		// A cut stream ends where it was cut, not after its backlog.
		select {
		case <-subscription.Done():
			return
		default:
		}
		if err := rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout)); err != nil {
			logger.Error("failed-to-set-write-deadline", err)
			return
		}
		if err := writeEvent(w, id, event); err != nil {
			logger.Error("failed-to-write-event", err)
			return
		}
		if err := rc.Flush(); err != nil {
			logger.Error("failed-to-flush", err)
			return
		}
	}
}

// writeEvent writes event as BBS does: protobuf, base64, under its type;
// in one write, so that it leaves as one chunk, as BBS's do.
func writeEvent(w http.ResponseWriter, id int, event models.Event) error {
	payload, err := proto.Marshal(event)
	if err != nil {
		return fmt.Errorf("encoding %s event: %w", event.EventType(), err)
	}
	encoded := sse.Event{
		ID:   strconv.Itoa(id),
		Name: event.EventType(),
		Data: []byte(base64.StdEncoding.EncodeToString(payload)),
	}.Encode()
	_, err = io.WriteString(w, encoded)
	return err
}
