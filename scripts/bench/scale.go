package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"code.cloudfoundry.org/bbs/models"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/iris-cf/iris/internal/benchenv"
)

// irisMemory is Iris's memory as its ops endpoint reports it: the heap the
// last GC kept (go_gc_heap_live_bytes) and the resident set.
type irisMemory struct{ liveHeap, rss float64 }

func (m irisMemory) String() string {
	return fmt.Sprintf("live heap %.1f MiB, RSS %.1f MiB", m.liveHeap/(1<<20), m.rss/(1<<20))
}

// scrape reads the named metrics (summing over labels) from a Prometheus
// text endpoint; labelled series are also returned by their full name.
func scrape(url string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %d", url, resp.StatusCode)
	}
	values := map[string]float64{}
	scanner := bufio.NewScanner(resp.Body)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		line := scanner.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		series := line[:i]
		values[series] += v
		if j := strings.IndexByte(series, '{'); j >= 0 {
			values[series[:j]] += v
		}
	}
	return values, scanner.Err()
}

func (b *bbsBench) memory() (irisMemory, error) {
	m, err := scrape(b.opsURL + "/metrics")
	if err != nil {
		return irisMemory{}, err
	}
	return irisMemory{liveHeap: m["go_gc_heap_live_bytes"], rss: m["process_resident_memory_bytes"]}, nil
}

// memoryAt records Iris's memory with total LRPs cached, and the slope
// from the previous point: the cost of one more cached LRP.
func (b *bbsBench) memoryAt(total int) error {
	m, err := b.memory()
	if err != nil {
		return err
	}
	other := ""
	if b.lastMemoryLRPs > 0 && total > b.lastMemoryLRPs {
		n := float64(total - b.lastMemoryLRPs)
		other = fmt.Sprintf("slope from %d LRPs: %.0f B heap, %.0f B RSS per LRP", b.lastMemoryLRPs,
			(m.liveHeap-b.lastMemory.liveHeap)/n, (m.rss-b.lastMemory.rss)/n)
	}
	b.results.add("Iris memory (KWOK cluster, 0 instances)", strconv.Itoa(total)+" LRPs", "", "", m.String()+"; "+other, benchenv.LoadAverage())
	fmt.Printf("Iris memory with %d LRPs cached: %s %s\n", total, m, other)
	b.lastMemory, b.lastMemoryLRPs = m, total
	return nil
}

