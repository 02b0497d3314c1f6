// Command testapp is the app the integration suite runs in real containers
// (on the real node of scripts/cluster): a static binary the suite builds
// into an image and pushes to its own registry. It serves HTTP on $PORT and
// reports what it sees from inside its container, and misbehaves on demand:
//
//	GET  /            "testapp" and CF_INSTANCE_INDEX
//	GET  /env         its environment, as a JSON object
//	GET  /identity    fields of /proc/self/status (Uid, Gid, CapEff,
//	                  NoNewPrivs, Seccomp), whether a service account token
//	                  is mounted, whether / is writable and how it is
//	                  mounted (RootMount ro|rw), the uid map (UIDMap) and
//	                  the AppArmor profile (where the kernel has one), as JSON
//	GET  /health      200, or 503 while unhealthy
//	POST /health?ok=  true or false: what /health answers from now on
//	POST /exit?code=N exits with status N (after answering)
//	POST /allocate?mb=N  allocates and touches N MiB, and keeps it
//	POST /log?stream=stdout|stderr&line=L&n=N  writes L N times
//
//	POST /listen      starts listening on $PORT (with LISTEN=false)
//
// As a command (a task) it serves nothing:
//
//	testapp exit [N]  prints its identity and exits with status N (else
//	                  $TESTAPP_EXIT_CODE, else 0)
//
// HEALTHY=false in its environment starts it unhealthy. LISTEN=false starts
// it without listening on $PORT (a port health check fails) but on
// $CONTROL_PORT only, where POST /listen makes it listen on $PORT too.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		os.Exit(command(os.Args[1:]))
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	a := &app{port: port, listening: make(chan struct{})}
	a.healthy.Store(os.Getenv("HEALTHY") != "false")
	handler := a.routes()
	if control := os.Getenv("CONTROL_PORT"); control != "" {
		go serve(control, handler)
	}
	if os.Getenv("LISTEN") == "false" {
		<-a.listening
	}
	serve(port, handler)
}

// serve serves handler on port until it fails, which ends the app.
func serve(port string, handler http.Handler) {
	fmt.Printf("testapp listening on :%s\n", port)
	server := &http.Server{Addr: ":" + port, Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	if err := server.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(1)
	}
}

type app struct {
	port      string
	healthy   atomic.Bool
	listen    sync.Once
	listening chan struct{} // closed by POST /listen
	mu        sync.Mutex
	held      [][]byte // memory /allocate keeps
}

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "testapp %s\n", os.Getenv("CF_INSTANCE_INDEX"))
	})
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, _ *http.Request) {
		env := map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		writeJSON(w, env)
	})
	mux.HandleFunc("GET /identity", func(w http.ResponseWriter, _ *http.Request) {
		id, err := identity()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, id)
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		if !a.healthy.Load() {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "healthy")
	})
	mux.HandleFunc("POST /health", func(w http.ResponseWriter, r *http.Request) {
		ok, err := strconv.ParseBool(r.URL.Query().Get("ok"))
		if err != nil {
			http.Error(w, "ok must be true or false", http.StatusBadRequest)
			return
		}
		a.healthy.Store(ok)
		fmt.Fprintln(w, "health set to", ok)
	})
	mux.HandleFunc("POST /listen", func(w http.ResponseWriter, _ *http.Request) {
		a.listen.Do(func() { close(a.listening) })
		fmt.Fprintf(w, "listening on :%s\n", a.port)
	})
	mux.HandleFunc("POST /exit", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.URL.Query().Get("code"))
		if err != nil {
			http.Error(w, "code must be a number", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "exiting with %d\n", code)
		w.(http.Flusher).Flush()
		fmt.Fprintf(os.Stderr, "testapp: exiting with %d as asked\n", code)
		// Let the answer leave before the process does.
		time.AfterFunc(100*time.Millisecond, func() { os.Exit(code) })
	})
	mux.HandleFunc("POST /allocate", func(w http.ResponseWriter, r *http.Request) {
		mb, err := strconv.Atoi(r.URL.Query().Get("mb"))
		if err != nil || mb <= 0 {
			http.Error(w, "mb must be a positive number", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "allocating %d MiB\n", mb)
		w.(http.Flusher).Flush()
		go a.allocate(mb)
	})
	mux.HandleFunc("POST /log", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		out := os.Stdout
		switch q.Get("stream") {
		case "stdout", "":
		case "stderr":
			out = os.Stderr
		default:
			http.Error(w, "stream must be stdout or stderr", http.StatusBadRequest)
			return
		}
		n := 1
		if s := q.Get("n"); s != "" {
			if n, _ = strconv.Atoi(s); n <= 0 {
				http.Error(w, "n must be a positive number", http.StatusBadRequest)
				return
			}
		}
		for range n {
			fmt.Fprintln(out, q.Get("line"))
		}
		fmt.Fprintf(w, "wrote %d lines\n", n)
	})
	return mux
}

