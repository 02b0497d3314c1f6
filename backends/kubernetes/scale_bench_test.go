package kubernetes_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/metrics"
	"runtime/pprof"
	"sort"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	bbsk8s "github.com/iris-cf/iris/backends/kubernetes"
	"github.com/iris-cf/iris/bifrost"
	"github.com/iris-cf/iris/bifrost/bbs"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/internal/benchenv"
	"github.com/iris-cf/iris/k8s"
)

// BenchmarkCCSyncAtScale answers CC's periodic sync and instance queries at
// the scale: 100,000 BBS LRPs as CC desires them and 250,000
// Running instances (2 or 3 per LRP) in the real informer caches (fed
// through fake watches, with the informers' transforms and indexes), the
// real BBS and OPI handlers served on a loopback HTTP server, and clients
// in a process of their own (this binary again) so that neither side's
// allocations and garbage collection count against the other:
//
//   - /v1/actual_lrps/list_by_process_guids for 1,000 guids, through the
//     handler in process and over HTTP;
//   - /v1/desired_lrp_scheduling_infos/list and /v1/desired_lrps/list.r3
//     (domain cf-apps) over HTTP;
//   - OPI's GET /apps over HTTP.
//
// Each HTTP list prints, over IRIS_BENCH_ROUNDS rounds (default 20), p50
// and p99 of Iris's answer as the client sees it (request sent to last
// byte received), the server process's CPU per request, and apart from it
// the real client's decoding (bbs client, encoding/json) and whole call,
// with the bytes and the load. Run on its own:
//
//	go test ./backends/kubernetes -run '^$' -bench CCSyncAtScale -benchtime 1x
//
// (IRIS_BENCH_LRPS for another LRP count; IRIS_BENCH_PROFILE=<dir> writes
// the server's CPU profile of each HTTP list there; setup takes a few minutes and
// about 3 GB).
func BenchmarkCCSyncAtScale(b *testing.B) {
	n, rounds := benchenv.Int(b, "IRIS_BENCH_LRPS", 100000), benchenv.Int(b, "IRIS_BENCH_ROUNDS", 20)
	for i := 0; i < b.N; i++ {
		benchmarkCCSync(b, n, rounds)
	}
}

func benchmarkCCSync(b *testing.B, n, rounds int) {
	const ns = "cf-workloads"
	ctx := context.Background()
	fixture := newScaleFixture(b, ns, n)
	defer fixture.stop()
	logger := lager.NewLogger("bench") // no sink: a test logger would keep every request's lines
	backend, lrps := fixture.backend, fixture.lrps

	setup := time.Now()
	if _, err := backend.EncodedSchedulingInfos(ctx, logger, models.DesiredLRPFilter{Domain: "cf-apps"}); err != nil {
		b.Fatal(err)
	}
	firstList := time.Since(setup)

	bbsHandler := bbs.NewHandler(logger, bbs.Backends{DesiredLRPs: backend, ActualLRPs: backend, Domains: bbs.NewDomainStore(clock.RealClock{})},
		bbs.NewEventHub(logger, 0), 1<<20)
	bbsServer := httptest.NewServer(bbsHandler)
	defer bbsServer.Close()
	opiServer := httptest.NewServer(bifrost.NewHandler(logger, bifrost.Backends{LRPs: lrps}, bifrost.Limits{MaxRequestBodyBytes: 1 << 20, MaxInFlightRequests: 10}))
	defer opiServer.Close()

	// 1,000 guids spread over the whole set, with their 2,500 instances.
	guids := make([]string, 0, 1000)
	wantInstances := 0
	for i := 0; i < 1000 && i < n; i++ {
		sts := fixture.statefulSets[i*(n/min(n, 1000))]
		guids = append(guids, sts.Annotations[k8s.AnnotationProcessGUID])
		wantInstances += int(ptr.Deref(sts.Spec.Replicas, 0))
	}
	fmt.Printf("CC sync at scale: %d BBS LRPs, %d Running instances in the informer caches; first scheduling-infos list after the start (decodes every LRP) %s; load %s\n",
		n, fixture.instances, firstList.Round(time.Millisecond), benchenv.LoadAverage())

	request, err := (&models.ActualLRPsByProcessGuidsRequest{ProcessGuids: guids}).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	report(b, "actual_lrps/list_by_process_guids, 1,000 guids, in process (handler, protobuf encoding)", rounds, func() (string, error) {
		recorder := httptest.NewRecorder()
		bbsHandler.ServeHTTP(recorder, httptest.NewRequest(http.MethodPost, "/v1/actual_lrps/list_by_process_guids", bytes.NewReader(request)))
		if recorder.Code != http.StatusOK {
			return "", fmt.Errorf("answered %d", recorder.Code)
		}
		response := &models.ActualLRPsByProcessGuidsResponse{}
		if err := response.Unmarshal(recorder.Body.Bytes()); err != nil || response.Error != nil {
			return "", fmt.Errorf("decoding: %v %v", err, response.Error)
		}
		if len(response.ActualLrps) != wantInstances {
			return "", fmt.Errorf("answered %d of %d instances", len(response.ActualLrps), wantInstances)
		}
		return fmt.Sprintf("%d instances, %.0f KB", wantInstances, float64(recorder.Body.Len())/1e3), nil
	})
	remote := func(what, kind, url string, want, rounds int) {
		reportRemote(b, what, ccSyncCall{Kind: kind, URL: url, Guids: guids, Want: want, Rounds: rounds})
	}
	remote("actual_lrps/list_by_process_guids, 1,000 guids", "actual", bbsServer.URL, wantInstances, rounds)
	remote("desired_lrp_scheduling_infos/list, domain cf-apps", "scheduling", bbsServer.URL, n, rounds)
	remote("OPI GET /apps", "opi", opiServer.URL, n, rounds)
	// Every whole LRP decoded from its record and encoded: long at 100k on
	// the shared machine, so last, with one timed round.
	remote("desired_lrps/list.r3, domain cf-apps", "desired", bbsServer.URL, n, 1)
}

