// Command bench measures Iris's LRP API on the local real cluster: desire
// latency and throughput, time until every pod runs, GET /apps latency at
// scale, and Iris's peak RSS. With -kill-rounds it instead kills Iris in the
// middle of desires and counts whether every LRP ends up owning exactly its
// objects (crash.go). It prints numbers; it asserts nothing.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/bifrost"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

type options struct {
	irisBinary string
	lrps       int
	clients    int
	instances  int
	listLRPs   int
	listRounds int
	keep       bool
	// crashRounds > 0 runs the kill -9 benchmark (crash.go) instead.
	crashRounds int
	// bbsMode runs the BBS front benchmark (bbs.go) instead.
	bbsMode bool
	bbs     bbsOptions
	// spacesMode runs the per-space backends benchmark (spaces.go) instead.
	spacesMode bool
	spaces     spacesOptions
	// scale (non-empty sizes) runs the memory and start-up by size
	// benchmark (sizes.go) instead.
	scale scaleOptions
}

func main() {
	var o options
	flag.StringVar(&o.irisBinary, "iris", "bin/iris", "iris binary to start")
	flag.IntVar(&o.lrps, "lrps", 1000, "LRPs to desire")
	flag.IntVar(&o.clients, "clients", 20, "concurrent desire clients")
	flag.IntVar(&o.instances, "instances", 1, "instances per LRP")
	flag.IntVar(&o.listLRPs, "list-lrps", 0, "if larger than -lrps, desire more LRPs (0 instances) up to this total and time GET /apps again")
	flag.IntVar(&o.listRounds, "list-rounds", 20, "GET /apps requests per measurement")
	flag.BoolVar(&o.keep, "keep", false, "keep the benchmark namespace afterwards")
	flag.IntVar(&o.crashRounds, "kill-rounds", 0, "instead: rounds of the kill -9 benchmark (desire -lrps, kill -9 Iris at a random moment, restart, re-desire, count owned objects)")
	flag.BoolVar(&o.bbsMode, "bbs", false, "instead: the BBS front benchmark (bbs.go): scheduling-infos list at -bbs-lrps, actual LRPs of -bbs-guids guids, desire.r2 against the bare writes, event fan-out")
	listCounts := flag.String("bbs-lrps", "10000", "comma-separated LRP totals to time the scheduling-infos list at (the issue's figures: 10000,100000)")
	flag.IntVar(&o.bbs.desires, "bbs-desires", 200, "desire.r2 requests through Iris, and as many bare-write baselines, interleaved on -clients workers")
	flag.IntVar(&o.bbs.guids, "bbs-guids", 1000, "LRPs scaled to one instance for list_by_process_guids and the end-to-end events")
	flag.IntVar(&o.bbs.subscribers, "bbs-subscribers", 10, "lrp_instances event subscribers")
	flag.IntVar(&o.bbs.eventRate, "bbs-event-rate", 1000, "instance changes per second to drive through the cluster")
	flag.IntVar(&o.bbs.eventSeconds, "bbs-event-seconds", 10, "seconds of instance changes, through the cluster and in process")
	inProcessRates := flag.String("bbs-inprocess-rates", "1000,10000", "comma-separated synthetic event rates fed to the in-process hub")
	flag.IntVar(&o.bbs.setupClients, "bbs-setup-clients", 32, "concurrent client-go writers for setup and the end-to-end changes")
	flag.BoolVar(&o.spacesMode, "spaces", false, "instead: the per-space backends benchmark (spaces.go): each call through Iris against the same call straight to the cluster's Diego BBS, and the time to migrate -spaces-lrps LRPs to Kubernetes and back")
	flag.IntVar(&o.spaces.lrps, "spaces-lrps", 1000, "LRPs of the migrated space")
	flag.IntVar(&o.spaces.instances, "spaces-instances", 0, "instances per migrated LRP (Diego's side has no cells: with instances, only the move to Kubernetes completes)")
	flag.IntVar(&o.spaces.rounds, "spaces-rounds", 300, "calls of each kind through Iris, and as many straight to Diego, alternating")
	flag.IntVar(&o.spaces.inFlight, "spaces-in-flight", 100, "bbs.diego.migration.max_in_flight")
	flag.IntVar(&o.spaces.intervalS, "spaces-interval", 1, "bbs.diego.migration.interval_seconds")
	flag.BoolVar(&o.spaces.skipMoving, "spaces-latency-only", false, "only the proxy latency, no migration")
	flag.BoolVar(&o.bbs.restart, "bbs-restart", true, "restart Iris with every LRP in the cluster: time start-up, then count its API-server requests over -bbs-quiet-seconds")
	flag.IntVar(&o.bbs.quietSeconds, "bbs-quiet-seconds", 60, "the quiet window the steady-state API-server requests are counted over")
	scaleSizes := flag.String("scale", "", "instead: fill the cluster to each of these comma-separated LRP totals (e.g. 1000,10000,50000; a cluster of your own) and start Iris fresh at each: start-up, live heap, RSS, slope per LRP; the idle API-server requests at the largest")
	flag.IntVar(&o.scale.instances, "scale-instances", 1000, "-scale: LRPs scaled to one KWOK instance after the first size, measured again (cost per instance); 0 for none")
	flag.IntVar(&o.scale.writers, "scale-writers", 64, "-scale: concurrent client-go writers filling the cluster")
	flag.IntVar(&o.scale.quietSeconds, "scale-quiet-seconds", 60, "-scale: the quiet window the idle API-server requests are counted over, at the largest size")
	flag.DurationVar(&o.scale.fillTimeout, "scale-fill-timeout", time.Hour, "-scale: longest fill before a size; past it, the size reached is measured as the largest")
	flag.BoolVar(&o.scale.createPods, "scale-create-pods", false, "-scale: the cluster runs no StatefulSet controller (scripts/bench/run's bench cluster): create each instance's pod as the controller would")
	flag.DurationVar(&o.scale.gcWait, "scale-gc-wait", 130*time.Second, "-scale: longest wait for a GC of Iris's after its first complete list before reading the live heap")
	flag.Parse()
	var err error
	if o.bbs.listCounts, err = intList(*listCounts); err != nil {
		fmt.Fprintf(os.Stderr, "bench: -bbs-lrps: %v\n", err)
		os.Exit(2)
	}
	if o.bbs.inProcessRates, err = intList(*inProcessRates); err != nil {
		fmt.Fprintf(os.Stderr, "bench: -bbs-inprocess-rates: %v\n", err)
		os.Exit(2)
	}
	if o.scale.sizes, err = intList(*scaleSizes); err != nil {
		fmt.Fprintf(os.Stderr, "bench: -scale: %v\n", err)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func run(o options) error {
	kubeconfig := os.Getenv("KUBECONFIG")
	if kubeconfig == "" {
		return fmt.Errorf("KUBECONFIG is not set: run through scripts/bench/run")
	}
	restConfig, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	restConfig.QPS, restConfig.Burst = 500, 1000
	clientset, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if o.bbsMode {
		// Ctrl-C ends the run through its context, so the namespace and
		// Iris are still cleaned up.
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runBBS(ctx, o, restConfig, kubeconfig)
	}
	if len(o.scale.sizes) > 0 {
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runScale(ctx, o, restConfig, kubeconfig)
	}
	if o.spacesMode {
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runSpaces(ctx, o, restConfig, kubeconfig)
	}
	if o.crashRounds > 0 {
		return runCrash(ctx, o, clientset, kubeconfig)
	}
	ns, err := clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "iris-bench-"}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	if !o.keep {
		defer clientset.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	}

	iris, url, err := startIris(o.irisBinary, kubeconfig, ns.Name)
	if err != nil {
		return err
	}
	defer func() {
		_ = iris.Process.Signal(syscall.SIGTERM)
		_ = iris.Wait()
	}()
	fmt.Printf("namespace %s, %d LRPs x %d instances, %d clients\n", ns.Name, o.lrps, o.instances, o.clients)

	// Overhead: what Iris adds to the API server's own create latency. Both
	// sides create the same StatefulSets (0 replicas, so no pod churn skews
	// either) with the same concurrency.
	direct := createDirect(clientset, ns.Name, o.lrps, o.clients)
	viaIris, failed := desireAll(url, o.lrps, o.clients, 0)
	fmt.Printf("baseline, StatefulSet create straight to the API server: p50 %s p99 %s\n", percentile(direct, 50), percentile(direct, 99))
	fmt.Printf("same through Iris (desire, 0 instances): p50 %s p99 %s, %d failed\n", percentile(viaIris, 50), percentile(viaIris, 99), failed)
	fmt.Printf("desire overhead (Iris - baseline): p50 %s p99 %s\n", percentile(viaIris, 50)-percentile(direct, 50), percentile(viaIris, 99)-percentile(direct, 99))
	existing := 2 * o.lrps

	start := time.Now()
	latencies, failures := desireAll(url, o.lrps, o.clients, o.instances)
	elapsed := time.Since(start)
	fmt.Printf("desire: %d ok, %d failed in %s: %.0f req/s, latency p50 %s p99 %s max %s\n",
		len(latencies), failures, elapsed.Round(time.Millisecond), float64(len(latencies))/elapsed.Seconds(),
		percentile(latencies, 50), percentile(latencies, 99), percentile(latencies, 100))

	if o.instances > 0 {
		want := o.lrps * o.instances
		if err := waitRunning(ctx, clientset, ns.Name, want, 15*time.Minute); err != nil {
			return err
		}
		fmt.Printf("all %d pods Running %s after the first desire\n", want, time.Since(start).Round(time.Millisecond))
	}
	// The direct StatefulSets carry Iris's labels and annotations, so Iris
	// lists them too.
	total := existing + o.lrps
	if err := timeList(url, total, o.listRounds); err != nil {
		return err
	}

	if o.listLRPs > total {
		extra := o.listLRPs - total
		start := time.Now()
		lat, failed := desireAll(url, extra, o.clients, 0)
		fmt.Printf("desire %d more (0 instances): %s, p99 %s, %d failed\n", extra, time.Since(start).Round(time.Millisecond), percentile(lat, 99), failed)
		if err := timeList(url, o.listLRPs, o.listRounds); err != nil {
			return err
		}
	}
	fmt.Printf("iris peak RSS: %s\n", peakRSS(iris.Process.Pid))
	return nil
}

// createDirect creates n StatefulSets exactly as Iris would build them,
// straight through client-go, and returns each create's latency.
func createDirect(clientset kubernetes.Interface, namespace string, n, clients int) []time.Duration {
	builder := k8s.NewBuilder(config.Default().LRP)
	work := make(chan int)
	var (
		mu        sync.Mutex
		latencies []time.Duration
		wg        sync.WaitGroup
	)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				body, _ := desireBody(i, 0)
				var lrp models.DesireLRPRequest
				_ = json.Unmarshal(body, &lrp)
				objects, err := builder.Build(bifrost.DesiredLRP(&lrp), namespace)
				if err != nil {
					continue
				}
				start := time.Now()
				_, err = clientset.AppsV1().StatefulSets(namespace).Create(context.Background(), objects.StatefulSet, metav1.CreateOptions{})
				d := time.Since(start)
				if err == nil {
					mu.Lock()
					latencies = append(latencies, d)
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	return latencies
}

func startIris(binary, kubeconfig, namespace string) (*exec.Cmd, string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	addr := l.Addr().String()
	l.Close()
	dir, err := os.MkdirTemp("", "iris-bench")
	if err != nil {
		return nil, "", err
	}
	cfg := fmt.Sprintf("components: [api]\nlog_level: error\nkubeconfig: %q\nkube_api_qps: 500\nkube_api_burst: 1000\nworkloads_namespaces: [%q]\napi:\n  listen_address: %q\n", kubeconfig, namespace, addr)
	cfgPath := filepath.Join(dir, "iris.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, "", err
	}
	cmd := exec.Command(binary, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	url := "http://" + addr
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(url + "/healthz"); err == nil {
			resp.Body.Close()
			return cmd, url, nil
		}
	}
	_ = cmd.Process.Kill()
	return nil, "", fmt.Errorf("iris did not become healthy")
}

func desireAll(url string, n, clients, instances int) ([]time.Duration, int) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: time.Minute}
	work := make(chan int)
	var (
		mu        sync.Mutex
		latencies []time.Duration
		failures  int
		wg        sync.WaitGroup
	)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				body, path := desireBody(i, instances)
				req, _ := http.NewRequest(http.MethodPut, url+path, bytes.NewReader(body))
				start := time.Now()
				resp, err := client.Do(req)
				d := time.Since(start)
				ok := err == nil && resp.StatusCode == http.StatusAccepted
				if resp != nil {
					resp.Body.Close()
				}
				mu.Lock()
				if ok {
					latencies = append(latencies, d)
				} else {
					failures++
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	return latencies, failures
}

func desireBody(i, instances int) ([]byte, string) {
	guid, version := uuid.NewString(), uuid.NewString()
	lrp := models.DesireLRPRequest{
		GUID: guid, Version: version, ProcessGUID: guid + "-" + version, ProcessType: "web",
		AppGUID: guid, AppName: "bench-" + strconv.Itoa(i), SpaceName: "bench", Ports: []int32{8080},
		Routes:      models.Routes{"cf-router": json.RawMessage(`[{"hostname":"bench-` + strconv.Itoa(i) + `.example.com","port":8080}]`)},
		Environment: map[string]string{"VCAP_APPLICATION": `{"application_name":"bench"}`, "MEMORY_LIMIT": "64m"},
		Instances:   ptr.To(instances), LastUpdated: "1700000000.0", HealthCheckType: "port",
		MemoryMB: 64, DiskMB: 128, CPUWeight: 1,
		Lifecycle: models.Lifecycle{DockerLifecycle: &models.DockerLifecycle{Image: "cloudfoundry/dora:latest"}},
	}
	body, _ := json.Marshal(lrp)
	return body, "/apps/" + lrp.ProcessGUID
}

func waitRunning(ctx context.Context, clientset kubernetes.Interface, ns string, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pods, err := clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			return err
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		if running >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d pods Running after %s", running, want, timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// timeList waits until GET /apps shows all n LRPs, then times rounds requests.
func timeList(url string, n, rounds int) error {
	count := func() (int, time.Duration, error) {
		start := time.Now()
		resp, err := http.Get(url + "/apps")
		if err != nil {
			return 0, 0, err
		}
		defer resp.Body.Close()
		var body models.DesiredLRPSchedulingInfosResponse
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return 0, 0, err
		}
		return len(body.DesiredLRPSchedulingInfos), time.Since(start), nil
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		got, _, err := count()
		if err != nil {
			return err
		}
		if got >= n {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("GET /apps shows %d of %d LRPs", got, n)
		}
	}
	var lat []time.Duration
	for i := 0; i < rounds; i++ {
		_, d, err := count()
		if err != nil {
			return err
		}
		lat = append(lat, d)
	}
	fmt.Printf("GET /apps over %d LRPs: p50 %s p99 %s (%d requests, including JSON decoding by the client)\n", n, percentile(lat, 50), percentile(lat, 99), rounds)
	return nil
}

// intList parses "1,2,3" into ascending positive integers.
func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	sort.Ints(out)
	return out, nil
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	idx := (len(s)*p+99)/100 - 1
	if idx < 0 {
		idx = 0
	}
	return s[idx].Round(10 * time.Microsecond)
}

// peakRSS reads the kernel's high-water mark of the process's resident set.
func peakRSS(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "unknown: " + err.Error()
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:"))
		}
	}
	return "unknown"
}
