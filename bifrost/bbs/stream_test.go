package bbs_test

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"code.cloudfoundry.org/bbs/events"
	"code.cloudfoundry.org/bbs/models"
	"github.com/gogo/protobuf/proto"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// received is what a client event source delivered: events until the
// source ends, then its error.
type received struct {
	events chan models.Event
	err    chan error
}

// drain reads source in the background as tps-watcher does.
func drain(source events.EventSource) *received {
	r := &received{events: make(chan models.Event, 4096), err: make(chan error, 1)}
	DeferCleanup(func() { _ = source.Close() })
	go func() {
		for {
			event, err := source.Next()
			if err != nil {
				r.err <- err
				return
			}
			r.events <- event
		}
	}()
	return r
}

// next waits for the next event.
func (r *received) next() models.Event {
	var event models.Event
	EventuallyWithOffset(1, r.events).Should(Receive(&event))
	return event
}

func expectSameEvent(got, want models.Event) {
	ExpectWithOffset(1, got.EventType()).To(Equal(want.EventType()))
	// The models' generated Equal: gogo's reflective proto.Equal cannot
	// compare the routes' json.RawMessage values.
	equal, ok := want.(interface{ Equal(any) bool })
	ExpectWithOffset(1, ok).To(BeTrue())
	ExpectWithOffset(1, equal.Equal(got)).To(BeTrue(), "got %s\nwant %s", got, want)
}

// allEventTypes are one event of each type the lrp_instances stream carries.
func allEventTypes(cell string) []models.Event {
	lrp := ccDesiredLRP(processGuid)
	changed := ccDesiredLRP(processGuid)
	changed.Instances = 3
	before := instance(processGuid, 0, cell)
	before.State = models.ActualLRPStateClaimed
	before.SetRoutable(false)
	after := instance(processGuid, 0, cell)
	after.SetRoutable(true)
	crashed := instance(processGuid, 0, cell)
	crashed.State = models.ActualLRPStateCrashed
	crashed.CrashCount = 1
	crashed.CrashReason = "APP/PROC/WEB: Exited with status 1"
	return []models.Event{
		models.NewDesiredLRPCreatedEvent(lrp, "t1"),
		models.NewActualLRPInstanceCreatedEvent(before, "t1"),
		models.NewActualLRPInstanceChangedEvent(before, after, "t1"),
		models.NewDesiredLRPChangedEvent(lrp, changed, "t2"),
		models.NewActualLRPCrashedEvent(after, crashed),
		models.NewActualLRPInstanceRemovedEvent(crashed, "t3"),
		models.NewDesiredLRPRemovedEvent(changed, "t3"),
	}
}

