package kubernetes_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/google/uuid"
	"github.com/tedsuo/ifrit"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/clock"

	bbsk8s "github.com/iris-cf/iris/backends/kubernetes"
	"github.com/iris-cf/iris/bifrost/bbs"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/k8s"
)

// The scheduling-infos list CC polls every 30 s, over n cached LRPs as a
// desire makes them, including the protobuf encoding of the answer. Run
// with `go test ./backends/kubernetes -run '^$' -bench 'SchedulingInfos1?0?k$'`
// (1k and 10k; the 100k one on its own); scripts/bench -bbs measures the
// same over HTTP, with the real client, against a real cluster.
func BenchmarkSchedulingInfos1k(b *testing.B)  { benchmarkSchedulingInfos(b, 1000) }
func BenchmarkSchedulingInfos10k(b *testing.B) { benchmarkSchedulingInfos(b, 10000) }

// BenchmarkSchedulingInfos100k is the size; its setup alone takes
// about a minute and 2 GB: run it on its own (-bench SchedulingInfos100k).
func BenchmarkSchedulingInfos100k(b *testing.B) { benchmarkSchedulingInfos(b, 100000) }

func benchmarkSchedulingInfos(b *testing.B, n int) {
	const ns = "cf-workloads"
	builder := k8s.NewBuilder(config.Default().LRP)
	objects := make([]runtime.Object, 0, n)
	for i := 0; i < n; i++ {
		lrp := ccDockerLRP(uuid.NewString()+"-"+uuid.NewString(), "")
		lrp.PlacementTags = nil
		sts := builtStatefulSet(b, builder, lrp, ns)
		// As the API server stores it: the list decodes an LRP once per
		// uid and resource version.
		sts.UID = types.UID(uuid.NewString())
		sts.ResourceVersion = strconv.Itoa(i + 1)
		objects = append(objects, sts)
	}
	clientset := fake.NewClientset(objects...)
	logger := lagertest.NewTestLogger("bench")
	caches, stop := startCaches(b, clientset, ns, logger)
	defer stop()
	lrps := k8s.NewLRPClient(clientset, caches, builder, []string{ns}, clock.RealClock{})
	backend := bbsk8s.NewBackend(clientset, caches, lrps, bbsk8s.TranslateOptions{})
	// The first list after a start decodes every LRP; CC's every-30-s
	// lists after it are what is timed.
	start := time.Now()
	if _, err := backend.DesiredLRPSchedulingInfos(context.Background(), logger, models.DesiredLRPFilter{Domain: "cf-apps"}); err != nil {
		b.Fatal(err)
	}
	firstList := time.Since(start)
	// Timed: the route as served, through the BBS front's handler (which
	// copies the infos the backend keeps encoded into the response).
	handler := bbs.NewHandler(logger, bbs.Backends{DesiredLRPs: backend, ActualLRPs: backend, Domains: bbs.NewDomainStore(clock.RealClock{})},
		bbs.NewEventHub(logger, 0), 1<<20)
	request, err := (&models.DesiredLRPsRequest{Domain: "cf-apps"}).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		recorder := httptest.NewRecorder()
		handler.ServeHTTP(recorder, httptest.NewRequest(http.MethodPost, "/v1/desired_lrp_scheduling_infos/list", bytes.NewReader(request)))
		if recorder.Code != http.StatusOK {
			b.Fatalf("answered %d", recorder.Code)
		}
		if i == 0 {
			b.StopTimer()
			response := &models.DesiredLRPSchedulingInfosResponse{}
			if err := response.Unmarshal(recorder.Body.Bytes()); err != nil || response.Error != nil || len(response.DesiredLrpSchedulingInfos) != n {
				b.Fatalf("listed %d of %d (error %v, %v)", len(response.DesiredLrpSchedulingInfos), n, response.Error, err)
			}
			b.StartTimer()
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(firstList.Milliseconds()), "first-list-ms")
}

// startCaches runs the app caches of namespace ns for a benchmark, prepare
// called first (to add informers); stop ends them.
func startCaches(b *testing.B, clientset kubernetes.Interface, ns string, logger lager.Logger, prepare ...func(*k8s.Caches)) (caches *k8s.Caches, stop func()) {
	caches, err := k8s.NewCaches(clientset, []string{ns})
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range prepare {
		p(caches)
	}
	process := ifrit.Invoke(ifrit.RunFunc(caches.Run(logger)))
	return caches, func() {
		process.Signal(os.Interrupt)
		<-process.Wait()
	}
}

// builtStatefulSet is the StatefulSet Iris builds for lrp in ns.
func builtStatefulSet(b *testing.B, builder *k8s.Builder, lrp *models.DesiredLRP, ns string) *appsv1.StatefulSet {
	w, err := bbsk8s.DesiredWorkload(lrp, bbsk8s.TranslateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	built, err := builder.Build(w, ns)
	if err != nil {
		b.Fatal(err)
	}
	return built.StatefulSet
}
