package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bbsclient "code.cloudfoundry.org/bbs"
	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	"github.com/google/uuid"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	bbsk8s "github.com/iris-cf/iris/backends/kubernetes"
	"github.com/iris-cf/iris/bifrost/bbs/bbstest"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/integration/testcerts"
	"github.com/iris-cf/iris/internal/benchenv"
	"github.com/iris-cf/iris/k8s"
)

// bbsOptions are the -bbs mode's own flags.
type bbsOptions struct {
	// listCounts are the LRP totals the scheduling-infos list is timed at,
	// ascending; the issue's figures are 10,000 and 100,000.
	listCounts   []int
	desires      int
	guids        int
	subscribers  int
	eventRate    int
	eventSeconds int
	// inProcessRates are the synthetic event rates fed to the in-process hub.
	inProcessRates []int
	setupClients   int
	// restart times a start with every LRP in place, then counts Iris's
	// API-server requests over quietSeconds.
	restart      bool
	quietSeconds int
}

// domain is CC's LRP domain; CC lists scheduling infos filtered by it.
const domain = "cf-apps"

// runBBS is the BBS front benchmark: a real Iris serving the BBS API over
// mTLS, driven by the real BBS Go client, against the local cluster. See
// the README's benchmark section for what each figure means.
func runBBS(ctx context.Context, o options, restConfig *rest.Config, kubeconfig string) (err error) {
	bo := o.bbs
	// Setup writes tens of thousands of objects: a client of its own with
	// a high rate limit (the API server's in-flight limit still applies).
	setupConfig := rest.CopyConfig(restConfig)
	setupConfig.QPS, setupConfig.Burst = 2000, 4000
	clientset, err := kubernetes.NewForConfig(setupConfig)
	if err != nil {
		return err
	}
	results := &resultTable{}
	defer results.print()

	ns, err := clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "iris-bench-bbs-"}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	namespace := ns.Name
	dir, err := os.MkdirTemp("", "iris-bench-bbs")
	if err != nil {
		return err
	}
	if !o.keep {
		defer func() {
			// The run's context may be cancelled (Ctrl-C): clean up regardless.
			if err := clientset.CoreV1().Namespaces().Delete(context.Background(), namespace, metav1.DeleteOptions{}); err != nil {
				fmt.Printf("deleting namespace %s: %v\n", namespace, err)
			} else {
				fmt.Printf("namespace %s deleted (the API server removes its objects in the background)\n", namespace)
			}
			reportIrisErrors(filepath.Join(dir, "iris.log"))
			_ = os.RemoveAll(dir)
		}()
	} else {
		defer fmt.Printf("kept namespace %s and %s (-keep)\n", namespace, dir)
	}
	fmt.Printf("BBS benchmark in namespace %s; load %s\n", namespace, benchenv.LoadAverage())

	tlsFiles, err := writeBBSCerts(dir)
	if err != nil {
		return err
	}
	iris, bbsURL, opsURL, err := startBBSIris(ctx, o.irisBinary, kubeconfig, namespace, dir, tlsFiles, time.Minute)
	if err != nil {
		return err
	}
	defer func() {
		_ = iris.Process.Signal(syscall.SIGTERM)
		_ = iris.Wait()
	}()
	client, err := tlsFiles.client(bbsURL)
	if err != nil {
		return err
	}
	logger := lager.NewLogger("bench")

	b := &bbsBench{
		o: o, bo: bo, ctx: ctx, clientset: clientset, client: client, logger: logger,
		namespace: namespace, builder: k8s.NewBuilder(config.Default().LRP), results: results,
		irisPID: iris.Process.Pid, opsURL: opsURL, kubeconfig: kubeconfig, dir: dir, tls: tlsFiles,
	}
	if err := b.memoryAt(0); err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	if err := b.desireOverhead(); err != nil {
		return fmt.Errorf("desire overhead: %w", err)
	}
	for _, n := range bo.listCounts {
		if err := b.schedulingInfos(n); err != nil {
			return fmt.Errorf("scheduling infos at %d: %w", n, err)
		}
		if err := b.memoryAt(b.desired + len(b.created)); err != nil {
			return fmt.Errorf("memory: %w", err)
		}
	}
	before, err := b.memory()
	if err != nil {
		return err
	}
	if err := b.actualByProcessGuids(); err != nil {
		return fmt.Errorf("actual lrps by process guids: %w", err)
	}
	if after, err := b.memory(); err == nil && b.pods > 0 {
		b.results.add("Iris memory per cached instance (KWOK pods)", strconv.Itoa(b.pods)+" pods", "", "",
			fmt.Sprintf("%s; %.0f B heap, %.0f B RSS per instance", after, (after.liveHeap-before.liveHeap)/float64(b.pods), (after.rss-before.rss)/float64(b.pods)), benchenv.LoadAverage())
	}
	if bo.restart {
		if err := b.restart(&iris); err != nil {
			return fmt.Errorf("restart: %w", err)
		}
	}
	if bo.eventSeconds == 0 {
		return nil // -bbs-event-seconds 0: no event benchmarks
	}
	if err := b.eventsThroughCluster(); err != nil {
		return fmt.Errorf("events through the cluster: %w", err)
	}
	for _, rate := range bo.inProcessRates {
		if err := fanOutInProcess(ctx, results, tlsFiles, bo.subscribers, rate, time.Duration(bo.eventSeconds)*time.Second); err != nil {
			return fmt.Errorf("in-process fan-out at %d/s: %w", rate, err)
		}
	}
	return nil
}