var _ = Describe("The lrp_instances.r1 event stream", func() {
	var f *fixture

	BeforeEach(func() {
		f = newFixture(0)
	})

	subscribe := func(cellID string) *received {
		var source events.EventSource
		var err error
		if cellID == "" {
			source, err = f.client.SubscribeToInstanceEvents(f.logger)
		} else {
			source, err = f.client.SubscribeToInstanceEventsByCellID(f.logger, cellID)
		}
		Expect(err).NotTo(HaveOccurred())
		return drain(source)
	}

	It("delivers every event type to the client's event source, in order, exactly once", func() {
		stream := subscribe("")
		published := allEventTypes("cell-1")
		for _, e := range published {
			f.hub.Publish(e)
		}
		for _, want := range published {
			expectSameEvent(stream.next(), want)
		}
		// Nothing repeated: the next event is the one published next.
		marker := desiredCreated("marker")
		f.hub.Publish(marker)
		expectSameEvent(stream.next(), marker)
		Consistently(stream.events).ShouldNot(Receive())
	})

	It("keeps the routable flag of instance changes", func() {
		stream := subscribe("")
		f.hub.Publish(allEventTypes("cell-1")[2])
		changed, ok := stream.next().(*models.ActualLRPInstanceChangedEvent)
		Expect(ok).To(BeTrue())
		Expect(changed.Before.GetRoutable()).To(BeFalse())
		Expect(changed.After.GetRoutable()).To(BeTrue())
		Expect(changed.After.RoutableExists()).To(BeTrue())
	})

	It("gives a cell's subscriber desired events and its own cell's instance events only", func() {
		mine := subscribe("cell-1")
		everything := subscribe("")
		theirs := allEventTypes("cell-2")
		ours := allEventTypes("cell-1")
		for _, e := range append(theirs, ours...) {
			f.hub.Publish(e)
		}

		var wantMine []models.Event
		for _, e := range theirs {
			if strings.HasPrefix(e.EventType(), "desired_lrp") {
				wantMine = append(wantMine, e)
			}
		}
		wantMine = append(wantMine, ours...)
		for _, want := range wantMine {
			expectSameEvent(mine.next(), want)
		}
		for _, want := range append(theirs, ours...) {
			expectSameEvent(everything.next(), want)
		}
		Consistently(mine.events).ShouldNot(Receive())
	})

	It("gives a reconnecting subscriber a fresh stream: ids from 0, no replay", func() {
		first := rawStream(f, "")
		f.hub.Publish(desiredCreated("a"))
		f.hub.Publish(desiredCreated("b"))
		Expect(first.readEvent().id).To(Equal("0"))
		Expect(first.readEvent().id).To(Equal("1"))
		first.close()
		Eventually(f.hub.Subscribers).Should(BeZero())

		f.hub.Publish(desiredCreated("missed"))
		second := rawStream(f, "")
		f.hub.Publish(desiredCreated("c"))
		event := second.readEvent()
		Expect(event.id).To(Equal("0"))
		Expect(event.decoded().Key()).To(HaveSuffix("c"))
	})

	It("writes events exactly as BBS does: id, event type, base64 protobuf", func() {
		stream := rawStream(f, "")
		Expect(stream.response.Header.Get("Content-Type")).To(Equal("text/event-stream; charset=utf-8"))
		Expect(stream.response.Header.Get("Cache-Control")).To(Equal("no-cache, no-store, must-revalidate"))

		crash := allEventTypes("cell-1")[4]
		f.hub.Publish(crash)
		payload, err := proto.Marshal(crash)
		Expect(err).NotTo(HaveOccurred())
		Expect(stream.readLines(4)).To(Equal([]string{
			"id: 0",
			"event: actual_lrp_crashed",
			"data: " + base64.StdEncoding.EncodeToString(payload),
			"",
		}))
	})

	It("ends the stream cleanly when the hub closes, so the client resubscribes", func() {
		stream := subscribe("")
		f.hub.Publish(desiredCreated("a"))
		stream.next()
		f.hub.Close()
		Eventually(stream.err).Should(Receive(MatchError(io.EOF)))
	})

	It("answers a subscription whose body it cannot read with BBS's bare 500", func() {
		answer := f.post("/v1/events/lrp_instances.r1", "application/json", []byte(`{"cell_id":"x"}`))
		Expect(answer.StatusCode).To(Equal(http.StatusInternalServerError))
		Expect(f.hub.Subscribers()).To(BeZero())
	})

	Context("with a subscriber that stops reading", func() {
		BeforeEach(func() {
			f = newFixture(4)
		})

		It("cuts it while the others get every event in order, and ends its stream cleanly", func() {
			slow := stalledStream(f)
			fast := subscribe("")
			Eventually(f.hub.Subscribers).Should(Equal(2))

			// Large events fill the stalled connection's socket buffers
			// within a few megabytes; the fast client takes each before
			// the next is published.
			big := strings.Repeat("x", 256<<10)
			published := 0
			for f.hub.Subscribers() == 2 {
				Expect(published).To(BeNumerically("<", 400), "the stalled subscriber was never cut")
				lrp := ccDesiredLRP(processGuid)
				lrp.Annotation = big
				lrp.ProcessGuid = fmt.Sprintf("%s-%d", processGuid, published)
				f.hub.Publish(models.NewDesiredLRPCreatedEvent(lrp, ""))
				got := fast.next().(*models.DesiredLRPCreatedEvent)
				Expect(got.DesiredLrp.ProcessGuid).To(Equal(lrp.ProcessGuid))
				published++
			}
			f.hub.Publish(desiredCreated("after-the-cut"))
			Expect(fast.next().Key()).To(HaveSuffix("after-the-cut"))

			// Once it reads again, the cut stream ends with the last chunk
			// (the client's io.EOF) after fewer events than were published.
			body, err := io.ReadAll(slow.Body)
			Expect(err).NotTo(HaveOccurred())
			delivered := strings.Count(string(body), "\nevent: ")
			Expect(delivered).To(BeNumerically("<", published))
		})
	})
})

