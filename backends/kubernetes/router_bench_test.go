package kubernetes_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"testing"
	"time"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	"github.com/google/uuid"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/clock"

	bbsk8s "github.com/iris-cf/iris/backends/kubernetes"
	"github.com/iris-cf/iris/backends/spaces"
	"github.com/iris-cf/iris/bifrost/bbs"
	"github.com/iris-cf/iris/bifrost/bbs/bbsfakes"
	"github.com/iris-cf/iris/bifrost/bbs/bbstest"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/internal/benchenv"
	"github.com/iris-cf/iris/k8s"
)

// BenchmarkRouterLists is CC's sync in Diego mixed mode (per-space
// backends): the BBS front over spaces.Router, joining 100,000 LRPs on
// Kubernetes (the real backend over informer caches fed through a fake
// watch) and 3,000 on Diego (a fake side that decodes its answer on every
// call, as the bbs client does), 100 of them on both sides, being moved.
// It answers /v1/desired_lrp_scheduling_infos/list and
// /v1/desired_lrps/list.r3 (domain cf-apps) through the handler in
// process, before (the router's fast paths hidden: union/once over
// decoded lists, encoded whole) and after (the fast paths), and the
// Kubernetes backend's own list without the router for comparison; checks
// before and after list the same, and prints p50/p99, the CPU, the
// allocations and bytes allocated per list, with the machine's load (the
// ways' rounds interleave). Run on its own:
//
//	go test ./backends/kubernetes -run '^$' -bench RouterLists -benchtime 1x
//
// (IRIS_BENCH_LRPS and IRIS_BENCH_DIEGO_LRPS for other sizes,
// IRIS_BENCH_ROUNDS for the scheduling-infos rounds (default 20) and
// IRIS_BENCH_LRP_ROUNDS for list.r3's (default 3); setup takes a minute or
// two and about 3 GB).
func BenchmarkRouterLists(b *testing.B) {
	n := benchenv.Int(b, "IRIS_BENCH_LRPS", 100000)
	diegoN := benchenv.Int(b, "IRIS_BENCH_DIEGO_LRPS", 3000)
	rounds := benchenv.Int(b, "IRIS_BENCH_ROUNDS", 20)
	lrpRounds := benchenv.Int(b, "IRIS_BENCH_LRP_ROUNDS", 3)
	for i := 0; i < b.N; i++ {
		benchmarkRouterLists(b, n, diegoN, rounds, lrpRounds)
	}
}

// benchSide is a side of the router from fakes.
type benchSide struct {
	*bbsfakes.FakeDesiredLRPs
	*bbsfakes.FakeActualLRPs
}

type benchMoves map[string]spaces.Side

func (m benchMoves) Owner(guid string) (spaces.Side, bool) {
	side, ok := m[guid]
	return side, ok
}

type benchPlacement struct{}

func (benchPlacement) SideFor(string, string) spaces.Side { return spaces.Kubernetes }

// slowRouter hides the router's fast paths from the front (the alias names
// the embedded field apart from the DesiredLRPs method).
type slowRouter struct{ desiredRoutes }

type desiredRoutes = bbs.DesiredLRPs

