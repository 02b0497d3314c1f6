package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bbsclient "code.cloudfoundry.org/bbs"
	"code.cloudfoundry.org/bbs/events"
	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/iris-cf/iris/bifrost/bbs"
	"github.com/iris-cf/iris/bifrost/bbs/bbsfakes"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/internal/benchenv"
	"github.com/iris-cf/iris/k8s"
)

// eventGrace is how long subscribers may still deliver after the last
// change before what is missing counts as dropped.
const eventGrace = 10 * time.Second

// received is one instance-changed event as a subscriber got it.
type received struct {
	key string
	at  time.Time
}

// subscriber reads one lrp_instances stream with the real client.
type subscriber struct {
	source  events.EventSource
	mu      sync.Mutex
	changed []received
	total   int
	last    time.Time
	ended   error
	closing atomic.Bool
	done    chan struct{}
}

func subscribe(client bbsclient.InternalClient, logger lager.Logger, key func(*models.ActualLRPInstanceChangedEvent) string) (*subscriber, error) {
	source, err := client.SubscribeToInstanceEvents(logger)
	if err != nil {
		return nil, err
	}
	s := &subscriber{source: source, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			event, err := source.Next()
			now := time.Now()
			if err != nil {
				if !s.closing.Load() {
					s.mu.Lock()
					s.ended = err
					s.mu.Unlock()
				}
				return
			}
			s.mu.Lock()
			s.total++
			s.last = now
			if e, ok := event.(*models.ActualLRPInstanceChangedEvent); ok {
				s.changed = append(s.changed, received{key: key(e), at: now})
			}
			s.mu.Unlock()
		}
	}()
	return s, nil
}

func (s *subscriber) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.changed)
}

// close ends the stream (again: harmless) and waits for its reader.
func (s *subscriber) close() {
	s.closing.Store(true)
	_ = s.source.Close()
	<-s.done
}

// fanOutStats sums up what subscribers got of the changes sent.
type fanOutStats struct {
	minRate, maxRate float64
	lags             []time.Duration
	drops, cut       int
}

// summarize matches each subscriber's changed events to sentAt (change key
// → when the change was made) and counts the rest as dropped.
func summarize(subs []*subscriber, sentAt func(key string) (time.Time, bool), sent int, start time.Time) fanOutStats {
	st := fanOutStats{minRate: -1}
	for _, s := range subs {
		s.mu.Lock()
		matched := map[string]bool{}
		for _, r := range s.changed {
			at, ok := sentAt(r.key)
			if !ok || matched[r.key] {
				continue
			}
			matched[r.key] = true
			st.lags = append(st.lags, max(r.at.Sub(at), 0))
		}
		st.drops += sent - len(matched)
		rate := 0.0
		if d := s.last.Sub(start); d > 0 {
			rate = float64(s.total) / d.Seconds()
		}
		if st.minRate < 0 || rate < st.minRate {
			st.minRate = rate
		}
		st.maxRate = max(st.maxRate, rate)
		if s.ended != nil {
			st.cut++
		}
		s.mu.Unlock()
	}
	return st
}

// waitDelivered waits until every subscriber has want changed events, or
// eventGrace after the last change.
func waitDelivered(ctx context.Context, subs []*subscriber, want int) {
	deadline := time.Now().Add(eventGrace)
	for time.Now().Before(deadline) {
		all := true
		for _, s := range subs {
			if s.count() < want {
				all = false
			}
		}
		if all || sleep(ctx, 50*time.Millisecond) != nil {
			return
		}
	}
}