// sseEvent is one raw server-sent event.
type sseEvent struct {
	id, name, data string
}

func (e sseEvent) decoded() models.Event {
	payload, err := base64.StdEncoding.DecodeString(e.data)
	Expect(err).NotTo(HaveOccurred())
	Expect(e.name).To(Equal(models.EventTypeDesiredLRPCreated))
	event := &models.DesiredLRPCreatedEvent{}
	Expect(proto.Unmarshal(payload, event)).To(Succeed())
	return event
}

// rawEventStream reads the stream's text as it is on the wire.
type rawEventStream struct {
	response *http.Response
	reader   *bufio.Reader
}

func rawStream(f *fixture, cellID string) *rawEventStream {
	body, err := proto.Marshal(&models.EventsByCellId{CellId: cellID})
	Expect(err).NotTo(HaveOccurred())
	response := f.post("/v1/events/lrp_instances.r1", "application/x-protobuf", body)
	Expect(response.StatusCode).To(Equal(http.StatusOK))
	return &rawEventStream{response: response, reader: bufio.NewReader(response.Body)}
}

func (s *rawEventStream) readLines(n int) []string {
	var lines []string
	for range n {
		line, err := s.reader.ReadString('\n')
		Expect(err).NotTo(HaveOccurred())
		lines = append(lines, strings.TrimSuffix(line, "\n"))
	}
	return lines
}

func (s *rawEventStream) readEvent() sseEvent {
	lines := s.readLines(4)
	Expect(lines[3]).To(BeEmpty())
	return sseEvent{
		id:   strings.TrimPrefix(lines[0], "id: "),
		name: strings.TrimPrefix(lines[1], "event: "),
		data: strings.TrimPrefix(lines[2], "data: "),
	}
}

func (s *rawEventStream) close() { _ = s.response.Body.Close() }

// stalledStream subscribes over a connection it does not read from until
// the caller reads the returned response's body.
func stalledStream(f *fixture) *http.Response {
	pair, err := tls.LoadX509KeyPair(suiteCerts.clientCertFile, suiteCerts.clientKeyFile)
	Expect(err).NotTo(HaveOccurred())
	address, err := url.Parse(f.server.URL)
	Expect(err).NotTo(HaveOccurred())
	conn, err := tls.Dial("tcp", address.Host, &tls.Config{
		RootCAs:      caPool(suiteCerts.serverCAFile),
		Certificates: []tls.Certificate{pair},
		MinVersion:   tls.VersionTLS12,
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(conn.Close)
	_, err = fmt.Fprintf(conn, "POST /v1/events/lrp_instances.r1 HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n", address.Host)
	Expect(err).NotTo(HaveOccurred())
	// Only the response head is read here; the body stays in the socket.
	reader := bufio.NewReaderSize(conn, 4096)
	response, err := http.ReadResponse(reader, nil)
	Expect(err).NotTo(HaveOccurred())
	Expect(response.StatusCode).To(Equal(http.StatusOK))
	return response
}
