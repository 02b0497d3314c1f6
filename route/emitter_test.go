package route_test

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/route"
)

type sent struct {
	subject string
	message route.RegistryMessage
}

// recordingBus records what the emitter publishes and which handlers it
// has subscribed.
type recordingBus struct {
	mu            sync.Mutex
	sent          []sent
	subscriptions map[string]func([]byte)
	greeters      int
	onReconnect   func()
}

func (b *recordingBus) Publish(subject string, data []byte) error {
	var m route.RegistryMessage
	Expect(json.Unmarshal(data, &m)).To(Succeed())
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sent = append(b.sent, sent{subject, m})
	return nil
}

func (b *recordingBus) Subscribe(subject string, handler func([]byte)) (func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subscriptions[subject] = handler
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.subscriptions, subject)
	}, nil
}

func (b *recordingBus) Greet(func([]byte)) (func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.greeters++
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.greeters--
	}, nil
}

func (b *recordingBus) OnReconnect(fn func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.onReconnect = fn
}

func (b *recordingBus) take() []sent {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.sent
	b.sent = nil
	return out
}

func (b *recordingBus) state() (subscriptions, greeters int, reconnectSet bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subscriptions), b.greeters, b.onReconnect != nil
}

// handlerSource hands the emitter's informer handlers to the test.
type handlerSource struct{ statefulSets, pods cache.ResourceEventHandler }

func (s *handlerSource) AddEventHandlers(statefulSets, pods cache.ResourceEventHandler) error {
	s.statefulSets, s.pods = statefulSets, pods
	return nil
}

func routedStatefulSet(processGUID, hostname string) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{
		Name:   processGUID,
		Labels: map[string]string{k8s.LabelAppGUID: "app", k8s.LabelProcessType: "web"},
		Annotations: map[string]string{
			k8s.AnnotationProcessGUID: processGUID,
			k8s.AnnotationRoutes:      `{"cf-router":[{"hostname":"` + hostname + `","port":8080}]}`,
		},
	}}
}

func readyPod(processGUID, name, ip string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, UID: types.UID(name + "-uid"),
			Labels:      map[string]string{k8s.PodIndexLabel: "0"},
			Annotations: map[string]string{k8s.AnnotationProcessGUID: processGUID},
		},
		Status: corev1.PodStatus{
			PodIP:      ip,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		},
	}
}