// eventsThroughCluster subscribes -bbs-subscribers real clients to Iris's
// lrp_instances stream and makes instance changes at -bbs-event-rate
// through the API server: each raises the restart count of one running
// pod (a container crash as the kubelet reports it), which Iris's pod
// informer turns into an actual_lrp_instance_changed (and a crashed)
// event. Lag is from the moment the status patch is sent to delivery.
func (b *bbsBench) eventsThroughCluster() error {
	n := min(b.bo.guids, len(b.created))
	wanted := map[string]bool{}
	for _, c := range b.created[:n] {
		wanted[c.processGUID] = true
	}
	pods, err := b.clientset.CoreV1().Pods(b.namespace).List(b.ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return err
	}
	type target struct {
		mu          sync.Mutex
		name, guid  string
		index       string
		statuses    []corev1.ContainerStatus
		appStatus   int
		restarts    int32
		patchFailed bool
	}
	var targets []*target
	for _, p := range pods.Items {
		guid := p.Annotations[k8s.AnnotationProcessGUID]
		if !wanted[guid] || p.Status.Phase != corev1.PodRunning {
			continue
		}
		t := &target{name: p.Name, guid: guid, index: p.Labels[k8s.PodIndexLabel], statuses: p.Status.ContainerStatuses, appStatus: -1}
		for i, s := range t.statuses {
			if s.Name == k8s.AppContainerName {
				t.appStatus, t.restarts = i, s.RestartCount
			}
		}
		if t.appStatus >= 0 {
			targets = append(targets, t)
		}
	}
	if len(targets) == 0 {
		return fmt.Errorf("no running pods of the scaled LRPs")
	}

	key := func(guid, index string, crashes int32) string {
		return guid + "/" + index + "/" + strconv.Itoa(int(crashes))
	}
	var subs []*subscriber
	for i := 0; i < b.bo.subscribers; i++ {
		s, err := subscribe(b.client, b.logger, func(e *models.ActualLRPInstanceChangedEvent) string {
			crashes := int32(-1)
			if e.After != nil {
				crashes = e.After.CrashCount
			}
			return key(e.ProcessGuid, strconv.Itoa(int(e.Index)), crashes)
		})
		if err != nil {
			return err
		}
		defer s.close()
		subs = append(subs, s)
	}

	var (
		sentMu  sync.Mutex
		sentAt  = map[string]time.Time{}
		ackedAt = map[string]time.Time{}
		writes  []time.Duration
		sent    atomic.Int64
		failed  atomic.Int64
		lastErr atomic.Value
	)
	total := b.bo.eventRate * b.bo.eventSeconds
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < b.bo.setupClients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				t := targets[i%len(targets)]
				t.mu.Lock()
				t.restarts++
				statuses := append([]corev1.ContainerStatus(nil), t.statuses...)
				statuses[t.appStatus].RestartCount = t.restarts
				patch, _ := json.Marshal(map[string]any{"status": map[string]any{"containerStatuses": statuses}})
				k := key(t.guid, t.index, t.restarts)
				sending := time.Now()
				sentMu.Lock()
				sentAt[k] = sending
				sentMu.Unlock()
				_, err := b.clientset.CoreV1().Pods(b.namespace).Patch(b.ctx, t.name, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
				acked := time.Now()
				if err == nil {
					sentMu.Lock()
					ackedAt[k] = acked
					writes = append(writes, acked.Sub(sending))
					sentMu.Unlock()
				}
				if err != nil {
					t.restarts--
					failed.Add(1)
					lastErr.Store(err.Error())
					sentMu.Lock()
					delete(sentAt, k)
					sentMu.Unlock()
				} else {
					sent.Add(1)
				}
				t.mu.Unlock()
			}
		}()
	}
	start := time.Now()
	interval := time.Second / time.Duration(b.bo.eventRate)
	// Changes the API server cannot take in time are not made up for
	// later: the run lasts -bbs-event-seconds and reports the rate reached.
	duration := time.Duration(b.bo.eventSeconds) * time.Second
	for i := 0; i < total && b.ctx.Err() == nil && time.Since(start) < duration; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	driven := time.Since(start)
	reached := float64(sent.Load()) / driven.Seconds()
	// A subscriber has every change once its count of changed events
	// reaches the changes sent (Iris may add changes of its own: KWOK).
	waitDelivered(b.ctx, subs, int(sent.Load()))
	for _, s := range subs {
		s.close()
	}
	lookup := func(times map[string]time.Time) func(string) (time.Time, bool) {
		return func(k string) (time.Time, bool) {
			sentMu.Lock()
			defer sentMu.Unlock()
			at, ok := times[k]
			return at, ok
		}
	}
	st := summarize(subs, lookup(sentAt), int(sent.Load()), start)
	// The same deliveries measured from the API server's answer to the
	// write: what the watch, Iris and the stream add.
	fromAck := summarize(subs, lookup(ackedAt), int(sent.Load()), start)
	load := benchenv.LoadAverage()
	fmt.Printf("events through the cluster: asked %d changes/s for %ds over %d pods; %d sent in %s = %.0f changes/s reached (%d failed%s), status patch p50 %s p99 %s; %d subscribers: %.0f–%.0f events/s each, lag from send p50 %s p99 %s, from the API server's answer p50 %s p99 %s, %d of %d changed events missing, %d streams ended; load %s\n",
		b.bo.eventRate, b.bo.eventSeconds, len(targets), sent.Load(), driven.Round(time.Millisecond), reached, failed.Load(), errSuffix(&lastErr),
		percentile(writes, 50), percentile(writes, 99),
		len(subs), st.minRate, st.maxRate, percentile(st.lags, 50), percentile(st.lags, 99), percentile(fromAck.lags, 50), percentile(fromAck.lags, 99),
		st.drops, int(sent.Load())*len(subs), st.cut, load)
	b.results.add("events end-to-end: pod status patch → API server → Iris informer → 10 real clients",
		fmt.Sprintf("asked %d/s, reached %.0f changes/s, %d subscribers", b.bo.eventRate, reached, len(subs)),
		percentile(st.lags, 50).String(), percentile(st.lags, 99).String(),
		fmt.Sprintf("lag from send; from the API's answer p50 %s p99 %s; %.0f–%.0f events/s per subscriber; %d missing, %d cut",
			percentile(fromAck.lags, 50), percentile(fromAck.lags, 99), st.minRate, st.maxRate, st.drops, st.cut), load)
	return nil
}

