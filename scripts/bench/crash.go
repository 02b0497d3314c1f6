package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/internal/benchenv"
	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

// runCrash is the kill -9 benchmark: per round, desire o.lrps LRPs that own
// everything an LRP can own (registry Secret, egress NetworkPolicy, PDB),
// kill -9 Iris after a random number of them were accepted, restart it,
// re-desire what got no 202 (as CC does) and count what exists: right after
// the re-desires, and once the reconciler settled.
func runCrash(ctx context.Context, o options, clientset kubernetes.Interface, kubeconfig string) error {
	// A PDB comes with more than one instance.
	o.instances = max(o.instances, 2)
	fmt.Printf("kill -9 benchmark: %d rounds of %d LRPs x %d instances, %d clients; load %s\n",
		o.crashRounds, o.lrps, o.instances, o.clients, benchenv.LoadAverage())
	failedRounds := 0
	for round := 1; round <= o.crashRounds; round++ {
		ok, err := crashRound(ctx, o, clientset, kubeconfig, round)
		if err != nil {
			return fmt.Errorf("round %d: %w", round, err)
		}
		if !ok {
			failedRounds++
		}
	}
	fmt.Printf("%d of %d rounds ended with every StatefulSet owning exactly its objects and nothing orphaned; load %s\n",
		o.crashRounds-failedRounds, o.crashRounds, benchenv.LoadAverage())
	return nil
}

func crashRound(ctx context.Context, o options, clientset kubernetes.Interface, kubeconfig string, round int) (bool, error) {
	ns, err := clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "iris-bench-kill-"}}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	if !o.keep {
		defer clientset.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	}
	bodies := make([][]byte, o.lrps)
	paths := make([]string, o.lrps)
	for i := range bodies {
		bodies[i], paths[i] = ownedEverythingBody(i, o.instances)
	}

	iris, url, err := startIris(o.irisBinary, kubeconfig, ns.Name)
	if err != nil {
		return false, err
	}
	// Killed once a random number of desires were accepted: somewhere in
	// the middle of the run, with requests in flight.
	killAfter := 1 + rand.IntN(max(o.lrps-1, 1))
	accepted := make([]bool, o.lrps)
	var acceptedCount atomic.Int64
	var killOnce sync.Once
	kill := func() {
		killOnce.Do(func() {
			_ = iris.Process.Signal(syscall.SIGKILL)
			_ = iris.Wait()
		})
	}
	start := time.Now()
	desireEach(url, o.clients, indices(o.lrps), bodies, paths, func(i int, ok bool) {
		if !ok {
			return
		}
		accepted[i] = true
		if acceptedCount.Add(1) == int64(killAfter) {
			go kill()
		}
	})
	kill()
	killedAfter := acceptedCount.Load()

	// CC re-desires what it got no 202 for, until it gets one.
	iris, url, err = startIris(o.irisBinary, kubeconfig, ns.Name)
	if err != nil {
		return false, err
	}
	defer stopIris(iris)
	var retry []int
	for i, ok := range accepted {
		if !ok {
			retry = append(retry, i)
		}
	}
	redesired := len(retry)
	for attempt := 0; len(retry) > 0; attempt++ {
		if attempt == 5 {
			return false, fmt.Errorf("%d desires still fail after %d attempts", len(retry), attempt)
		}
		var failed []int
		var mu sync.Mutex
		desireEach(url, o.clients, retry, bodies, paths, func(i int, ok bool) {
			if !ok {
				mu.Lock()
				failed = append(failed, i)
				mu.Unlock()
			}
		})
		retry = failed
	}
	desired := time.Since(start)

	atOnce, err := countOwned(ctx, clientset, ns.Name)
	if err != nil {
		return false, err
	}
	settleStart := time.Now()
	settled := atOnce
	for !settled.complete(o.lrps) && time.Since(settleStart) < 2*time.Minute {
		time.Sleep(time.Second)
		if settled, err = countOwned(ctx, clientset, ns.Name); err != nil {
			return false, err
		}
	}
	fmt.Printf("round %d: killed after %d of %d accepted, %d re-desired, all desired in %s\n",
		round, killedAfter, o.lrps, redesired, desired.Round(time.Millisecond))
	fmt.Printf("  right after the re-desires: %s\n", atOnce)
	fmt.Printf("  %s later: %s\n", time.Since(settleStart).Round(time.Second), settled)
	return settled.complete(o.lrps), nil
}