func benchmarkRouterLists(b *testing.B, n, diegoN, rounds, lrpRounds int) {
	const (
		ns      = "cf-workloads"
		overlap = 100
	)
	logger := lager.NewLogger("bench")
	builder := k8s.NewBuilder(config.Default().LRP)
	stsWatch := watch.NewFakeWithChanSize(1024, false)
	clientset := fake.NewClientset()
	clientset.PrependWatchReactor("*", func(action k8stesting.Action) (bool, watch.Interface, error) {
		if action.GetResource() == (schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}) {
			return true, stsWatch, nil
		}
		return true, watch.NewFake(), nil
	})
	caches, stop := startCaches(b, clientset, ns, logger)
	defer stop()
	setup := time.Now()
	created := setup.Add(-time.Hour)
	moves := benchMoves{}
	var movedGUIDs []string
	for i := 0; i < n; i++ {
		sts := benchStatefulSet(b, builder, ns, i, 2+i%2, created)
		if i < overlap {
			movedGUIDs = append(movedGUIDs, sts.Annotations[k8s.AnnotationProcessGUID])
		}
		stsWatch.Add(sts)
	}
	waitFor(b, func() int { return countStatefulSets(caches) }, n)
	lrps := k8s.NewLRPClient(clientset, caches, builder, []string{ns}, clock.RealClock{})
	kube := bbsk8s.NewBackend(clientset, caches, lrps, bbsk8s.TranslateOptions{})
	// Being moved: a copy on Diego too, owned by either side.
	var diegoLRPs []*models.DesiredLRP
	for i, guid := range movedGUIDs {
		lrp, err := kube.DesiredLRPByProcessGuid(context.Background(), logger, guid)
		if err != nil {
			b.Fatal(err)
		}
		diegoLRPs = append(diegoLRPs, lrp)
		moves[guid] = []spaces.Side{spaces.Kubernetes, spaces.Diego}[i%2]
	}
	for i := len(diegoLRPs); i < diegoN; i++ {
		diegoLRPs = append(diegoLRPs, bbstest.DockerLRP(uuid.NewString()+"-"+uuid.NewString(), 2, fmt.Sprintf("diego-app-%d.example.com", i),
			bbstest.Space{AppName: fmt.Sprintf("diego-app-%d", i), SpaceGUID: uuid.NewString(), SpaceName: "dev", OrgGUID: uuid.NewString(), OrgName: "acme"}))
	}
	diego := benchSide{&bbsfakes.FakeDesiredLRPs{}, &bbsfakes.FakeActualLRPs{}}
	diegoAnswers(b, diego.FakeDesiredLRPs, diegoLRPs)
	domains := bbs.NewDomainStore(clock.RealClock{})
	router := spaces.NewRouter(kube, domains, diego, domains, benchPlacement{})
	router.FollowMoves(moves)
	hub := bbs.NewEventHub(logger, 0)
	after := bbs.NewHandler(logger, bbs.Backends{DesiredLRPs: router, ActualLRPs: router, Domains: router}, hub, 1<<20)
	before := bbs.NewHandler(logger, bbs.Backends{DesiredLRPs: slowRouter{router}, ActualLRPs: router, Domains: router}, hub, 1<<20)
	alone := bbs.NewHandler(logger, bbs.Backends{DesiredLRPs: kube, ActualLRPs: kube, Domains: domains}, hub, 1<<20)
	b.Logf("setup: %d LRPs on Kubernetes, %d on Diego (%d on both, being moved) in %s", n, len(diegoLRPs), overlap, time.Since(setup).Round(time.Second))

	request, err := (&models.DesiredLRPsRequest{Domain: "cf-apps"}).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	want := n + len(diegoLRPs) - overlap
	routes := []struct {
		path   string
		rounds int
		// same decodes both answers: the same lists, and how long.
		same func(before, after []byte) (bool, int, error)
	}{
		{"/v1/desired_lrp_scheduling_infos/list", rounds, func(before, after []byte) (bool, int, error) {
			responses := [2]models.DesiredLRPSchedulingInfosResponse{}
			for i, body := range [][]byte{before, after} {
				if err := responses[i].Unmarshal(body); err != nil || responses[i].Error != nil {
					return false, 0, fmt.Errorf("%w %v", err, responses[i].Error)
				}
			}
			return responses[0].Equal(&responses[1]), len(responses[1].DesiredLrpSchedulingInfos), nil
		}},
		{"/v1/desired_lrps/list.r3", lrpRounds, func(before, after []byte) (bool, int, error) {
			responses := [2]models.DesiredLRPsResponse{}
			for i, body := range [][]byte{before, after} {
				if err := responses[i].Unmarshal(body); err != nil || responses[i].Error != nil {
					return false, 0, fmt.Errorf("%w %v", err, responses[i].Error)
				}
			}
			return responses[0].Equal(&responses[1]), len(responses[1].DesiredLrps), nil
		}},
	}
	serve := func(handler http.Handler, path string, w http.ResponseWriter) {
		handler.ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(request)))
	}
	for _, route := range routes {
		// Same answer both ways (this also makes the Kubernetes backend
		// decode each LRP's summary once, as the first list after a start
		// does; CC's lists every 30 s after it are what is timed).
		bodies := [2][]byte{}
		for i, handler := range []http.Handler{before, after} {
			recorder := httptest.NewRecorder()
			serve(handler, route.path, recorder)
			bodies[i] = recorder.Body.Bytes()
		}
		// Compared decoded: the models encode a map (routes, metric tags)
		// in Go's iteration order, so two encodings of one list differ.
		same, listed, err := route.same(bodies[0], bodies[1])
		if err != nil || !same || listed != want || len(bodies[0]) != len(bodies[1]) {
			b.Fatalf("%s: the fast paths listed %d of %d LRPs in %d bytes, the slow ones %d bytes; the same: %t (%v)",
				route.path, listed, want, len(bodies[1]), len(bodies[0]), same, err)
		}
		size := len(bodies[1])
		bodies = [2][]byte{}
		// The rounds of the ways interleave, so that the machine's load
		// (shared, noisy) weighs on each alike. Kubernetes alone is the
		// Kubernetes backend's own list (without the router and Diego's
		// LRPs): what the router adds.
		ways := []*routerWay{
			{name: "before (union/once)", handler: before, size: size, lrps: want, baseline: true},
			{name: "after (fast paths)", handler: after, size: size, lrps: want},
			{name: "Kubernetes alone", handler: alone, size: -1, lrps: n},
		}
		for r := 0; r < route.rounds; r++ {
			for _, way := range ways {
				way.measure(b, func(w http.ResponseWriter) { serve(way.handler, route.path, w) })
			}
		}
		for _, way := range ways {
			way.report(b, route.path, route.path == "/v1/desired_lrp_scheduling_infos/list" && !way.baseline, fmt.Sprintf("%d LRPs on Kubernetes + %d on Diego (%d on both)", n, len(diegoLRPs), overlap))
		}
	}
}