type createdLRP struct{ processGUID, statefulSet string }

type bbsBench struct {
	o         options
	bo        bbsOptions
	ctx       context.Context
	clientset kubernetes.Interface
	client    bbsclient.InternalClient
	logger    lager.Logger
	namespace string
	builder   *k8s.Builder
	results   *resultTable
	irisPID   int
	// opsURL is Iris's ops endpoint (metrics: live heap, RSS, API requests).
	opsURL     string
	kubeconfig string
	dir        string
	tls        bbsTLS
	// lastMemory is Iris's memory at lastMemoryLRPs, for the slope.
	lastMemory     irisMemory
	lastMemoryLRPs int
	// pods is the number of instances scaled up (KWOK pods).
	pods int

	// created are the LRPs made directly (0 instances), in creation
	// order; desired counts the other BBS LRPs in the namespace.
	created []createdLRP
	desired int
}

// desireOverhead times desire.r2 through Iris against the same writes made
// straight to the API server. Both run interleaved on the same workers
// (even items the baseline, odd ones Iris), so that both see the same
// load; every item is a fresh LRP.
func (b *bbsBench) desireOverhead() error {
	n, clients := b.bo.desires, b.o.clients
	var (
		mu              sync.Mutex
		direct, viaIris []time.Duration
		failures        []string
		wg              sync.WaitGroup
	)
	order, err := watchCreationOrder(b.ctx, b.clientset, b.namespace)
	if err != nil {
		return err
	}
	viaIrisNames := map[string]bool{}
	work := make(chan int)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				lrp := benchLRP(i, int32(b.o.instances))
				if i%2 == 1 {
					mu.Lock()
					viaIrisNames[k8s.StatefulSetName("bench", "bench", lrp.ProcessGuid)] = true
					mu.Unlock()
				}
				var d time.Duration
				var err error
				if i%2 == 0 {
					d, err = b.bareWrites(lrp)
				} else {
					start := time.Now()
					err = b.client.DesireLRP(b.logger, "", lrp)
					d = time.Since(start)
				}
				mu.Lock()
				switch {
				case err != nil:
					failures = append(failures, err.Error())
				case i%2 == 0:
					direct = append(direct, d)
				default:
					viaIris = append(viaIris, d)
				}
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	for i := 0; i < 2*n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	b.desired += 2 * n
	if b.o.instances > 0 {
		// KWOK starts the pods within seconds; give them time to exist.
		deadline := time.Now().Add(2 * time.Minute)
		for {
			order.mu.Lock()
			seen := len(order.pods)
			order.mu.Unlock()
			if seen >= 2*n*b.o.instances || time.Now().After(deadline) {
				break
			}
			if err := sleep(b.ctx, time.Second); err != nil {
				return err
			}
		}
	}
	pods, early := order.check(viaIrisNames)
	b.results.add("egress policy before instances (desire.r2 through Iris; watch revisions)", fmt.Sprintf("%d pods", pods), "", "",
		fmt.Sprintf("%d pods created before their NetworkPolicy", early), benchenv.LoadAverage())
	fmt.Printf("order: of %d pods of LRPs desired through Iris, %d were created before their NetworkPolicy\n", pods, early)
	benchenv.EmitResult(benchenv.Result{Goal: "desire: pods created before their egress NetworkPolicy (watch revisions)", Value: float64(early), Unit: "pods",
		Compare: benchenv.AtMost, Note: fmt.Sprintf("of %d pods", pods)})
	load := benchenv.LoadAverage()
	fmt.Printf("desire.r2: %d through Iris and %d bare, %d clients, %d instances each, in %s; %d failed; load %s\n",
		len(viaIris), len(direct), clients, b.o.instances, time.Since(start).Round(time.Millisecond), len(failures), load)
	if len(failures) > 0 {
		fmt.Printf("  first failure: %s\n", failures[0])
	}
	size := fmt.Sprintf("%d each, %d clients", n, clients)
	b.results.add("bare writes (client-go SSA: NetworkPolicy, StatefulSet, NetworkPolicy owner)", size,
		percentile(direct, 50).String(), percentile(direct, 99).String(), "", load)
	ratio := func(p int) string {
		if percentile(direct, p) == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f", float64(percentile(viaIris, p))/float64(percentile(direct, p)))
	}
	b.results.add("desire.r2 through Iris (real client, mTLS)", size,
		percentile(viaIris, 50).String(), percentile(viaIris, 99).String(),
		fmt.Sprintf("ratio to bare p50 %s p99 %s; %d failed", ratio(50), ratio(99), len(failures)), load)
	for _, p := range []int{50, 99} {
		if bare := percentile(direct, p); bare > 0 {
			benchenv.EmitResult(benchenv.Result{Goal: fmt.Sprintf("desire: desire.r2 through Iris over the bare writes, p%d latency ratio (egress policies on)", p),
				Value: float64(percentile(viaIris, p)) / float64(bare), Unit: "×", Target: 1.2, Compare: benchenv.AtMost,
				Note: fmt.Sprintf("%s vs %s; %s; %d failed", percentile(viaIris, p).Round(time.Millisecond), bare.Round(time.Millisecond), size, len(failures)), Load: load})
		}
	}
	return nil
}

