package diego_test

import (
	"errors"
	"os"
	"sync"
	"time"

	"code.cloudfoundry.org/bbs/events"
	"code.cloudfoundry.org/bbs/events/eventfakes"
	"code.cloudfoundry.org/bbs/fake_bbs"
	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/iris-cf/iris/backends/diego"
)

// recordingHub keeps what the relay published and how often it reset.
type recordingHub struct {
	mu     sync.Mutex
	events []string
	resets int
}

func (h *recordingHub) Publish(event models.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, event.Key())
}

func (h *recordingHub) Reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.resets++
}

func (h *recordingHub) published() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.events...)
}

func (h *recordingHub) resetCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.resets
}

// scriptedSource answers Next from a channel of results, then blocks until
// closed, as a quiet open stream does.
type scriptedSource struct {
	*eventfakes.FakeEventSource
	results chan result
	closed  chan struct{}
	once    sync.Once
}

type result struct {
	event models.Event
	err   error
}

func newScriptedSource() *scriptedSource {
	s := &scriptedSource{FakeEventSource: &eventfakes.FakeEventSource{}, results: make(chan result, 10), closed: make(chan struct{})}
	s.NextCalls(func() (models.Event, error) {
		select {
		case r := <-s.results:
			return r.event, r.err
		case <-s.closed:
			return nil, events.ErrSourceClosed
		}
	})
	s.CloseCalls(func() error {
		s.once.Do(func() { close(s.closed) })
		return nil
	})
	return s
}

func desiredCreated(guid string) models.Event {
	return models.NewDesiredLRPCreatedEvent(&models.DesiredLRP{ProcessGuid: guid}, "trace")
}

var _ = Describe("Relay", func() {
	var (
		client  *fake_bbs.FakeClient
		hub     *recordingHub
		clock   *clocktesting.FakeClock
		sources chan *scriptedSource
		process ifrit.Process
	)

	BeforeEach(func() {
		client = &fake_bbs.FakeClient{}
		hub = &recordingHub{}
		clock = clocktesting.NewFakeClock(time.Unix(1000, 0))
		sources = make(chan *scriptedSource, 10)
		client.SubscribeToInstanceEventsCalls(func(lager.Logger) (events.EventSource, error) {
			select {
			case s := <-sources:
				return s, nil
			default:
				return nil, errors.New("connection refused")
			}
		})
	})

	start := func() {
		process = ifrit.Invoke(diego.NewRelay(lagertest.NewTestLogger("relay"), client, hub, clock))
		DeferCleanup(func() {
			process.Signal(os.Interrupt)
			Eventually(process.Wait()).Should(Receive(BeNil()))
		})
	}

	It("publishes Diego's events in order, skipping types it cannot read, without ending subscriptions", func() {
		source := newScriptedSource()
		sources <- source
		start()
		source.results <- result{event: desiredCreated("a")}
		source.results <- result{err: events.ErrUnrecognizedEventType}
		source.results <- result{event: desiredCreated("b")}
		Eventually(hub.published).Should(Equal([]string{"a", "b"}))
		Consistently(hub.resetCount, "100ms").Should(BeZero())
	})

	It("ends every subscription when Diego's stream breaks and again once it is back, resubscribing after a backoff", func() {
		first, second := newScriptedSource(), newScriptedSource()
		sources <- first
		start()
		first.results <- result{event: desiredCreated("a")}
		first.results <- result{err: events.NewRawEventSourceError(errors.New("connection reset"))}
		Eventually(hub.resetCount).Should(Equal(1))
		Expect(first.CloseCallCount()).To(BeNumerically(">=", 1))

		sources <- second
		Eventually(clock.HasWaiters).Should(BeTrue())
		clock.Step(time.Second)
		Eventually(client.SubscribeToInstanceEventsCallCount).Should(Equal(2))
		Eventually(hub.resetCount).Should(Equal(2), "subscribers of the gap missed Diego's events")
		second.results <- result{event: desiredCreated("b")}
		Eventually(hub.published).Should(Equal([]string{"a", "b"}))
	})

	It("keeps retrying a Diego that cannot be reached, backing off, and is ready meanwhile", func() {
		start()
		Eventually(process.Ready()).Should(BeClosed())
		Eventually(clock.HasWaiters).Should(BeTrue())
		clock.Step(time.Second)
		Eventually(client.SubscribeToInstanceEventsCallCount).Should(Equal(2))
		Eventually(clock.HasWaiters).Should(BeTrue())
		clock.Step(time.Second)
		Consistently(client.SubscribeToInstanceEventsCallCount, "100ms").Should(Equal(2), "the second wait is two seconds")
		clock.Step(time.Second)
		Eventually(client.SubscribeToInstanceEventsCallCount).Should(Equal(3))
		Expect(hub.resetCount()).To(BeZero(), "nothing was relayed, so no subscriber missed anything")
	})
})