// reportRemote has a client process (this test binary again, running
// TestCCSyncClientProcess) make call, and prints what it measured: Iris's
// answer (request sent to last byte received) p50/p99, the real client's
// decoding of it and its whole call, the server process's CPU per
// request (this process: the servers and their caches) with the number
// of garbage collections in it (the runtime collects the caches' heap, a
// few CPU-seconds, at least every 2 minutes however long the rounds take,
// so on a loaded machine slow rounds carry more of them), the client
// process's CPU, the bytes and the load.
func reportRemote(b *testing.B, what string, call ccSyncCall) {
	dir := b.TempDir()
	call.Result = filepath.Join(dir, "result.json")
	spec, err := json.Marshal(call)
	if err != nil {
		b.Fatal(err)
	}
	specPath := filepath.Join(dir, "call.json")
	if err := os.WriteFile(specPath, spec, 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCCSyncClientProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), ccSyncClientEnv+"="+specPath)
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	stopProfile := profileServer(b, call.Kind)
	cpu, cycles := benchenv.ProcessCPU(), gcCycles()
	err = cmd.Run()
	serverCPU, serverGCs := benchenv.ProcessCPU()-cpu, gcCycles()-cycles
	stopProfile()
	if err != nil {
		b.Fatalf("%s: client process: %v\n%s", what, err, output.String())
	}
	data, err := os.ReadFile(call.Result)
	if err != nil {
		b.Fatalf("%s: client process left no result: %v\n%s", what, err, output.String())
	}
	var result ccSyncResult
	if err := json.Unmarshal(data, &result); err != nil {
		b.Fatal(err)
	}
	if result.Err != "" {
		b.Fatalf("%s: %s", what, result.Err)
	}
	round := func(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }
	fmt.Printf("  %s, client in its own process: answer (request sent to last byte) p50 %s p99 %s over %d rounds (%d items, %.1f MB); "+
		"server CPU per request %s (%d garbage collections of the caches' heap in it); decoding (real client) p50 %s p99 %s; real client's whole call p50 %s p99 %s; client CPU per request %s; load %s\n",
		what, round(percentile(result.Answer, 50)), round(percentile(result.Answer, 99)), call.Rounds, call.Want, float64(result.Bytes)/1e6,
		round(serverCPU/time.Duration(result.Requests)), serverGCs,
		round(percentile(result.Decode, 50)), round(percentile(result.Decode, 99)),
		round(percentile(result.Client, 50)), round(percentile(result.Client, 99)),
		round(result.CPU/time.Duration(result.Requests)), benchenv.LoadAverage())
	benchenv.EmitResult(syncResult(what+", answer to a client in its own process", percentile(result.Answer, 99),
		fmt.Sprintf("p50 %s, %d rounds, %.1f MB; server CPU per request %s; the real client's decoding p50 %s more",
			percentile(result.Answer, 50).Round(time.Millisecond), call.Rounds, float64(result.Bytes)/1e6,
			(serverCPU/time.Duration(result.Requests)).Round(time.Millisecond), percentile(result.Decode, 50).Round(time.Millisecond))))
}

// profileServer writes the server process's CPU profile while the client
// makes its calls to $IRIS_BENCH_PROFILE/<kind>.pprof, if that is set.
func profileServer(b *testing.B, kind string) (stop func()) {
	dir := os.Getenv("IRIS_BENCH_PROFILE")
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, kind+".pprof"))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}