// restart stops Iris and starts it again with every LRP in the cluster,
// timing start-up (process start to BBS ping, and to the first complete
// scheduling-infos list), then counts the API-server requests Iris makes
// while nothing changes.
func (b *bbsBench) restart(iris **exec.Cmd) error {
	_ = (*iris).Process.Signal(syscall.SIGTERM)
	_ = (*iris).Wait()
	want := b.desired + len(b.created)
	start := time.Now()
	cmd, bbsURL, opsURL, err := startBBSIris(b.ctx, b.o.irisBinary, b.kubeconfig, b.namespace, b.dir, b.tls, 10*time.Minute)
	if err != nil {
		return err
	}
	*iris = cmd
	pinged := time.Since(start)
	b.irisPID, b.opsURL = cmd.Process.Pid, opsURL
	if b.client, err = b.tls.client(bbsURL); err != nil {
		return err
	}
	for {
		infos, err := b.client.DesiredLRPSchedulingInfos(b.logger, "", models.DesiredLRPFilter{Domain: domain})
		if err != nil {
			return err
		}
		if len(infos) >= want {
			break
		}
		if time.Since(start) > 10*time.Minute {
			return fmt.Errorf("Iris lists %d of %d LRPs %s after start", len(infos), want, time.Since(start))
		}
		if err := sleep(b.ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	listed := time.Since(start)
	load := benchenv.LoadAverage()
	fmt.Printf("start-up with %d LRPs and %d pods: BBS ping %s, first complete scheduling-infos list %s after the process started; load %s\n",
		want, b.pods, pinged.Round(time.Millisecond), listed.Round(time.Millisecond), load)
	b.results.add("start-up: process start to serving (informers synced)", fmt.Sprintf("%d LRPs, %d pods", want, b.pods),
		"", "", fmt.Sprintf("BBS ping after %s; first complete list (decodes every LRP) after %s", pinged.Round(time.Millisecond), listed.Round(time.Millisecond)), load)
	return b.steadyState()
}

// steadyState counts Iris's API-server requests over a quiet window after
// start-up: reads come from the caches, so only the watches (opened at
// start, re-opened every 5–10 minutes by client-go) should be there.
func (b *bbsBench) steadyState() error {
	if err := sleep(b.ctx, 5*time.Second); err != nil {
		return err
	}
	before, err := scrape(b.opsURL + "/metrics")
	if err != nil {
		return err
	}
	window := time.Duration(b.bo.quietSeconds) * time.Second
	if err := sleep(b.ctx, window); err != nil {
		return err
	}
	after, err := scrape(b.opsURL + "/metrics")
	if err != nil {
		return err
	}
	var lines []string
	var other, watches float64
	for series, v := range after {
		if !strings.HasPrefix(series, "iris_kube_api_requests_total{") {
			continue
		}
		d := v - before[series]
		if d == 0 {
			continue
		}
		lines = append(lines, fmt.Sprintf("%s %.0f", strings.TrimPrefix(series, "iris_kube_api_requests_total"), d))
		if strings.Contains(series, `verb="watch"`) {
			watches += d
		} else {
			other += d
		}
	}
	sort.Strings(lines)
	load := benchenv.LoadAverage()
	fmt.Printf("steady state, %s with nothing changing: %.0f requests other than watches (%.3f/s), %.0f watches re-opened; %s; load %s\n",
		window, other, other/window.Seconds(), watches, strings.Join(lines, ", "), load)
	b.results.add("steady state: API-server requests Iris makes (iris_kube_api_requests_total)", fmt.Sprintf("%s quiet", window),
		"", "", fmt.Sprintf("%.3f/s besides watches (%.0f in the window); %.0f watches re-opened", other/window.Seconds(), other, watches), load)
	benchenv.EmitResult(benchenv.Result{Goal: fmt.Sprintf("start-up: API-server requests/s Iris makes at steady state besides watches, %d LRPs", b.desired+len(b.created)),
		Value: other / window.Seconds(), Unit: "req/s", Compare: benchenv.AtMost,
		Note: fmt.Sprintf("%s quiet, %d pods; %.0f watches re-opened", window, b.pods, watches), Load: load})
	return nil
}

// creationOrder watches the namespace's NetworkPolicies and pods and
// records the etcd revision each was created at (the ADDED event's
// resource version: one etcd, so revisions order all objects), to prove
// that no instance started before its egress policy existed.
type creationOrder struct {
	mu       sync.Mutex
	policies map[string]int64
	pods     map[string]int64 // pod name -> revision
	stop     context.CancelFunc
	done     sync.WaitGroup
}

func watchCreationOrder(ctx context.Context, clientset kubernetes.Interface, namespace string) (*creationOrder, error) {
	ctx, cancel := context.WithCancel(ctx)
	o := &creationOrder{policies: map[string]int64{}, pods: map[string]int64{}, stop: cancel}
	policies, err := clientset.NetworkingV1().NetworkPolicies(namespace).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		cancel()
		return nil, err
	}
	pods, err := clientset.CoreV1().Pods(namespace).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		cancel()
		policies.Stop()
		return nil, err
	}
	record := func(w watch.Interface, into map[string]int64) {
		defer o.done.Done()
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.ResultChan():
				if !ok {
					return
				}
				if e.Type != watch.Added {
					continue
				}
				meta, err := apimeta.Accessor(e.Object)
				if err != nil {
					continue
				}
				rv, err := strconv.ParseInt(meta.GetResourceVersion(), 10, 64)
				if err != nil {
					continue
				}
				o.mu.Lock()
				if _, seen := into[meta.GetName()]; !seen {
					into[meta.GetName()] = rv
				}
				o.mu.Unlock()
			}
		}
	}
	o.done.Add(2)
	go record(policies, o.policies)
	go record(pods, o.pods)
	return o, nil
}

// check stops the watches and counts the pods created before their
// StatefulSet's policy (or without one), of those named in statefulSets.
func (o *creationOrder) check(statefulSets map[string]bool) (pods, early int) {
	o.stop()
	o.done.Wait()
	o.mu.Lock()
	defer o.mu.Unlock()
	for name, rv := range o.pods {
		i := strings.LastIndexByte(name, '-')
		if i < 0 || !statefulSets[name[:i]] {
			continue
		}
		pods++
		if policy, ok := o.policies[name[:i]]; !ok || policy > rv {
			early++
		}
	}
	return pods, early
}
