package leader_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/tedsuo/ifrit"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/leader"
)

// worker is the component run under the Lease. Each run answers pings with
// its own run number until it is signalled, so a test can tell a run that
// works from one that was merely started. It records a run that starts
// while another still runs.
type worker struct {
	ping chan chan int

	mu         sync.Mutex
	runs       int
	running    bool
	overlapped bool
}

func newWorker() *worker { return &worker{ping: make(chan chan int)} }

func (w *worker) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	w.mu.Lock()
	w.runs++
	run := w.runs
	w.overlapped = w.overlapped || w.running
	w.running = true
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.running = false
		w.mu.Unlock()
	}()
	close(ready)
	for {
		select {
		case reply := <-w.ping:
			reply <- run
		case <-signals:
			return nil
		}
	}
}

// answer is the number of the run that answers a ping now, or 0 if none does.
func (w *worker) answer() int {
	reply := make(chan int, 1)
	select {
	case w.ping <- reply:
		return <-reply
	case <-time.After(50 * time.Millisecond):
		return 0
	}
}

func (w *worker) isRunning() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.running
}

func (w *worker) startedRuns() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.runs
}

const (
	namespace = "iris-system"
	leaseName = "iris-reporters"
)

// Short Lease timings: client-go's leader election runs on real time.
func options(identity string) leader.Options {
	return leader.Options{
		Namespace: namespace, Name: leaseName, Identity: identity,
		LeaseDuration: time.Second, RenewDeadline: 500 * time.Millisecond, RetryPeriod: 100 * time.Millisecond,
	}
}