func errSuffix(v *atomic.Value) string {
	if s, ok := v.Load().(string); ok {
		return ", last: " + s
	}
	return ""
}

// fanOutInProcess feeds the real event hub, behind the real BBS handler
// and server (mTLS), with synthetic instance-changed events at rate per
// second for d, to subscribers real clients, and measures delivery. The
// event's since carries its publish time, so lag is exact (one clock).
func fanOutInProcess(ctx context.Context, results *resultTable, t bbsTLS, subscribers, rate int, d time.Duration) error {
	logger := lager.NewLogger("fan-out") // no sink: the hub's logs are not wanted here
	hub := bbs.NewEventHub(logger, bbs.DefaultSubscriberBuffer)
	handler := bbs.NewHandler(logger, bbs.Backends{
		DesiredLRPs: &bbsfakes.FakeDesiredLRPs{}, ActualLRPs: &bbsfakes.FakeActualLRPs{}, Domains: &bbsfakes.FakeDomains{},
	}, hub, 1<<20)
	addr := freeAddr()
	server, err := bbs.NewServer(logger, config.BBS{TLSListenAddress: addr, TLSCertFile: t.serverCert, TLSKeyFile: t.serverKey, ClientCAFile: t.clientCA}, handler, hub, 5*time.Second)
	if err != nil {
		return err
	}
	process := ifrit.Invoke(server)
	defer func() {
		process.Signal(os.Interrupt)
		<-process.Wait()
	}()
	client, err := t.client("https://" + addr)
	if err != nil {
		return err
	}
	var subs []*subscriber
	for i := 0; i < subscribers; i++ {
		s, err := subscribe(client, logger, func(e *models.ActualLRPInstanceChangedEvent) string {
			return strconv.FormatInt(e.After.Since, 10) + "/" + strconv.Itoa(int(e.After.CrashCount))
		})
		if err != nil {
			return err
		}
		defer s.close()
		subs = append(subs, s)
	}
	for hub.Subscribers() < subscribers {
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}

	total := int(d.Seconds() * float64(rate))
	sentAt := make(map[string]time.Time, total)
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := 0; i < total && ctx.Err() == nil; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		now := time.Now()
		guid := "bench-" + strconv.Itoa(i%1000)
		before := &models.ActualLRP{ActualLRPKey: models.NewActualLRPKey(guid, 0, domain), State: models.ActualLRPStateRunning}
		after := *before
		after.Since, after.CrashCount = now.UnixNano(), int32(i)
		sentAt[strconv.FormatInt(after.Since, 10)+"/"+strconv.Itoa(i)] = now
		hub.Publish(models.NewActualLRPInstanceChangedEvent(before, &after, ""))
	}
	published := len(sentAt)
	driven := time.Since(start)
	waitDelivered(ctx, subs, published)
	for _, s := range subs {
		s.close()
	}
	st := summarize(subs, func(k string) (time.Time, bool) { at, ok := sentAt[k]; return at, ok }, published, start)
	load := benchenv.LoadAverage()
	fmt.Printf("in-process fan-out: %d events at %.0f/s (asked %d/s) to %d subscribers: %.0f–%.0f events/s each, lag p50 %s p99 %s, %d of %d missing, %d streams cut; load %s\n",
		published, float64(published)/driven.Seconds(), rate, len(subs), st.minRate, st.maxRate, percentile(st.lags, 50), percentile(st.lags, 99), st.drops, published*len(subs), st.cut, load)
	results.add("events in-process: real hub + handler + mTLS server → 10 real clients (synthetic)",
		fmt.Sprintf("%d/s for %s, %d subscribers", rate, d, len(subs)),
		percentile(st.lags, 50).String(), percentile(st.lags, 99).String(),
		fmt.Sprintf("%.0f–%.0f events/s per subscriber; %d missing, %d cut", st.minRate, st.maxRate, st.drops, st.cut), load)
	return nil
}
