package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	bbsclient "code.cloudfoundry.org/bbs"
	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/iris-cf/iris/backends/spaces"
	"github.com/iris-cf/iris/bifrost/bbs/bbstest"
	"github.com/iris-cf/iris/internal/benchenv"
)

// spacesOptions drive the per-space backends benchmark (-spaces).
type spacesOptions struct {
	lrps       int
	instances  int
	rounds     int
	inFlight   int
	intervalS  int
	skipMoving bool
}

// runSpaces measures Iris in front of the cluster's real Diego BBS
// (IRIS_BBS_*): what the proxy adds to each call, measured side by side
// with the same call straight to Diego, and how long a space of -spaces-lrps
// LRPs takes to migrate to Kubernetes and back.
func runSpaces(ctx context.Context, o options, restConfig *rest.Config, kubeconfig string) (err error) {
	so := o.spaces
	diegoURL := os.Getenv("IRIS_BBS_URL")
	if diegoURL == "" {
		return fmt.Errorf("IRIS_BBS_URL is not set: the cluster runs no Diego BBS")
	}
	setupConfig := rest.CopyConfig(restConfig)
	setupConfig.QPS, setupConfig.Burst = 500, 1000
	clientset, err := kubernetes.NewForConfig(setupConfig)
	if err != nil {
		return err
	}
	ns, err := clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "iris-bench-spaces-"}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	namespace := ns.Name
	dir, err := os.MkdirTemp("", "iris-bench-spaces")
	if err != nil {
		return err
	}
	defer func() {
		if err := clientset.CoreV1().Namespaces().Delete(context.Background(), namespace, metav1.DeleteOptions{}); err != nil {
			fmt.Printf("deleting namespace %s: %v\n", namespace, err)
		}
		reportIrisErrors(filepath.Join(dir, "iris.log"))
		_ = os.RemoveAll(dir)
	}()
	fmt.Printf("per-space backends benchmark in namespace %s; load %s\n", namespace, benchenv.LoadAverage())
	tlsFiles, err := writeBBSCerts(dir)
	if err != nil {
		return err
	}
	placementMap := "iris-space-backends"
	iris, irisURL, err := startSpacesIris(ctx, o.irisBinary, kubeconfig, namespace, dir, tlsFiles, diegoURL, placementMap, so)
	if err != nil {
		return err
	}
	defer func() {
		_ = iris.Process.Signal(syscall.SIGTERM)
		_ = iris.Wait()
	}()
	viaIris, err := tlsFiles.client(irisURL)
	if err != nil {
		return err
	}
	direct, err := bbsclient.NewClientWithConfig(bbsclient.ClientConfig{
		URL: diegoURL, IsTLS: true, CAFile: os.Getenv("IRIS_BBS_CA_FILE"),
		CertFile: os.Getenv("IRIS_BBS_CLIENT_CERT_FILE"), KeyFile: os.Getenv("IRIS_BBS_CLIENT_KEY_FILE"),
		MaxIdleConnsPerHost: 64, RequestTimeout: 5 * time.Minute,
	})
	if err != nil {
		return err
	}
	logger := lager.NewLogger("bench")
	space := "bench-space-" + uuid.NewString()[:8]
	var guids []string
	defer func() {
		// The Diego BBS is shared: leave nothing of this run in it.
		for _, guid := range guids {
			if err := viaIris.RemoveDesiredLRP(logger, "", guid); err != nil {
				_ = direct.RemoveDesiredLRP(logger, "", guid)
			}
		}
	}()

	// One LRP on Diego for the guid-only calls.
	probe := spaceLRP(space, 0, 0)
	if err := viaIris.DesireLRP(logger, "", probe); err != nil {
		return fmt.Errorf("desiring the probe LRP: %w", err)
	}
	guids = append(guids, probe.ProcessGuid)
	if err := proxyLatency(viaIris, direct, probe.ProcessGuid, so.rounds); err != nil {
		return err
	}
	if so.skipMoving {
		return nil
	}

	fmt.Printf("desiring %d LRPs (%d instances each) in space %s on Diego; load %s\n", so.lrps, so.instances, space, benchenv.LoadAverage())
	var made atomic.Int64
	lrps := make([]*models.DesiredLRP, so.lrps)
	for i := range lrps {
		lrps[i] = spaceLRP(space, i+1, int32(so.instances))
		guids = append(guids, lrps[i].ProcessGuid)
	}
	start := time.Now()
	if err := parallel(16, len(lrps), func(i int) error {
		if err := viaIris.DesireLRP(logger, "", lrps[i]); err != nil {
			return fmt.Errorf("desiring LRP %d: %w", i, err)
		}
		made.Add(1)
		return nil
	}); err != nil {
		return err
	}
	fmt.Printf("desired %d LRPs on Diego through Iris in %s; load %s\n", made.Load(), time.Since(start).Round(time.Millisecond), benchenv.LoadAverage())

	all := so.lrps + 1
	for _, to := range []spaces.Side{spaces.Kubernetes, spaces.Diego} {
		start := time.Now()
		if err := spaces.SetPlacement(ctx, clientset, namespace, placementMap, spaces.KeySpacePrefix+space, &to); err != nil {
			return err
		}
		if err := waitMoved(ctx, clientset, direct, namespace, placementMap, space, to, all, 30*time.Minute); err != nil {
			return err
		}
		fmt.Printf("migrated %d LRPs (%d instances each) to %s in %s (max_in_flight %d, interval %ds); load %s\n",
			all, so.instances, to, time.Since(start).Round(time.Millisecond), so.inFlight, so.intervalS, benchenv.LoadAverage())
	}
	return nil
}