func indices(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// desireEach PUTs bodies[i] for every i in which, with clients at a time,
// and reports each outcome (202 or not).
func desireEach(url string, clients int, which []int, bodies [][]byte, paths []string, done func(i int, accepted bool)) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: time.Minute}
	work := make(chan int)
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				req, _ := http.NewRequest(http.MethodPut, url+paths[i], bytes.NewReader(bodies[i]))
				resp, err := client.Do(req)
				ok := err == nil && resp.StatusCode == http.StatusAccepted
				if resp != nil {
					resp.Body.Close()
				}
				done(i, ok)
			}
		}()
	}
	for _, i := range which {
		work <- i
	}
	close(work)
	wg.Wait()
}

// ownedEverythingBody is an LRP with registry credentials, a security group
// and instances instances (a PDB from 2).
func ownedEverythingBody(i, instances int) ([]byte, string) {
	guid, version := uuid.NewString(), uuid.NewString()
	lrp := models.DesireLRPRequest{
		GUID: guid, Version: version, ProcessGUID: guid + "-" + version, ProcessType: "web",
		AppGUID: guid, AppName: fmt.Sprintf("kill-%d", i), SpaceName: "bench", Ports: []int32{8080},
		Instances: ptr.To(instances), LastUpdated: "1700000000.0", HealthCheckType: "port",
		MemoryMB: 64, DiskMB: 128, CPUWeight: 1,
		EgressRules: []models.SecurityGroupRule{{Protocol: "tcp", Destinations: []string{"10.0.0.0/8"}, Ports: []uint32{5432}}},
		Lifecycle: models.Lifecycle{DockerLifecycle: &models.DockerLifecycle{
			Image: "registry.example.com/bench/dora:latest", RegistryUsername: "bench", RegistryPassword: "bench-password",
		}},
	}
	body, _ := json.Marshal(lrp)
	return body, "/apps/" + lrp.ProcessGUID
}

// ownedCount is what a namespace holds: StatefulSets, and per kind of owned
// object how many StatefulSets lack theirs, how many exist but are not owned
// by their StatefulSet, and how many have no StatefulSet at all (orphans).
type ownedCount struct {
	statefulSets int
	missing      map[string]int
	unowned      map[string]int
	orphaned     map[string]int
}

func (c ownedCount) complete(want int) bool {
	return c.statefulSets == want && sum(c.missing) == 0 && sum(c.unowned) == 0 && sum(c.orphaned) == 0
}

func (c ownedCount) String() string {
	return fmt.Sprintf("%d StatefulSets; missing %v; not owned %v; orphaned %v", c.statefulSets, c.missing, c.unowned, c.orphaned)
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func countOwned(ctx context.Context, clientset kubernetes.Interface, ns string) (ownedCount, error) {
	c := ownedCount{missing: map[string]int{}, unowned: map[string]int{}, orphaned: map[string]int{}}
	opts := metav1.ListOptions{LabelSelector: k8s.LabelSourceType + "=" + k8s.SourceTypeApp}
	stss, err := clientset.AppsV1().StatefulSets(ns).List(ctx, opts)
	if err != nil {
		return c, err
	}
	uids := map[string]types.UID{}
	for _, sts := range stss.Items {
		uids[sts.Name] = sts.UID
	}
	c.statefulSets = len(uids)
	owners := map[string]map[string][]metav1.OwnerReference{"Secret": {}, "NetworkPolicy": {}, "PDB": {}}
	secrets, err := clientset.CoreV1().Secrets(ns).List(ctx, opts)
	if err != nil {
		return c, err
	}
	for _, s := range secrets.Items {
		owners["Secret"][strings.TrimSuffix(s.Name, "-registry")] = s.OwnerReferences
	}
	policies, err := clientset.NetworkingV1().NetworkPolicies(ns).List(ctx, opts)
	if err != nil {
		return c, err
	}
	for _, p := range policies.Items {
		owners["NetworkPolicy"][p.Name] = p.OwnerReferences
	}
	pdbs, err := clientset.PolicyV1().PodDisruptionBudgets(ns).List(ctx, opts)
	if err != nil {
		return c, err
	}
	for _, p := range pdbs.Items {
		owners["PDB"][p.Name] = p.OwnerReferences
	}
	for kind, byName := range owners {
		for name, uid := range uids {
			refs, ok := byName[name]
			switch {
			case !ok:
				c.missing[kind]++
			case len(refs) != 1 || refs[0].UID != uid || !ptr.Deref(refs[0].Controller, false):
				c.unowned[kind]++
			}
		}
		for name := range byName {
			if _, ok := uids[name]; !ok {
				c.orphaned[kind]++
			}
		}
	}
	return c, nil
}

func stopIris(iris *exec.Cmd) {
	_ = iris.Process.Signal(syscall.SIGTERM)
	_ = iris.Wait()
}
