package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/internal/benchenv"
	"github.com/iris-cf/iris/k8s"
)

// scaleOptions are the -scale mode's own flags.
type scaleOptions struct {
	// sizes are the LRP totals Iris is measured at, ascending.
	sizes []int
	// instances LRPs are scaled to one instance (KWOK pods) after the
	// first size is measured, and it is measured again: the difference is
	// the cost of an instance. They stay for the larger sizes.
	instances int
	// writers are the concurrent client-go writers that fill the cluster.
	writers      int
	quietSeconds int
	// fillTimeout ends a fill that takes longer; the size reached is
	// measured instead, as the largest.
	fillTimeout time.Duration
	// gcWait bounds the wait for a GC after start-up (an idle Go process
	// is forced to GC every 2 minutes), so the live heap is what the
	// caches hold, without the start-up's garbage.
	gcWait time.Duration
	// createPods: the cluster runs no StatefulSet controller (scripts/bench/run's
	// bench cluster), so scaling to one instance also creates each pod as
	// the controller would. Without the controller the fill makes two API
	// writes per LRP instead of four (no ControllerRevision, no status
	// update), and Iris reads neither.
	createPods bool
}

// sizeRow is Iris, started fresh, with lrps LRPs and pods instances in
// the cluster.
type sizeRow struct {
	lrps, pods     int
	fillRate       string // LRPs/s of the fill before this size, if any
	pinged, listed time.Duration
	memory         irisMemory
	peakRSS        string
	load           string
	at             time.Time // when the load was read
}

// runScale fills the local cluster with the objects a BBS desire makes, at
// each of -scale's sizes, and starts Iris fresh at each: time from process
// start to serving (BBS ping: informers synced; then the first complete
// scheduling-infos list), its live heap and RSS, and the slope between
// sizes. At the largest size it then counts the API-server requests Iris
// makes while nothing changes. Use a cluster of your own: the fill writes
// two objects per LRP as fast as the API server takes them.
func runScale(ctx context.Context, o options, restConfig *rest.Config, kubeconfig string) error {
	so := o.scale
	// Many writers with a rate limit far above what the API server takes,
	// in protobuf (the API server's encoding and decoding is the bound).
	setupConfig := rest.CopyConfig(restConfig)
	setupConfig.QPS, setupConfig.Burst = 10000, 20000
	setupConfig.ContentType = runtime.ContentTypeProtobuf
	setupConfig.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	clientset, err := kubernetes.NewForConfig(setupConfig)
	if err != nil {
		return err
	}
	ns, err := clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "iris-bench-scale-"}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "iris-bench-scale")
	if err != nil {
		return err
	}
	results := &resultTable{}
	var rows []sizeRow
	defer func() {
		printSizes(rows)
		for _, r := range sizeResults(rows) {
			benchenv.EmitResult(r)
		}
		results.print()
		if o.keep {
			fmt.Printf("kept namespace %s and %s (-keep)\n", ns.Name, dir)
			return
		}
		// The run's context may be cancelled (Ctrl-C): clean up regardless.
		if err := clientset.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{}); err != nil {
			fmt.Printf("deleting namespace %s: %v\n", ns.Name, err)
		}
		reportIrisErrors(filepath.Join(dir, "iris.log"))
		_ = os.RemoveAll(dir)
	}()
	tlsFiles, err := writeBBSCerts(dir)
	if err != nil {
		return err
	}
	fmt.Printf("scale benchmark in namespace %s: sizes %v, %d writers, %d instances; load %s\n", ns.Name, so.sizes, so.writers, so.instances, benchenv.LoadAverage())
	b := &bbsBench{
		o: o, bo: bbsOptions{setupClients: so.writers, quietSeconds: so.quietSeconds}, ctx: ctx,
		clientset: clientset, logger: lager.NewLogger("bench"), namespace: ns.Name,
		builder: k8s.NewBuilder(config.Default().LRP), results: results,
		kubeconfig: kubeconfig, dir: dir, tls: tlsFiles,
	}
	for i, n := range so.sizes {
		fillRate := ""
		last := i == len(so.sizes)-1
		if missing := n - len(b.created); missing > 0 {
			start, before := time.Now(), len(b.created)
			stopped, err := b.fill(missing, so.fillTimeout)
			if err != nil {
				return fmt.Errorf("filling to %d LRPs (%d created): %w", n, len(b.created), err)
			}
			made := len(b.created) - before
			rate := float64(made) / time.Since(start).Seconds()
			fillRate = fmt.Sprintf("%.0f/s", rate)
			fmt.Printf("fill: %d LRPs (StatefulSet at 0 instances + NetworkPolicy) in %s, %.0f LRPs/s; load %s\n",
				made, time.Since(start).Round(time.Millisecond), rate, benchenv.LoadAverage())
			benchenv.EmitResult(benchenv.Result{Goal: fmt.Sprintf("bench fill to %d LRPs (StatefulSet + NetworkPolicy, %d writers)", n, so.writers),
				Value: rate, Unit: "LRPs/s", Note: fmt.Sprintf("%d LRPs in %s", made, time.Since(start).Round(time.Second))})
			if stopped {
				// Measure what was reached rather than nothing.
				fmt.Printf("fill: stopped after -scale-fill-timeout %s at %d of %d LRPs; measuring there, and no larger size\n", so.fillTimeout, len(b.created), n)
				fillRate += fmt.Sprintf(" (stopped at the %s timeout; %d asked)", so.fillTimeout, n)
				n, last = len(b.created), true
			}
		}
		withPods := i == 0 && so.instances > 0
		row, iris, err := b.measureFresh(n, last && !withPods)
		if err != nil {
			return fmt.Errorf("at %d LRPs: %w", n, err)
		}
		row.fillRate = fillRate
		rows = append(rows, row)
		if withPods {
			if err := b.scaleToOne(min(so.instances, len(b.created))); err != nil {
				return err
			}
			if row, iris, err = b.measureFresh(n, last); err != nil {
				return fmt.Errorf("at %d LRPs and %d pods: %w", n, b.pods, err)
			}
			rows = append(rows, row)
		}
		if iris != nil { // the largest size: Iris stays up for the quiet window
			err := b.steadyState()
			stopIris(iris)
			if err != nil {
				return fmt.Errorf("steady state: %w", err)
			}
		}
		if last {
			break
		}
	}
	return nil
}