func spaceLRP(space string, i int, instances int32) *models.DesiredLRP {
	processGUID := uuid.NewString() + "-" + uuid.NewString()
	return bbstest.DockerLRP(processGUID, instances, fmt.Sprintf("bench-%d.example.com", i),
		bbstest.Space{AppName: "bench", SpaceGUID: space, SpaceName: "bench", OrgGUID: "bench-org-guid", OrgName: "bench"})
}

// proxyLatency times the same calls through Iris and straight to Diego,
// alternating, so both see the same load.
func proxyLatency(viaIris, direct bbsclient.InternalClient, diegoGUID string, rounds int) error {
	logger := lager.NewLogger("bench")
	calls := []struct {
		name string
		call func(bbsclient.InternalClient) error
	}{
		{"desired_lrp by process guid (an LRP on Diego)", func(c bbsclient.InternalClient) error {
			_, err := c.DesiredLRPByProcessGuid(logger, "", diegoGUID)
			return err
		}},
		{"actual_lrps of one process guid (on Diego)", func(c bbsclient.InternalClient) error {
			_, err := c.ActualLRPs(logger, "", models.ActualLRPFilter{ProcessGuid: diegoGUID})
			return err
		}},
		{"scheduling infos, domain cf-apps (Iris: union of both sides)", func(c bbsclient.InternalClient) error {
			_, err := c.DesiredLRPSchedulingInfos(logger, "", models.DesiredLRPFilter{Domain: "cf-apps"})
			return err
		}},
		{"ping", func(c bbsclient.InternalClient) error {
			if !c.Ping(logger, "") {
				return fmt.Errorf("ping failed")
			}
			return nil
		}},
	}
	for _, c := range calls {
		var throughIris, straight []time.Duration
		for i := 0; i < rounds; i++ {
			for _, side := range []struct {
				client bbsclient.InternalClient
				out    *[]time.Duration
			}{{viaIris, &throughIris}, {direct, &straight}} {
				start := time.Now()
				if err := c.call(side.client); err != nil {
					return fmt.Errorf("%s: %w", c.name, err)
				}
				*side.out = append(*side.out, time.Since(start))
			}
		}
		fmt.Printf("%s, %d calls each: through Iris p50 %s p99 %s; straight to Diego p50 %s p99 %s; added p50 %s p99 %s; load %s\n",
			c.name, rounds, percentile(throughIris, 50), percentile(throughIris, 99), percentile(straight, 50), percentile(straight, 99),
			percentile(throughIris, 50)-percentile(straight, 50), percentile(throughIris, 99)-percentile(straight, 99), benchenv.LoadAverage())
	}
	return nil
}