var _ = Describe("Runner", func() {
	var (
		clientset *fake.Clientset
		logger    *lagertest.TestLogger
		inner     *worker
		// blockedHolder: while set, the API server refuses writes that
		// make this identity the holder, as it refuses a writer whose
		// resourceVersion is stale after another identity took the Lease.
		blockedHolder atomic.Pointer[string]
		// outage: while set, every Lease request fails.
		outage atomic.Bool
	)

	holder := func(g Gomega) string {
		lease, err := clientset.CoordinationV1().Leases(namespace).Get(context.Background(), leaseName, metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		return ptr.Deref(lease.Spec.HolderIdentity, "")
	}

	// hold writes the Lease as if identity had just acquired it.
	hold := func(identity string, duration time.Duration) {
		GinkgoHelper()
		lease := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: leaseName},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To(identity),
				LeaseDurationSeconds: ptr.To(int32(duration / time.Second)),
				AcquireTime:          ptr.To(metav1.NowMicro()),
				RenewTime:            ptr.To(metav1.NowMicro()),
			},
		}
		leases := clientset.CoordinationV1().Leases(namespace)
		existing, err := leases.Get(context.Background(), leaseName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = leases.Create(context.Background(), lease, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			return
		}
		Expect(err).NotTo(HaveOccurred())
		lease.ResourceVersion = existing.ResourceVersion
		_, err = leases.Update(context.Background(), lease, metav1.UpdateOptions{})
		Expect(err).NotTo(HaveOccurred())
	}

	// start runs a runner until the spec ends.
	start := func(opts leader.Options, inner ifrit.Runner) ifrit.Process {
		GinkgoHelper()
		process := ifrit.Invoke(leader.NewRunner(logger, clientset, opts, inner))
		DeferCleanup(func() {
			process.Signal(os.Interrupt)
			Eventually(process.Wait(), 5*time.Second).Should(Receive())
		})
		return process
	}

	BeforeEach(func() {
		clientset = fake.NewClientset()
		logger = lagertest.NewTestLogger("test")
		inner = newWorker()
		blockedHolder.Store(nil)
		outage.Store(false)
		clientset.PrependReactor("*", "leases", func(action k8stesting.Action) (bool, runtime.Object, error) {
			if outage.Load() {
				return true, nil, apierrors.NewServiceUnavailable("the API server is down")
			}
			update, ok := action.(k8stesting.UpdateAction)
			if blocked := blockedHolder.Load(); ok && blocked != nil {
				lease := update.GetObject().(*coordinationv1.Lease)
				if ptr.Deref(lease.Spec.HolderIdentity, "") == *blocked {
					return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, leaseName,
						errors.New("the object has been modified"))
				}
			}
			return false, nil, nil
		})
	})

	It("runs the inner runner while it leads, and on a signal stops it and releases the Lease", func() {
		process := start(options("iris-a"), inner)
		Eventually(inner.answer, 5*time.Second).Should(Equal(1))
		Expect(holder(Default)).To(Equal("iris-a"))
		Expect(logger).To(gbytes.Say("leading"))

		process.Signal(os.Interrupt)
		Eventually(process.Wait(), 5*time.Second).Should(Receive(BeNil()))
		Expect(inner.isRunning()).To(BeFalse())
		Expect(holder(Default)).To(BeEmpty(), "released: a successor need not wait for it to expire")
		Expect(logger).To(gbytes.Say("released"))
	})

	It("hands over at once to a standby when the leader is signalled", func() {
		// The leader's Lease lasts an hour: the standby can only lead
		// soon if it is released.
		long := options("iris-a")
		long.LeaseDuration = time.Hour
		leaderProcess := start(long, inner)
		Eventually(inner.answer, 5*time.Second).Should(Equal(1))

		standbyInner := newWorker()
		start(options("iris-b"), standbyInner)
		Consistently(standbyInner.startedRuns, 500*time.Millisecond).Should(BeZero())

		leaderProcess.Signal(os.Interrupt)
		Eventually(leaderProcess.Wait(), 5*time.Second).Should(Receive(BeNil()))
		Eventually(standbyInner.answer, 5*time.Second).Should(Equal(1))
		Expect(holder(Default)).To(Equal("iris-b"))
	})

	It("waits while another identity holds the Lease and leads once that expires", func() {
		hold("iris-other", 2*time.Second)
		start(options("iris-a"), inner)
		Consistently(inner.startedRuns, 500*time.Millisecond).Should(BeZero())
		Eventually(inner.answer, 10*time.Second).Should(Equal(1))
		Expect(holder(Default)).To(Equal("iris-a"))
	})

	It("stops on a signal while it campaigns, never having run the inner runner", func() {
		hold("iris-other", time.Hour)
		process := start(options("iris-a"), inner)
		Eventually(logger, 5*time.Second).Should(gbytes.Say("campaigning"))
		process.Signal(os.Interrupt)
		Eventually(process.Wait(), 5*time.Second).Should(Receive(BeNil()))
		Expect(inner.startedRuns()).To(BeZero())
		Expect(holder(Default)).To(Equal("iris-other"), "not ours to release")
	})

	Describe("after losing the Lease", func() {
		// Each loss stops the run; each win starts a new one, which works.
		// The runner itself keeps running throughout.
		cycle := func(process ifrit.Process, lose func(), recover func()) {
			for run := 1; run <= 4; run++ {
				Eventually(inner.answer, 5*time.Second).Should(Equal(run))
				Expect(holder(Default)).To(Equal("iris-a"))

				lose()
				Eventually(inner.isRunning, 5*time.Second).Should(BeFalse(), "the run stops when the Lease is lost")
				Expect(inner.answer()).To(BeZero())
				Expect(process.Wait()).NotTo(Receive(), "the runner campaigns again")
				recover()
			}
			Eventually(inner.answer, 5*time.Second).Should(Equal(5))
			Expect(inner.overlapped).To(BeFalse(), "never two runs at once")
			Expect(logger).To(gbytes.Say("lost-lease"))

			process.Signal(os.Interrupt)
			Eventually(process.Wait(), 5*time.Second).Should(Receive(BeNil()))
			Expect(holder(Default)).To(BeEmpty())
		}

		It("to another identity, leads and runs the inner runner again, any number of times", func() {
			process := start(options("iris-a"), inner)
			cycle(process,
				func() {
					// The other identity's write wins; ours are stale from now on.
					blockedHolder.Store(ptr.To("iris-a"))
					hold("iris-intruder", time.Second)
				},
				func() {
					// The intruder stops renewing; its Lease expires.
					blockedHolder.Store(nil)
					Expect(holder(Default)).To(Equal("iris-intruder"))
				})
		})

		It("to an API server outage longer than the renew deadline, leads and runs the inner runner again, any number of times", func() {
			process := start(options("iris-a"), inner)
			cycle(process,
				func() { outage.Store(true) },
				func() { outage.Store(false) })
		})
	})

	It("returns the inner runner's error when it exits on its own, and releases the Lease", func() {
		failing := ifrit.RunFunc(func(_ <-chan os.Signal, ready chan<- struct{}) error {
			close(ready)
			return errors.New("queue broke")
		})
		process := ifrit.Invoke(leader.NewRunner(logger, clientset, options("iris-a"), failing))
		var err error
		Eventually(process.Wait(), 5*time.Second).Should(Receive(&err))
		Expect(err).To(MatchError(ContainSubstring("queue broke")))
		Expect(holder(Default)).To(BeEmpty())
	})

	It("treats an inner runner that exits without error while leading as a failure", func() {
		quitting := ifrit.RunFunc(func(_ <-chan os.Signal, ready chan<- struct{}) error {
			close(ready)
			return nil
		})
		process := ifrit.Invoke(leader.NewRunner(logger, clientset, options("iris-a"), quitting))
		var err error
		Eventually(process.Wait(), 5*time.Second).Should(Receive(&err))
		Expect(err).To(MatchError(ContainSubstring("exited without being signalled")))
	})
})