// fill creates n more LRPs, or as many as it can within timeout: stopped
// says the timeout ended it. Writes cut off by the timeout may leave a
// StatefulSet without its policy, not counted in b.created; the lists
// wait for at least the counted LRPs.
func (b *bbsBench) fill(n int, timeout time.Duration) (stopped bool, err error) {
	parent := b.ctx
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	b.ctx = ctx
	err = b.createDirect(n)
	b.ctx = parent
	if err != nil && ctx.Err() == context.DeadlineExceeded && parent.Err() == nil {
		return true, nil
	}
	return false, err
}

// measureFresh starts Iris with the cluster as it is, times it to serving,
// waits for a GC after its first complete list and reads its memory. It
// stops Iris unless keep, and then returns it.
func (b *bbsBench) measureFresh(lrps int, keep bool) (sizeRow, *exec.Cmd, error) {
	row := sizeRow{lrps: lrps, pods: b.pods}
	start := time.Now()
	iris, bbsURL, opsURL, err := startBBSIris(b.ctx, b.o.irisBinary, b.kubeconfig, b.namespace, b.dir, b.tls, 20*time.Minute)
	if err != nil {
		return row, nil, err
	}
	stop := true
	defer func() {
		if stop {
			stopIris(iris)
		}
	}()
	row.pinged = time.Since(start)
	b.irisPID, b.opsURL = iris.Process.Pid, opsURL
	if b.client, err = b.tls.client(bbsURL); err != nil {
		return row, nil, err
	}
	for {
		infos, err := b.client.DesiredLRPSchedulingInfos(b.logger, "", models.DesiredLRPFilter{Domain: domain})
		if err != nil {
			return row, nil, err
		}
		if len(infos) >= lrps {
			break
		}
		if time.Since(start) > 20*time.Minute {
			return row, nil, fmt.Errorf("Iris lists %d of %d LRPs %s after start", len(infos), lrps, time.Since(start))
		}
		if err := sleep(b.ctx, 100*time.Millisecond); err != nil {
			return row, nil, err
		}
	}
	row.listed = time.Since(start)
	row.load, row.at = benchenv.LoadAverage(), time.Now()
	fmt.Printf("start-up with %d LRPs and %d pods: BBS ping %s, first complete scheduling-infos list %s after the process started; load %s\n",
		lrps, b.pods, row.pinged.Round(time.Millisecond), row.listed.Round(time.Millisecond), row.load)
	if row.memory, err = b.memoryAfterGC(); err != nil {
		return row, nil, err
	}
	row.peakRSS = peakRSS(iris.Process.Pid)
	fmt.Printf("Iris memory with %d LRPs and %d pods cached: %s, peak RSS %s; load %s\n", lrps, b.pods, row.memory, row.peakRSS, benchenv.LoadAverage())
	if !keep {
		return row, nil, nil
	}
	stop = false
	return row, iris, nil
}