// waitMoved waits until all of the space's LRPs are on side only and no
// move is left.
func waitMoved(ctx context.Context, clientset kubernetes.Interface, direct bbsclient.InternalClient, namespace, placementMap, space string, side spaces.Side, all int, timeout time.Duration) error {
	logger := lager.NewLogger("bench")
	store := spaces.NewConfigMapMoveStore(clientset, namespace, spaces.MigrationsConfigMap(placementMap))
	deadline := time.Now().Add(timeout)
	for last := ""; time.Now().Before(deadline); {
		onDiego := 0
		infos, err := direct.DesiredLRPRoutingInfos(logger, "", models.DesiredLRPFilter{})
		if err != nil {
			return err
		}
		for _, lrp := range infos {
			if tag := lrp.MetricTags["space_id"]; tag != nil && tag.Static == space {
				onDiego++
			}
		}
		sets, err := clientset.AppsV1().StatefulSets(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		onKubernetes := 0
		for _, sts := range sets.Items {
			if sts.DeletionTimestamp == nil {
				onKubernetes++
			}
		}
		moves, err := store.Load(ctx)
		if err != nil {
			return err
		}
		status := fmt.Sprintf("diego %d, kubernetes %d, moving %d", onDiego, onKubernetes, len(moves))
		if status != last {
			fmt.Printf("  %s: %s\n", time.Now().Format("15:04:05"), status)
			last = status
		}
		done := len(moves) == 0 && ((side == spaces.Kubernetes && onDiego == 0 && onKubernetes == all) || (side == spaces.Diego && onKubernetes == 0 && onDiego == all))
		if done {
			return nil
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("the space did not settle on %s within %s", side, timeout)
}

// startSpacesIris starts Iris (API only) with its BBS front over mTLS and
// the cluster's Diego BBS behind it.
func startSpacesIris(ctx context.Context, binary, kubeconfig, namespace, dir string, t bbsTLS, diegoURL, placementMap string, so spacesOptions) (*exec.Cmd, string, error) {
	apiAddr, bbsAddr := freeAddr(), freeAddr()
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
  diego:
    url: %q
    ca_file: %q
    client_cert_file: %q
    client_key_file: %q
    placement_config_map: %q
    default_backend: diego
    migration:
      interval_seconds: %d
      max_in_flight: %d
`, kubeconfig, namespace, apiAddr, bbsAddr, t.serverCert, t.serverKey, t.clientCA,
		diegoURL, os.Getenv("IRIS_BBS_CA_FILE"), os.Getenv("IRIS_BBS_CLIENT_CERT_FILE"), os.Getenv("IRIS_BBS_CLIENT_KEY_FILE"),
		placementMap, so.intervalS, so.inFlight)
	cfgPath := filepath.Join(dir, "iris.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, "", err
	}
	logFile, err := os.Create(filepath.Join(dir, "iris.log"))
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(binary, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	url := "https://" + bbsAddr
	client, err := t.client(url)
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, "", err
	}
	logger := lager.NewLogger("bench")
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		if client.Ping(logger, "") {
			fmt.Printf("iris (pid %d) serves BBS at %s with Diego %s behind it; its log: %s\n", cmd.Process.Pid, url, diegoURL, logFile.Name())
			return cmd, url, nil
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			break
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return nil, "", fmt.Errorf("iris did not answer BBS ping (see %s)", logFile.Name())
}