// allocate touches every page so the memory is really used (and counted
// against the container's limit).
func (a *app) allocate(mb int) {
	for range mb {
		chunk := make([]byte, 1<<20)
		for i := 0; i < len(chunk); i += 4096 {
			chunk[i] = 1
		}
		a.mu.Lock()
		a.held = append(a.held, chunk)
		a.mu.Unlock()
	}
	fmt.Printf("testapp: holding %d MiB more\n", mb)
}

// identity reports who the process is from inside its container.
func identity() (map[string]any, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	id := map[string]any{}
	wanted := map[string]bool{"Uid": true, "Gid": true, "CapEff": true, "CapPrm": true, "CapBnd": true, "NoNewPrivs": true, "Seccomp": true}
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		k, v, ok := strings.Cut(scanner.Text(), ":")
		if ok && wanted[k] {
			id[k] = strings.TrimSpace(v)
		}
	}
	if err := scanner.Err(); err != nil {
		return nil, err
	}
	// How / is mounted: "ro" with a read-only root filesystem.
	if mounts, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(mounts), "\n") {
			// id parent major:minor root mountpoint options ...; the last
			// mount on / is the one seen.
			if f := strings.Fields(line); len(f) > 5 && f[4] == "/" {
				id["RootMount"] = strings.Split(f[5], ",")[0]
			}
		}
	}
	// The user namespace: "0 0 4294967295" in the host's, a range of
	// 65536 from a high host uid in a pod's own (hostUsers: false).
	if uidMap, err := os.ReadFile("/proc/self/uid_map"); err == nil {
		id["UIDMap"] = strings.Join(strings.Fields(string(uidMap)), " ")
	}
	// The AppArmor profile confining the process, where the kernel has
	// AppArmor ("cri-containerd.apparmor.d (enforce)", "unconfined").
	for _, attr := range []string{"/proc/self/attr/apparmor/current", "/proc/self/attr/current"} {
		if profile, err := os.ReadFile(attr); err == nil {
			id["AppArmor"] = strings.TrimRight(string(profile), "\x00\n")
			break
		}
	}
	_, err = os.Stat("/var/run/secrets/kubernetes.io/serviceaccount/token")
	id["ServiceAccountToken"] = !errors.Is(err, os.ErrNotExist)
	probe, err := os.CreateTemp("/", ".testapp-write-")
	id["RootWritable"] = err == nil
	if err == nil {
		probe.Close()
		os.Remove(probe.Name())
	}
	return id, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// command runs testapp as a one-off command and returns its exit status.
func command(args []string) int {
	switch {
	case len(args) <= 2 && args[0] == "exit":
		code, err := exitCode(args[1:])
		if err != nil {
			fmt.Fprintln(os.Stderr, "testapp:", err)
			return 2
		}
		if id, err := identity(); err == nil {
			data, _ := json.Marshal(id)
			fmt.Printf("testapp identity %s\n", data)
		}
		fmt.Printf("testapp: exiting with %d\n", code)
		return code
	default:
		fmt.Fprintf(os.Stderr, "testapp: unknown command %q (exit N)\n", args)
		return 2
	}
}

// exitCode is the status `testapp exit [N]` exits with: N, else
// $TESTAPP_EXIT_CODE, else 0.
func exitCode(args []string) (int, error) {
	s := os.Getenv("TESTAPP_EXIT_CODE")
	if len(args) == 1 {
		s = args[0]
	}
	if s == "" {
		return 0, nil
	}
	code, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("exit status %q is not a number", s)
	}
	return code, nil
}