// bareWrites makes, with client-go, the writes Iris's LRP client makes for
// a new LRP (k8s.LRPClient.Desire): the registry Secret if any, the egress
// NetworkPolicy, the StatefulSet, then the policy (and Secret) again owned
// by the StatefulSet, and the PDB past one instance, all by server-side
// apply. Building the objects is not timed; Iris's cache lookup and the
// GET it makes for a process guid not yet cached are Iris's overhead.
func (b *bbsBench) bareWrites(lrp *models.DesiredLRP) (time.Duration, error) {
	w, err := bbsk8s.DesiredWorkload(lrp, bbsk8s.TranslateOptions{})
	if err != nil {
		return 0, err
	}
	objects, err := b.builder.Build(w, b.namespace)
	if err != nil {
		return 0, err
	}
	ctx := b.ctx
	start := time.Now()
	if objects.RegistrySecret != nil {
		if _, err := k8s.Apply(ctx, b.clientset, objects.RegistrySecret); err != nil {
			return 0, err
		}
	}
	if objects.EgressPolicy != nil {
		if _, err := k8s.Apply(ctx, b.clientset, objects.EgressPolicy); err != nil {
			return 0, err
		}
	}
	applied, err := k8s.Apply(ctx, b.clientset, objects.StatefulSet)
	if err != nil {
		return 0, err
	}
	sts := applied.(*appsv1.StatefulSet)
	owned, err := b.builder.OwnedObjects(sts)
	if err != nil {
		return 0, err
	}
	if owned.EgressPolicy != nil {
		if _, err := k8s.Apply(ctx, b.clientset, owned.EgressPolicy); err != nil {
			return 0, err
		}
	}
	if objects.RegistrySecret != nil {
		secret := k8s.OwnedSecret(objects.RegistrySecret.DeepCopy(), sts)
		if _, err := k8s.Apply(ctx, b.clientset, secret); err != nil {
			return 0, err
		}
	}
	if owned.PodDisruptionBudget != nil {
		if _, err := k8s.Apply(ctx, b.clientset, owned.PodDisruptionBudget); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// schedulingInfos brings the directly created LRPs up to total, waits
// until Iris lists them all, then times CC's sync list.
func (b *bbsBench) schedulingInfos(total int) error {
	if missing := total - len(b.created); missing > 0 {
		start := time.Now()
		if err := b.createDirect(missing); err != nil {
			return err
		}
		fmt.Printf("setup: created %d StatefulSets (0 instances) and their NetworkPolicies straight through client-go in %s (%.0f LRPs/s); load %s\n",
			missing, time.Since(start).Round(time.Millisecond), float64(missing)/time.Since(start).Seconds(), benchenv.LoadAverage())
	}
	want := b.desired + len(b.created)
	start := time.Now()
	for {
		infos, err := b.client.DesiredLRPSchedulingInfos(b.logger, "", models.DesiredLRPFilter{Domain: domain})
		if err != nil {
			return err
		}
		if len(infos) >= want {
			break
		}
		if time.Since(start) > 15*time.Minute {
			return fmt.Errorf("Iris lists %d of %d LRPs after %s", len(infos), want, time.Since(start))
		}
		if err := sleep(b.ctx, 2*time.Second); err != nil {
			return err
		}
	}
	fmt.Printf("setup: Iris listed all %d LRPs %s after the last create\n", want, time.Since(start).Round(time.Millisecond))

	var lat []time.Duration
	var bytes int
	cpu := b.startCPU()
	for i := 0; i < b.o.listRounds; i++ {
		start := time.Now()
		infos, err := b.client.DesiredLRPSchedulingInfos(b.logger, "", models.DesiredLRPFilter{Domain: domain})
		if err != nil {
			return err
		}
		lat = append(lat, time.Since(start))
		if len(infos) < want {
			return fmt.Errorf("list %d answered %d of %d LRPs", i, len(infos), want)
		}
		if i == 0 {
			bytes = (&models.DesiredLRPSchedulingInfosResponse{DesiredLrpSchedulingInfos: infos}).Size()
		}
	}
	irisCPU, clientCPU := cpu.perRequest(len(lat))
	load := benchenv.LoadAverage()
	fmt.Printf("/v1/desired_lrp_scheduling_infos/list over %d LRPs: p50 %s p99 %s (%d requests, %.1f MB each, including the client's decoding); CPU per request: Iris %s, client %s; load %s\n",
		want, percentile(lat, 50), percentile(lat, 99), len(lat), float64(bytes)/1e6, irisCPU, clientCPU, load)
	b.results.add("/v1/desired_lrp_scheduling_infos/list (domain cf-apps)", strconv.Itoa(want)+" LRPs",
		percentile(lat, 50).String(), percentile(lat, 99).String(),
		fmt.Sprintf("%d requests, %.1f MB answer; CPU per request Iris %s, client %s", len(lat), float64(bytes)/1e6, irisCPU, clientCPU), load)
	infos := benchenv.Result{Goal: fmt.Sprintf("sync (cluster): scheduling-infos list over %d LRPs, p99", want), Value: float64(percentile(lat, 99).Microseconds()) / 1000, Unit: "ms",
		Note: fmt.Sprintf("p50 %s; CPU per request Iris %s, client %s", percentile(lat, 50).Round(time.Millisecond), irisCPU, clientCPU), Load: load}
	if want >= 100000 { // the issue's size
		infos.Target, infos.Compare = 1000, benchenv.AtMost
	}
	benchenv.EmitResult(infos)
	return nil
}

// createDirect creates n LRPs' StatefulSets at 0 instances, exactly as a
// desire through Iris builds them, and the egress NetworkPolicy each owns
// (so Iris's reconciler finds nothing to repair while lists are timed).
// Plain creates: faster than server-side apply, and the same objects.
func (b *bbsBench) createDirect(n int) error {
	work := make(chan int)
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
		}
	}
	for c := 0; c < b.bo.setupClients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				lrp := benchLRP(i, 0)
				w, err := bbsk8s.DesiredWorkload(lrp, bbsk8s.TranslateOptions{})
				if err != nil {
					fail(err)
					continue
				}
				objects, err := b.builder.Build(w, b.namespace)
				if err != nil {
					fail(err)
					continue
				}
				sts, err := b.clientset.AppsV1().StatefulSets(b.namespace).Create(b.ctx, objects.StatefulSet, metav1.CreateOptions{FieldManager: k8s.FieldManager})
				if err != nil {
					fail(err)
					continue
				}
				owned, err := b.builder.OwnedObjects(sts)
				if err != nil {
					fail(err)
					continue
				}
				if owned.EgressPolicy != nil {
					if _, err := b.clientset.NetworkingV1().NetworkPolicies(b.namespace).Create(b.ctx, owned.EgressPolicy, metav1.CreateOptions{FieldManager: k8s.FieldManager}); err != nil {
						fail(err)
						continue
					}
				}
				mu.Lock()
				b.created = append(b.created, createdLRP{processGUID: lrp.ProcessGuid, statefulSet: sts.Name})
				mu.Unlock()
			}
		}()
	}
	base := len(b.created)
	for i := 0; i < n; i++ {
		mu.Lock()
		stop := firstErr != nil
		mu.Unlock()
		if stop || b.ctx.Err() != nil {
			break
		}
		work <- base + i
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return b.ctx.Err()
}