// gcCycles is the number of garbage collections this process has
// completed.
func gcCycles() uint64 {
	sample := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return sample[0].Value.Uint64()
}

// percentile is the q-th percentile of lat (sorted in place).
func percentile(lat []time.Duration, q int) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat[min(len(lat)-1, len(lat)*q/100)]
}

// report times rounds calls of call (after one untimed warm-up) and
// prints p50, p99 and the load.
func report(b *testing.B, what string, rounds int, call func() (string, error)) {
	detail, err := call()
	if err != nil {
		b.Fatalf("%s: %v", what, err)
	}
	lat := make([]time.Duration, 0, rounds)
	cpu := benchenv.ProcessCPU()
	for i := 0; i < rounds; i++ {
		start := time.Now()
		if _, err := call(); err != nil {
			b.Fatalf("%s: %v", what, err)
		}
		lat = append(lat, time.Since(start))
	}
	perCall := (benchenv.ProcessCPU() - cpu) / time.Duration(rounds)
	p := func(q int) time.Duration { return percentile(lat, q) }
	fmt.Printf("  %s: p50 %s p99 %s over %d rounds (%s); CPU per call, server and client, %s; load %s\n",
		what, p(50).Round(100*time.Microsecond), p(99).Round(100*time.Microsecond), rounds, detail, perCall.Round(100*time.Microsecond), benchenv.LoadAverage())
	benchenv.EmitResult(syncResult(what, p(99), fmt.Sprintf("p50 %s, %d rounds, %s; CPU per call %s", p(50).Round(time.Millisecond), rounds, detail, perCall.Round(time.Millisecond))))
}

// scaleFixture is n BBS LRPs, 2 or 3 Running instances each, in the real
// informer caches, and the backend and LRP client over them.
type scaleFixture struct {
	caches       *k8s.Caches
	backend      *bbsk8s.Backend
	lrps         *k8s.LRPClient
	statefulSets []*appsv1.StatefulSet
	instances    int
	stop         func()
}

func newScaleFixture(b *testing.B, ns string, n int) *scaleFixture {
	builder := k8s.NewBuilder(config.Default().LRP)
	stsWatch, podWatch := watch.NewFakeWithChanSize(1024, false), watch.NewFakeWithChanSize(1024, false)
	clientset := fake.NewClientset()
	clientset.PrependWatchReactor("*", func(action k8stesting.Action) (bool, watch.Interface, error) {
		switch action.GetResource() {
		case schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}:
			return true, stsWatch, nil
		case schema.GroupVersionResource{Version: "v1", Resource: "pods"}:
			if selector := action.(k8stesting.WatchAction).GetWatchRestrictions().Labels.String(); selector == k8s.LabelSourceType+"="+k8s.SourceTypeApp {
				return true, podWatch, nil
			}
		}
		return true, watch.NewFake(), nil
	})
	caches, stopCaches := startCaches(b, clientset, ns, lager.NewLogger("bench"))
	lrps := k8s.NewLRPClient(clientset, caches, builder, []string{ns}, clock.RealClock{})
	f := &scaleFixture{
		caches:  caches,
		backend: bbsk8s.NewBackend(clientset, caches, lrps, bbsk8s.TranslateOptions{}),
		lrps:    lrps,
		stop:    stopCaches,
	}
	created := time.Now().Add(-time.Hour)
	for i := 0; i < n; i++ {
		instances := 2 + i%2
		sts := benchStatefulSet(b, builder, ns, i, instances, created)
		for index := 0; index < instances; index++ {
			podWatch.Add(podOf(sts, index, f.instances))
			f.instances++
		}
		stsWatch.Add(sts.DeepCopy())
		f.statefulSets = append(f.statefulSets, sts)
	}
	waitFor(b, func() int { return countStatefulSets(caches) }, n)
	waitFor(b, func() int { return countPods(caches) }, f.instances)
	return f
}

// syncResult is a CC sync call's p99 against the target for its
// kind: 100 ms for the instances of 1,000 guids, 1 s for the lists over
// 100,000 LRPs (the note gives the size measured).
func syncResult(what string, p99 time.Duration, note string) benchenv.Result {
	r := benchenv.Result{Goal: "sync (CCSyncAtScale, in process): " + what + ", p99", Value: float64(p99.Microseconds()) / 1000, Unit: "ms", Note: note}
	switch {
	case strings.Contains(what, "actual_lrps/list_by_process_guids"):
		r.Target, r.Compare = 100, benchenv.AtMost
	case strings.Contains(what, "scheduling_infos") || strings.Contains(what, "GET /apps"):
		r.Target, r.Compare = 1000, benchenv.AtMost
	}
	return r
}