// memoryAfterGC waits until Iris completes a GC after the start-up's
// garbage (or gcWait passes), then reads its memory: go_gc_heap_live_bytes is
// what the last GC kept.
func (b *bbsBench) memoryAfterGC() (irisMemory, error) {
	gcs := func() (float64, error) {
		m, err := scrape(b.opsURL + "/metrics")
		return m["go_gc_duration_seconds_count"], err
	}
	// A GC marking while the list ran counts its garbage as live: let it
	// end first, then wait for the next one.
	if err := sleep(b.ctx, 3*time.Second); err != nil {
		return irisMemory{}, err
	}
	before, err := gcs()
	if err != nil {
		return irisMemory{}, err
	}
	deadline := time.Now().Add(b.o.scale.gcWait)
	for {
		n, err := gcs()
		if err != nil {
			return irisMemory{}, err
		}
		if n > before {
			break
		}
		if time.Now().After(deadline) {
			fmt.Printf("no GC within %s of the list (%.0f GCs so far): reading the last one's live heap\n", b.o.scale.gcWait, n)
			break
		}
		if err := sleep(b.ctx, time.Second); err != nil {
			return irisMemory{}, err
		}
	}
	return b.memory()
}

// scaleToOne scales the first n created LRPs to one instance and waits
// until KWOK runs all their pods.
func (b *bbsBench) scaleToOne(n int) error {
	start := time.Now()
	scale := []byte(`{"spec":{"replicas":1}}`)
	if err := parallel(b.bo.setupClients, n, func(i int) error {
		sts, err := b.clientset.AppsV1().StatefulSets(b.namespace).Patch(b.ctx, b.created[i].statefulSet, types.MergePatchType, scale, metav1.PatchOptions{})
		if err != nil || !b.o.scale.createPods {
			return err
		}
		_, err = b.clientset.CoreV1().Pods(b.namespace).Create(b.ctx, controllerPod(sts, 0), metav1.CreateOptions{})
		return err
	}); err != nil {
		return fmt.Errorf("scaling %d LRPs to one instance: %w", n, err)
	}
	if err := waitRunning(b.ctx, b.clientset, b.namespace, n, 15*time.Minute); err != nil {
		return err
	}
	b.pods = n
	fmt.Printf("fill: %d LRPs scaled to 1 instance, all pods Running after %s; load %s\n", n, time.Since(start).Round(time.Millisecond), benchenv.LoadAverage())
	return nil
}