// actualByProcessGuids scales the first -bbs-guids created LRPs to one
// instance, waits until Iris reports them all RUNNING (KWOK runs the
// pods), then times the list CC's instances calls make.
func (b *bbsBench) actualByProcessGuids() error {
	n := min(b.bo.guids, len(b.created))
	guids := make([]string, n)
	for i := range guids {
		guids[i] = b.created[i].processGUID
	}
	start := time.Now()
	scale := []byte(`{"spec":{"replicas":1}}`)
	if err := parallel(b.bo.setupClients, n, func(i int) error {
		_, err := b.clientset.AppsV1().StatefulSets(b.namespace).Patch(b.ctx, b.created[i].statefulSet, types.MergePatchType, scale, metav1.PatchOptions{})
		return err
	}); err != nil {
		return err
	}
	for {
		actual, err := b.client.ActualLRPsByProcessGuids(b.logger, "", guids)
		if err != nil {
			return err
		}
		running := 0
		for _, a := range actual {
			if a.State == models.ActualLRPStateRunning {
				running++
			}
		}
		if running >= n {
			break
		}
		if time.Since(start) > 15*time.Minute {
			return fmt.Errorf("%d of %d instances RUNNING after %s", running, n, time.Since(start))
		}
		if err := sleep(b.ctx, 2*time.Second); err != nil {
			return err
		}
	}
	b.pods = n
	fmt.Printf("setup: %d LRPs scaled to 1 instance, all RUNNING in Iris's answer after %s; load %s\n", n, time.Since(start).Round(time.Millisecond), benchenv.LoadAverage())

	var lat []time.Duration
	cpu := b.startCPU()
	for i := 0; i < b.o.listRounds; i++ {
		start := time.Now()
		actual, err := b.client.ActualLRPsByProcessGuids(b.logger, "", guids)
		if err != nil {
			return err
		}
		lat = append(lat, time.Since(start))
		if len(actual) < n {
			return fmt.Errorf("answered %d of %d instances", len(actual), n)
		}
	}
	irisCPU, clientCPU := cpu.perRequest(len(lat))
	load := benchenv.LoadAverage()
	fmt.Printf("/v1/actual_lrps/list_by_process_guids for %d guids: p50 %s p99 %s (%d requests); CPU per request: Iris %s, client %s; load %s\n",
		n, percentile(lat, 50), percentile(lat, 99), len(lat), irisCPU, clientCPU, load)
	b.results.add("/v1/actual_lrps/list_by_process_guids", fmt.Sprintf("%d guids, %d pods, of %d LRPs", n, n, b.desired+len(b.created)),
		percentile(lat, 50).String(), percentile(lat, 99).String(), fmt.Sprintf("%d requests; CPU per request Iris %s, client %s", len(lat), irisCPU, clientCPU), load)
	benchenv.EmitResult(benchenv.Result{Goal: fmt.Sprintf("sync (cluster): actual LRPs of %d guids, p99", n), Value: float64(percentile(lat, 99).Microseconds()) / 1000, Unit: "ms",
		Target: 100, Compare: benchenv.AtMost, Note: fmt.Sprintf("p50 %s, of %d LRPs; CPU per request Iris %s", percentile(lat, 50).Round(time.Millisecond), b.desired+len(b.created), irisCPU), Load: load})
	return nil
}