var _ = Describe("Emitter leadership", func() {
	var (
		bus     *recordingBus
		source  *handlerSource
		emitter *route.Emitter
		clock   *clocktesting.FakeClock
	)

	BeforeEach(func() {
		bus = &recordingBus{subscriptions: map[string]func([]byte){}}
		source = &handlerSource{}
		clock = clocktesting.NewFakeClock(time.Unix(1700000000, 0))
		var err error
		emitter, err = route.NewEmitter(lagertest.NewTestLogger("route"), bus, source, 0, time.Hour, clock)
		Expect(err).NotTo(HaveOccurred())
	})

	subjects := func(msgs []sent) []string {
		var out []string
		for _, m := range msgs {
			out = append(out, m.subject+" "+m.message.URIs[0]+" "+m.message.Host)
		}
		return out
	}

	It("publishes nothing as a standby, and on taking over sends what it withheld, then everything", func() {
		source.statefulSets.OnAdd(routedStatefulSet("a-v1", "a.example.com"), true)
		source.pods.OnAdd(readyPod("a-v1", "a-0", "10.0.0.1"), true)
		source.pods.OnAdd(readyPod("a-v1", "a-1", "10.0.0.2"), true)
		gone := readyPod("a-v1", "a-1", "10.0.0.2")
		source.pods.OnDelete(gone)
		Expect(bus.take()).To(BeEmpty(), "a standby sends nothing")

		process := ifrit.Invoke(emitter)
		takenA := []string{} // take drains: what earlier polls took counts
		Eventually(func(g Gomega) {
			takenA = append(takenA, subjects(bus.take())...)
			g.Expect(takenA).To(Equal([]string{
				"router.unregister a.example.com 10.0.0.2",
				"router.register a.example.com 10.0.0.1",
			}))
		}).Should(Succeed())
		subs, greeters, reconnect := bus.state()
		Expect(subs).To(Equal(1), "router.start")
		Expect(greeters).To(Equal(1))
		Expect(reconnect).To(BeTrue())

		// While leading, changes go out as they happen.
		source.pods.OnAdd(readyPod("a-v1", "a-2", "10.0.0.3"), false)
		Expect(subjects(bus.take())).To(Equal([]string{"router.register a.example.com 10.0.0.3"}))

		process.Signal(os.Interrupt)
		Eventually(process.Wait()).Should(Receive(BeNil()))
		subs, greeters, reconnect = bus.state()
		Expect([]any{subs, greeters, reconnect}).To(Equal([]any{0, 0, false}), "a former leader listens to nothing")

		source.pods.OnDelete(readyPod("a-v1", "a-0", "10.0.0.1"))
		Expect(bus.take()).To(BeEmpty(), "a former leader sends nothing")

		// Leading again: the unregistration withheld meanwhile goes first.
		process = ifrit.Invoke(emitter)
		// take drains what was sent: keep what each poll took.
		var taken []string
		Eventually(func(g Gomega) {
			taken = append(taken, subjects(bus.take())...)
			g.Expect(taken).To(Equal([]string{
				"router.unregister a.example.com 10.0.0.1",
				"router.register a.example.com 10.0.0.3",
			}))
		}).Should(Succeed())
		process.Signal(os.Interrupt)
		Eventually(process.Wait()).Should(Receive(BeNil()))
	})

	It("tags registrations as CC's metric tags: process_id the unversioned process guid, process_instance_id the instance guid", func() {
		sts := routedStatefulSet("proc-guid-v7", "d.example.com")
		sts.Labels[k8s.LabelGUID] = "proc-guid"
		source.statefulSets.OnAdd(sts, true)
		source.pods.OnAdd(readyPod("proc-guid-v7", "d-0", "10.0.3.1"), true)
		process := ifrit.Invoke(emitter)
		DeferCleanup(func() {
			process.Signal(os.Interrupt)
			Eventually(process.Wait()).Should(Receive())
		})
		var got []sent
		Eventually(func() []sent { got = bus.take(); return got }).Should(HaveLen(1))
		Expect(got[0].message.Tags).To(HaveKeyWithValue("process_id", "proc-guid"))
		Expect(got[0].message.Tags).To(HaveKeyWithValue("process_instance_id", "d-0-uid"))
		Expect(got[0].message.Tags).To(HaveKeyWithValue("app_id", "app"))
		Expect(got[0].message.PrivateInstanceID).To(Equal("d-0-uid"))
	})

	It("names an isolated LRP's segment in its registrations", func() {
		sts := routedStatefulSet("c-v1", "c.example.com")
		sts.Annotations[k8s.AnnotationIsolationSegment] = "Segment One"
		source.statefulSets.OnAdd(sts, true)
		source.pods.OnAdd(readyPod("c-v1", "c-0", "10.0.2.1"), true)
		process := ifrit.Invoke(emitter)
		DeferCleanup(func() {
			process.Signal(os.Interrupt)
			Eventually(process.Wait()).Should(Receive())
		})
		var got []sent
		Eventually(func() []sent { got = bus.take(); return got }).Should(HaveLen(1))
		Expect(got[0].message.IsolationSegment).To(Equal("Segment One"))
	})

	It("registers every hostname of a BBS cf-router entry (a hostnames list)", func() {
		sts := routedStatefulSet("d-v1", "unused.example.com")
		sts.Annotations[k8s.AnnotationRoutes] = `{"cf-router":[{"hostnames":["d.example.com","www.d.example.com"],"port":8080,"route_service_url":null}],"tcp-router":[]}`
		source.statefulSets.OnAdd(sts, true)
		source.pods.OnAdd(readyPod("d-v1", "d-0", "10.0.3.1"), true)
		process := ifrit.Invoke(emitter)
		DeferCleanup(func() {
			process.Signal(os.Interrupt)
			Eventually(process.Wait()).Should(Receive())
		})
		// take drains: keep what earlier polls took, the two registrations
		// may arrive in different polls.
		var got []string
		Eventually(func(g Gomega) {
			got = append(got, subjects(bus.take())...)
			g.Expect(got).To(ConsistOf(
				"router.register d.example.com 10.0.3.1",
				"router.register www.d.example.com 10.0.3.1",
			))
		}).Should(Succeed())
	})

	It("answers a router.start with a full emit only while leading", func() {
		source.statefulSets.OnAdd(routedStatefulSet("b-v1", "b.example.com"), true)
		source.pods.OnAdd(readyPod("b-v1", "b-0", "10.0.1.1"), true)
		process := ifrit.Invoke(emitter)
		Eventually(func() []sent { return bus.take() }).Should(HaveLen(1))

		bus.mu.Lock()
		start := bus.subscriptions[route.SubjectStart]
		bus.mu.Unlock()
		start([]byte(`{"id":"router-1","minimumRegisterIntervalInSeconds":20}`))
		Eventually(func() []string { return subjects(bus.take()) }).Should(Equal([]string{"router.register b.example.com 10.0.1.1"}))

		process.Signal(os.Interrupt)
		Eventually(process.Wait()).Should(Receive(BeNil()))
		start([]byte(`{"id":"router-1","minimumRegisterIntervalInSeconds":20}`))
		Consistently(func() []sent { return bus.take() }, 200*time.Millisecond).Should(BeEmpty())
	})

	It("re-registers everything every interval, a router's interval taking over from the default", func() {
		source.statefulSets.OnAdd(routedStatefulSet("d-v1", "d.example.com"), true)
		source.pods.OnAdd(readyPod("d-v1", "d-0", "10.0.3.1"), true)
		process := ifrit.Invoke(emitter)
		DeferCleanup(func() {
			process.Signal(os.Interrupt)
			Eventually(process.Wait()).Should(Receive())
		})
		Eventually(func() []sent { return bus.take() }).Should(HaveLen(1), "the first emit")
		Eventually(clock.HasWaiters).Should(BeTrue())

		clock.Step(59 * time.Minute)
		Consistently(func() []sent { return bus.take() }, 100*time.Millisecond).Should(BeEmpty(), "before the default interval")
		clock.Step(time.Minute)
		Eventually(func() []string { return subjects(bus.take()) }).Should(Equal([]string{"router.register d.example.com 10.0.3.1"}))

		// A router asks for 20 s: the emitter counts from the greeting.
		bus.mu.Lock()
		start := bus.subscriptions[route.SubjectStart]
		bus.mu.Unlock()
		start([]byte(`{"id":"router-1","minimumRegisterIntervalInSeconds":20}`))
		Eventually(func() []sent { return bus.take() }).Should(HaveLen(1), "a greeting's full emit")
		Eventually(clock.HasWaiters).Should(BeTrue())
		clock.Step(19 * time.Second)
		Consistently(func() []sent { return bus.take() }, 100*time.Millisecond).Should(BeEmpty())
		clock.Step(time.Second)
		Eventually(func() []sent { return bus.take() }).Should(HaveLen(1))
	})

	It("answers a greeting that arrives during a spread pass at once, with every route", func() {
		for i := range 40 {
			name := fmt.Sprintf("s%02d-v1", i)
			source.statefulSets.OnAdd(routedStatefulSet(name, name+".example.com"), true)
			source.pods.OnAdd(readyPod(name, name+"-0", fmt.Sprintf("10.0.9.%d", i+1)), true)
		}
		process := ifrit.Invoke(emitter)
		DeferCleanup(func() {
			process.Signal(os.Interrupt)
			Eventually(process.Wait()).Should(Receive())
		})
		// take drains: each poll adds what arrived since the last.
		var got []sent
		collect := func(n int) func(g Gomega) {
			got = nil
			return func(g Gomega) {
				got = append(got, bus.take()...)
				g.Expect(got).To(HaveLen(n))
			}
		}
		Eventually(collect(40)).Should(Succeed(), "the first emit")
		Eventually(clock.HasWaiters).Should(BeTrue())

		// The default interval's pass: 20 slices of 2 LRPs, a pause
		// between slices; it stops after its first slice.
		clock.Step(time.Hour)
		Eventually(collect(2)).Should(Succeed(), "the pass's first slice")
		Eventually(clock.HasWaiters).Should(BeTrue())

		bus.mu.Lock()
		start := bus.subscriptions[route.SubjectStart]
		bus.mu.Unlock()
		start([]byte(`{"id":"router-1","minimumRegisterIntervalInSeconds":1}`))
		// No clock step: the greeting ends the pause.
		Eventually(collect(40)).Should(Succeed(), "everything at once for the greeting")
	})

	It("replays only the unregistrations withheld within the last two minutes", func() {
		source.statefulSets.OnAdd(routedStatefulSet("e-v1", "e.example.com"), true)
		source.pods.OnAdd(readyPod("e-v1", "e-0", "10.0.4.1"), true)
		source.pods.OnAdd(readyPod("e-v1", "e-1", "10.0.4.2"), true)
		source.pods.OnAdd(readyPod("e-v1", "e-2", "10.0.4.3"), true)
		source.pods.OnDelete(readyPod("e-v1", "e-0", "10.0.4.1"))
		clock.Step(90 * time.Second)
		source.pods.OnDelete(readyPod("e-v1", "e-1", "10.0.4.2"))
		clock.Step(31 * time.Second) // e-0's is now 121 s old, e-1's 31 s

		process := ifrit.Invoke(emitter)
		DeferCleanup(func() {
			process.Signal(os.Interrupt)
			Eventually(process.Wait()).Should(Receive())
		})
		takenE := []string{} // take drains: what earlier polls took counts
		Eventually(func(g Gomega) {
			takenE = append(takenE, subjects(bus.take())...)
			g.Expect(takenE).To(Equal([]string{
				"router.unregister e.example.com 10.0.4.2",
				"router.register e.example.com 10.0.4.3",
			}))
		}).Should(Succeed())
	})
})