// routerWay is one way a list is answered, and its measurements.
type routerWay struct {
	name    string
	handler http.Handler
	// size is the answer's length in bytes (-1: not checked); lrps the
	// number it lists.
	size, lrps int
	// baseline: the way before the fast paths, measured beside them but
	// held to no target.
	baseline           bool
	lat                []time.Duration
	cpu                time.Duration
	mallocs, allocated uint64
	bytes              int
}

// measure times one list, with its CPU and allocations.
func (w *routerWay) measure(b *testing.B, serve func(http.ResponseWriter)) {
	out := &discardWriter{header: http.Header{}}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	cpu := benchenv.ProcessCPU()
	start := time.Now()
	serve(out)
	w.lat = append(w.lat, time.Since(start))
	w.cpu += benchenv.ProcessCPU() - cpu
	runtime.ReadMemStats(&m1)
	w.mallocs += m1.Mallocs - m0.Mallocs
	w.allocated += m1.TotalAlloc - m0.TotalAlloc
	w.bytes = out.n
	if out.code != http.StatusOK || (w.size >= 0 && out.n != w.size) {
		b.Fatalf("%s: answered %d with %d bytes, want 200 with %d", w.name, out.code, out.n, w.size)
	}
}

func (w *routerWay) report(b *testing.B, path string, target bool, sizes string) {
	rounds := len(w.lat)
	slices.Sort(w.lat)
	p50, p99 := percentile(w.lat, 50), percentile(w.lat, 99)
	cpu := w.cpu / time.Duration(rounds)
	mallocs, allocated := w.mallocs/uint64(rounds), float64(w.allocated/uint64(rounds))/1e6
	b.Logf("%-40s %-20s %6d LRPs (%5.1f MB): p50 %7.1f ms  p99 %7.1f ms  CPU %7.1f ms  %9d allocs  %6.1f MB allocated per list  (%d rounds, load %s)",
		path, w.name, w.lrps, float64(w.bytes)/1e6, ms(p50), ms(p99), ms(cpu), mallocs, allocated, rounds, benchenv.LoadAverage())
	result := benchenv.Result{
		Goal: fmt.Sprintf("sync (RouterLists, in process, Diego mixed mode): %s, %s, p99", path, w.name), Value: ms(p99), Unit: "ms",
		Note: fmt.Sprintf("%s; %d listed; p50 %.1f ms, CPU %.1f ms, %d allocs and %.1f MB allocated per list; %d rounds",
			sizes, w.lrps, ms(p50), ms(cpu), mallocs, allocated, rounds),
	}
	if target {
		result.Target, result.Compare = 1000, benchenv.AtMost
	}
	benchenv.EmitResult(result)
}

// diegoAnswers makes fake answer Diego's lists of lrps (filtered by
// domain), decoding each answer from its encoding on every call as the bbs
// client does.
func diegoAnswers(b *testing.B, fake *bbsfakes.FakeDesiredLRPs, lrps []*models.DesiredLRP) {
	infos := &models.DesiredLRPSchedulingInfosResponse{}
	whole := &models.DesiredLRPsResponse{}
	for _, lrp := range lrps {
		info := lrp.DesiredLRPSchedulingInfo()
		infos.DesiredLrpSchedulingInfos = append(infos.DesiredLrpSchedulingInfos, &info)
		whole.DesiredLrps = append(whole.DesiredLrps, lrp)
	}
	encodedInfos, err := infos.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	encodedLRPs, err := whole.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	fake.DesiredLRPSchedulingInfosCalls(func(_ context.Context, _ lager.Logger, filter models.DesiredLRPFilter) ([]*models.DesiredLRPSchedulingInfo, error) {
		response := &models.DesiredLRPSchedulingInfosResponse{}
		if err := response.Unmarshal(encodedInfos); err != nil {
			return nil, err
		}
		return slices.DeleteFunc(response.DesiredLrpSchedulingInfos, func(info *models.DesiredLRPSchedulingInfo) bool {
			return filter.Domain != "" && info.Domain != filter.Domain
		}), nil
	})
	fake.DesiredLRPsCalls(func(_ context.Context, _ lager.Logger, filter models.DesiredLRPFilter) ([]*models.DesiredLRP, error) {
		response := &models.DesiredLRPsResponse{}
		if err := response.Unmarshal(encodedLRPs); err != nil {
			return nil, err
		}
		return slices.DeleteFunc(response.DesiredLrps, func(lrp *models.DesiredLRP) bool {
			return filter.Domain != "" && lrp.Domain != filter.Domain
		}), nil
	})
}

// discardWriter counts an answer's bytes: the client's side is not what
// is measured.
type discardWriter struct {
	header http.Header
	code   int
	n      int
}

func (w *discardWriter) Header() http.Header { return w.header }
func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