// sizeResults are the rows as result lines for scripts/bench/table:
// start-up, heap and RSS at each size, and the slopes per LRP and per
// instance against the targets (4 KiB and 2 KiB of heap).
func sizeResults(rows []sizeRow) []benchenv.Result {
	var out []benchenv.Result
	for i, r := range rows {
		at := fmt.Sprintf("%d LRPs, %d pods (KWOK cluster)", r.lrps, r.pods)
		note := "fill " + r.fillRate
		if r.fillRate == "" {
			note = ""
		}
		out = append(out,
			benchenv.Result{Goal: "start-up: process start to serving (BBS ping, informers synced), " + at, Value: r.pinged.Seconds(), Unit: "s", Note: note, Load: r.load, Time: r.at},
			benchenv.Result{Goal: "start-up: process start to first complete scheduling-infos list, " + at, Value: r.listed.Seconds(), Unit: "s", Load: r.load, Time: r.at},
			benchenv.Result{Goal: "memory: Iris live heap, " + at, Value: r.memory.liveHeap / (1 << 20), Unit: "MiB", Load: r.load, Time: r.at},
			benchenv.Result{Goal: "memory: Iris RSS, " + at, Value: r.memory.rss / (1 << 20), Unit: "MiB", Note: "peak " + r.peakRSS, Load: r.load, Time: r.at})
		if i == 0 {
			continue
		}
		prev := rows[i-1]
		switch {
		case r.lrps > prev.lrps && r.pods == prev.pods:
			n := float64(r.lrps - prev.lrps)
			out = append(out, benchenv.Result{
				Goal:  fmt.Sprintf("memory: heap per cached LRP on the cluster (slope %d→%d LRPs)", prev.lrps, r.lrps),
				Value: (r.memory.liveHeap - prev.memory.liveHeap) / n, Unit: "B", Target: 4096, Compare: benchenv.AtMost,
				Note: fmt.Sprintf("RSS slope %.0f B per LRP", (r.memory.rss-prev.memory.rss)/n), Load: r.load, Time: r.at})
		case r.lrps == prev.lrps && r.pods > prev.pods:
			n := float64(r.pods - prev.pods)
			out = append(out, benchenv.Result{
				Goal:  fmt.Sprintf("memory: heap per cached instance on the cluster (slope %d→%d KWOK pods)", prev.pods, r.pods),
				Value: (r.memory.liveHeap - prev.memory.liveHeap) / n, Unit: "B", Target: 2048, Compare: benchenv.AtMost,
				Note: fmt.Sprintf("RSS slope %.0f B per instance; the live-heap gauge is noisy at this size", (r.memory.rss-prev.memory.rss)/n), Load: r.load, Time: r.at})
		}
	}
	return out
}

// controllerPod is instance index of sts as the StatefulSet controller
// creates it: the template with the pod's name, index and revision labels,
// its hostname and subdomain, owned by the StatefulSet.
func controllerPod(sts *appsv1.StatefulSet, index int) *corev1.Pod {
	name := fmt.Sprintf("%s-%d", sts.Name, index)
	pod := &corev1.Pod{
		ObjectMeta: *sts.Spec.Template.ObjectMeta.DeepCopy(),
		Spec:       *sts.Spec.Template.Spec.DeepCopy(),
	}
	pod.Name, pod.Namespace, pod.GenerateName = name, sts.Namespace, ""
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[appsv1.StatefulSetPodNameLabel] = name
	pod.Labels[appsv1.PodIndexLabel] = strconv.Itoa(index)
	pod.Labels[appsv1.ControllerRevisionHashLabelKey] = sts.Name + "-bench"
	pod.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(sts, appsv1.SchemeGroupVersion.WithKind("StatefulSet"))}
	pod.Spec.Hostname, pod.Spec.Subdomain = name, sts.Spec.ServiceName
	return pod
}

// printSizes prints one row per measurement, the slope per LRP between
// consecutive sizes (with the same pods), and the cost per instance.
func printSizes(rows []sizeRow) {
	if len(rows) == 0 {
		return
	}
	mib := func(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }
	table := [][]string{{"LRPs", "pods", "fill", "start to ping", "start to full list", "live heap", "RSS", "peak RSS", "slope from previous", "load 1/5/15 min"}}
	var prev *sizeRow
	for i := range rows {
		r := &rows[i]
		slope := ""
		switch {
		case prev != nil && r.lrps > prev.lrps && r.pods == prev.pods:
			n := float64(r.lrps - prev.lrps)
			slope = fmt.Sprintf("%.0f B heap, %.0f B RSS per LRP", (r.memory.liveHeap-prev.memory.liveHeap)/n, (r.memory.rss-prev.memory.rss)/n)
		case prev != nil && r.lrps == prev.lrps && r.pods > prev.pods:
			n := float64(r.pods - prev.pods)
			slope = fmt.Sprintf("%.0f B heap, %.0f B RSS per instance", (r.memory.liveHeap-prev.memory.liveHeap)/n, (r.memory.rss-prev.memory.rss)/n)
		}
		table = append(table, []string{strconv.Itoa(r.lrps), strconv.Itoa(r.pods), r.fillRate,
			r.pinged.Round(100 * time.Millisecond).String(), r.listed.Round(100 * time.Millisecond).String(),
			mib(r.memory.liveHeap), mib(r.memory.rss), r.peakRSS, slope, r.load})
		prev = r
	}
	width := make([]int, len(table[0]))
	for _, r := range table {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	fmt.Println()
	for _, r := range table {
		var s strings.Builder
		for i, c := range r {
			fmt.Fprintf(&s, "| %-*s ", width[i], c)
		}
		fmt.Println(s.String() + "|")
	}
}
