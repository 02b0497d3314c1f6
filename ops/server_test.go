package ops_test

import (
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/tedsuo/ifrit"

	"github.com/iris-cf/iris/ops"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestReadinessFollowsTheMarkerAndMetricsAreServed(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	server := ops.NewServer(lagertest.NewTestLogger("ops"), addr)
	n := 0.0
	server.CounterFunc("things_total", "Things.", func() float64 { n++; return n })
	process := ifrit.Invoke(server)
	defer func() { process.Signal(os.Interrupt); <-process.Wait() }()
	base := "http://" + addr

	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz: %d", code)
	}
	if code, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz before the marker: %d, want 503", code)
	}
	marker := ifrit.Invoke(server.ReadyMarker())
	if code, _ := get(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("readyz with the marker: %d", code)
	}
	marker.Signal(os.Interrupt)
	<-marker.Wait()
	if code, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz after the marker stopped: %d, want 503", code)
	}
	_, metrics := get(t, base+"/metrics")
	for _, want := range []string{"iris_things_total 1", "go_goroutines"} {
		if !contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