// parallel runs fn(0..n-1) on workers goroutines; the first error wins.
func parallel(workers, n int, fn func(int) error) error {
	var (
		next     atomic.Int64
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// benchLRP is LRP i as current CC desires a docker app (the shape of the
// integration suite's): docker root_fs, the launcher run action, a monitor,
// a check definition, cf-router routes, metric tags, one egress rule.
func benchLRP(i int, instances int32) *models.DesiredLRP {
	return benchLRPWithGUID(uuid.NewString()+"-"+uuid.NewString(), i, instances)
}

func benchLRPWithGUID(processGUID string, i int, instances int32) *models.DesiredLRP {
	lrp := bbstest.DockerLRP(processGUID, instances, "bench-"+strconv.Itoa(i)+".example.com",
		bbstest.Space{AppName: "bench", SpaceGUID: "bench-space-guid", SpaceName: "bench", OrgGUID: "bench-org-guid", OrgName: "bench"})
	lrp.Domain = domain
	return lrp
}

// bbsTLS are the certificate files of one run: Iris's server certificate,
// the CA it trusts for clients, and the client's side.
type bbsTLS struct {
	serverCert, serverKey, clientCA string
	serverCA, clientCert, clientKey string
}

func writeBBSCerts(dir string) (bbsTLS, error) {
	var t bbsTLS
	serverCA, err := testcerts.NewCA("iris-bench-server-ca")
	if err != nil {
		return t, err
	}
	clientCA, err := testcerts.NewCA("iris-bench-client-ca")
	if err != nil {
		return t, err
	}
	server, err := serverCA.Issue("iris.local")
	if err != nil {
		return t, err
	}
	client, err := clientCA.Issue("cloud-controller")
	if err != nil {
		return t, err
	}
	if t.serverCert, t.serverKey, err = server.WriteFiles(dir, "server"); err != nil {
		return t, err
	}
	if t.clientCert, t.clientKey, err = client.WriteFiles(dir, "client"); err != nil {
		return t, err
	}
	t.clientCA, t.serverCA = filepath.Join(dir, "client-ca.crt"), filepath.Join(dir, "server-ca.crt")
	if err := os.WriteFile(t.clientCA, clientCA.PEM, 0o600); err != nil {
		return t, err
	}
	return t, os.WriteFile(t.serverCA, serverCA.PEM, 0o600)
}

// client is the real BBS Go client as CC configures it, with a request
// timeout long enough for a 100k list on a loaded machine.
func (t bbsTLS) client(url string) (bbsclient.InternalClient, error) {
	return bbsclient.NewClientWithConfig(bbsclient.ClientConfig{
		URL: url, IsTLS: true, CAFile: t.serverCA, CertFile: t.clientCert, KeyFile: t.clientKey,
		MaxIdleConnsPerHost: 64, RequestTimeout: 5 * time.Minute,
	})
}

// startBBSIris starts Iris as main.go's benchmark does, with the API
// component only and a bbs: section (mTLS); its log goes to dir/iris.log.
// It waits up to timeout for the BBS ping (served once the caches synced).
func startBBSIris(ctx context.Context, binary, kubeconfig, namespace, dir string, t bbsTLS, timeout time.Duration) (*exec.Cmd, string, string, error) {
	apiAddr, bbsAddr, opsAddr := freeAddr(), freeAddr(), freeAddr()
	cfg := fmt.Sprintf(`components: [api]
log_level: error
kubeconfig: %q
kube_api_qps: 500
kube_api_burst: 1000
workloads_namespaces: [%q]
api:
  listen_address: %q
bbs:
  tls_listen_address: %q
  tls_cert_file: %q
  tls_key_file: %q
  client_ca_file: %q
ops:
  listen_address: %q
`, kubeconfig, namespace, apiAddr, bbsAddr, t.serverCert, t.serverKey, t.clientCA, opsAddr)
	cfgPath := filepath.Join(dir, "iris.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, "", "", err
	}
	logFile, err := os.OpenFile(filepath.Join(dir, "iris.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, "", "", err
	}
	cmd := exec.Command(binary, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, "", "", err
	}
	url := "https://" + bbsAddr
	client, err := t.client(url)
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, "", "", err
	}
	logger := lager.NewLogger("bench")
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		if processExited(cmd.Process.Pid) {
			break
		}
		if client.Ping(logger, "") {
			fmt.Printf("iris (pid %d) serves BBS at %s; its log: %s\n", cmd.Process.Pid, url, logFile.Name())
			return cmd, url, "http://" + opsAddr, nil
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			break
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return nil, "", "", fmt.Errorf("iris did not answer BBS ping (see %s)", logFile.Name())
}

// processExited says whether pid, a child not yet waited for, has exited
// (a zombie).
func processExited(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(data), ')')
	return i < 0 || strings.HasPrefix(string(data)[i+1:], " Z")
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer l.Close()
	return l.Addr().String()
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// cpuMark is the CPU time Iris and this process had used at one moment:
// CPU per request does not depend on how busy the machine is, latency
// does. This process is otherwise idle while it lists, so its share is
// the client's (decoding the answer, TLS).
type cpuMark struct {
	pid          int
	iris, client time.Duration
}

func (b *bbsBench) startCPU() cpuMark {
	return cpuMark{pid: b.irisPID, iris: processCPU(b.irisPID), client: selfCPU()}
}

// perRequest is the CPU used since the mark, divided among n requests.
func (m cpuMark) perRequest(n int) (iris, client time.Duration) {
	if n == 0 {
		return 0, 0
	}
	iris = (processCPU(m.pid) - m.iris) / time.Duration(n)
	client = (selfCPU() - m.client) / time.Duration(n)
	return iris.Round(time.Millisecond), client.Round(time.Millisecond)
}

// processCPU is the user and system time of pid (from /proc, in clock
// ticks of 10 ms).
func processCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command may contain spaces: fields count from after its ')'.
	i := strings.LastIndexByte(string(data), ')')
	fields := strings.Fields(string(data)[i+1:])
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func selfCPU() time.Duration {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}

// reportIrisErrors prints how many errors Iris logged, and the first few.
func reportIrisErrors(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	var errs []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, `"log_level":2`) || strings.Contains(line, `"log_level":3`) {
			errs = append(errs, line)
		}
	}
	fmt.Printf("iris logged %d errors\n", len(errs))
	for _, line := range errs[:min(3, len(errs))] {
		fmt.Printf("  %s\n", line[:min(300, len(line))])
	}
}

// resultTable collects one row per figure and prints them together.
type resultTable struct {
	mu   sync.Mutex
	rows [][6]string
}

func (t *resultTable) add(what, size, p50, p99, other, load string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rows = append(t.rows, [6]string{what, size, p50, p99, other, load})
}

func (t *resultTable) print() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.rows) == 0 {
		return
	}
	header := [6]string{"measurement", "size", "p50", "p99", "other", "load 1/5/15 min"}
	rows := append([][6]string{header}, t.rows...)
	var width [6]int
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	fmt.Println()
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r {
			fmt.Fprintf(&b, "| %-*s ", width[i], c)
		}
		fmt.Println(b.String() + "|")
	}
}
