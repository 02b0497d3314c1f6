// Command iris runs Iris's components as members of one ifrit group. Which
// components run in this process is chosen by the config's `components`.
package main

import (
	bbsclient "code.cloudfoundry.org/bbs"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/grouper"
	"github.com/tedsuo/ifrit/sigmon"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"
	"k8s.io/utils/clock"

	"github.com/iris-cf/iris/backends/diego"
	bbsbackend "github.com/iris-cf/iris/backends/kubernetes"
	"github.com/iris-cf/iris/backends/spaces"
	"github.com/iris-cf/iris/bifrost"
	"github.com/iris-cf/iris/bifrost/bbs"
	"github.com/iris-cf/iris/cc"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/events"
	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/k8s/reconcile"
	"github.com/iris-cf/iris/leader"
	"github.com/iris-cf/iris/logs"
	"github.com/iris-cf/iris/logs/podlogs"
	"github.com/iris-cf/iris/metrics"
	"github.com/iris-cf/iris/ops"
	"github.com/iris-cf/iris/route"
	"github.com/iris-cf/iris/stager/docker"
)

func main() {
	// `iris actions` runs a Diego recipe inside a pod (no config file).
	if len(os.Args) > 1 && os.Args[1] == "actions" {
		os.Exit(runActions(os.Args[2:]))
	}
	// `iris spaces` lists and changes where each space's LRPs run.
	if len(os.Args) > 1 && os.Args[1] == "spaces" {
		os.Exit(runSpaces(os.Args[2:], os.Stdout, os.Stderr))
	}
	// `iris log-agent` is the node DaemonSet; plain `iris` runs the components.
	logAgent := len(os.Args) > 1 && os.Args[1] == "log-agent"
	args := os.Args[1:]
	if logAgent {
		args = os.Args[2:]
	}
	flags := flag.NewFlagSet("iris", flag.ExitOnError)
	configPath := flags.String("config", "", "path to the Iris YAML config (see config/iris.example.yml)")
	_ = flags.Parse(args)
	if *configPath == "" {
		fmt.Fprintln(os.Stderr, "iris: --config is required")
		os.Exit(2)
	}
	load := config.Load
	if logAgent {
		load = config.LoadLogAgent
	}
	cfg, err := load(*configPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "iris: %v\n", err)
		os.Exit(2)
	}
	logger, err := newLogger(cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "iris: %v\n", err)
		os.Exit(2)
	}
	// client-go logs through klog; send it through lager so operators parse
	// one format and still see watch and RBAC errors.
	klog.SetLogger(logr.New(newLagerSink(logger)))

	build := buildMembers
	if logAgent {
		build = logAgentMembers
	}
	opsServer := ops.NewServer(logger, cfg.Ops.ListenAddress)
	// The log agent shares the config file but serves no admin route: its
	// ops listener stays plain (its pods mount no ops certificate).
	if cfg.Ops.TLSCertFile != "" && !logAgent {
		if err := opsServer.ServeTLS(cfg.Ops.TLSCertFile, cfg.Ops.TLSKeyFile, cfg.Ops.ClientCAFile); err != nil {
			logger.Error("start-failed", err)
			os.Exit(1)
		}
	}
	members, err := build(logger, cfg, opsServer)
	if err != nil {
		logger.Error("start-failed", err)
		os.Exit(1)
	}
	logger.Info("starting", lager.Data{"log_agent": logAgent, "components": cfg.Components, "namespaces": cfg.WorkloadsNamespaces})
	// The ops listener comes first (liveness answers while caches sync) and
	// readiness last (every member started).
	if cfg.Ops.ListenAddress != "" {
		members = append(grouper.Members{{Name: "ops", Runner: opsServer}}, members...)
		members = append(members, grouper.Member{Name: "ready", Runner: opsServer.ReadyMarker()})
	}
	// Ordered: caches sync before the API serves; on SIGTERM the API drains
	// first and the caches stop last.
	process := ifrit.Invoke(sigmon.New(grouper.NewOrdered(os.Interrupt, members)))
	if err := <-process.Wait(); err != nil {
		logger.Error("exited-with-failure", err)
		os.Exit(1)
	}
	logger.Info("exited")
}

func newLogger(level string) (lager.Logger, error) {
	minLevel, err := lager.LogLevelFromString(level)
	if err != nil {
		return nil, fmt.Errorf("log_level: %w", err)
	}
	logger := lager.NewLogger("iris")
	logger.RegisterSink(lager.NewPrettySink(os.Stdout, minLevel))
	return logger, nil
}

func buildMembers(logger lager.Logger, cfg config.Config, opsServer *ops.Server) (grouper.Members, error) {
	restConfig, clientset, err := countedKubeClient(cfg, "iris", opsServer.CountKubeAPIRequests())
	if err != nil {
		return nil, err
	}

	// One set of informers serves every component in this process.
	caches, err := k8s.NewCaches(clientset, cfg.WorkloadsNamespaces)
	if err != nil {
		return nil, err
	}

	// The route emitter registers its handlers before the caches start, so
	// it sees every existing pod as an add.
	var members grouper.Members
	if cfg.Runs(config.ComponentRoute) {
		natsPassword, err := cfg.NATSPasswordValue()
		if err != nil {
			return nil, err
		}
		bus, err := route.ConnectNATS(logger, route.NATSOptions{
			Servers:    cfg.Route.NATSServers,
			Username:   cfg.Route.NATSUsername,
			Password:   natsPassword,
			CACertFile: cfg.Route.NATSCACertFile,
			CertFile:   cfg.Route.NATSCertFile,
			KeyFile:    cfg.Route.NATSKeyFile,
		})
		if err != nil {
			return nil, err
		}
		emitter, err := route.NewEmitter(logger, bus, caches, cfg.Route.TLSPort,
			time.Duration(cfg.Route.DefaultRegisterIntervalSeconds)*time.Second, clock.RealClock{})
		if err != nil {
			return nil, err
		}
		opsServer.CounterFunc("nats_messages_published_total", "router.register/unregister messages published to NATS.", counter(emitter.Published))
		opsServer.CounterFunc("nats_publish_failures_total", "Messages NATS did not take (resent on the next pass).", counter(emitter.PublishFailures))
		// Every replica stays connected and keeps its route table; only
		// the Lease holder publishes. The connection closes after the
		// emitter stopped, so its last messages are flushed.
		members = append(members,
			grouper.Member{Name: "nats", Runner: bus},
			grouper.Member{Name: "route-emitter", Runner: onLeader(logger, cfg, clientset, cfg.LeaderElection.RouteEmitterName, emitter)})
	}
	// Logs and metrics share one sender; it starts before and stops after
	// everything that emits, so its drain sees their last envelopes.
	var sender *logs.Sender
	if cfg.Loggregator.Enabled() {
		var closeConn func() error
		sender, closeConn, err = loggregatorSender(logger, cfg.Loggregator)
		if err != nil {
			return nil, err
		}
		members = append(grouper.Members{{Name: "loggregator", Runner: closing(sender, closeConn)}}, members...)
		observeSender(opsServer, sender)
	}
	leaderMembers, err := leaderElected(logger, cfg, restConfig, clientset, caches, sender, opsServer)
	if err != nil {
		return nil, err
	}
	if len(leaderMembers) > 0 {
		members = append(members, grouper.Member{Name: "leader", Runner: onLeader(logger, cfg, clientset, cfg.LeaderElection.Name,
			grouper.NewParallel(os.Interrupt, leaderMembers))})
	}
	// Caches first: everything after them reads synced caches.
	members = append(grouper.Members{{Name: "informers", Runner: ifrit.RunFunc(caches.Run(logger))}}, members...)

	if cfg.Runs(config.ComponentAPI) {
		// The reconciler rebuilds a BBS LRP's recipe Secret from the
		// DesiredLRP stored on its StatefulSet.
		builder := k8s.NewBuilder(cfg.LRP, k8s.WithRecipeSource(bbsbackend.RecipeOf), k8s.WithUploadIdentity(cfg.Staging.UploadIdentitySecretName))
		lrps := k8s.NewLRPClient(clientset, caches, builder, cfg.WorkloadsNamespaces, clock.RealClock{})
		// Every API replica repairs what LRPs own (see k8s/reconcile for
		// why no Lease); it runs before the API serves and stops after it.
		reconciler, err := reconcile.New(logger, clientset, caches, builder, clock.RealClock{}, reconcile.DefaultOptions())
		if err != nil {
			return nil, err
		}
		opsServer.CounterFunc("lrp_owned_objects_repaired_total", "Secrets, NetworkPolicies and PDBs of LRPs written because they were missing, unowned or different.", counter(reconciler.Repairs))
		opsServer.CounterFunc("lrp_owned_objects_deleted_total", "Orphaned Secrets, NetworkPolicies and PDBs of LRPs, and surplus PDBs, deleted.", counter(reconciler.Deletions))
		members = append(members, grouper.Member{Name: "lrp-reconciler", Runner: reconciler})
		tasks := k8s.NewTaskClient(clientset, caches, builder, cfg.WorkloadsNamespaces)
		staging := k8s.NewStagingClient(clientset, caches, builder, cfg.Staging, cfg.WorkloadsNamespaces)
		limits := bifrost.Limits{
			MaxRequestBodyBytes: cfg.API.MaxRequestBodyBytes,
			MaxInstances:        cfg.LRP.MaxInstances,
			MaxInFlightRequests: cfg.API.MaxInFlightRequests,
			DefaultTaskMemoryMB: cfg.Tasks.DefaultMemoryMB,
			DefaultTaskDiskMB:   cfg.Tasks.DefaultDiskMB,
		}
		handler := bifrost.NewHandler(logger, bifrost.Backends{LRPs: lrps, Tasks: tasks, Staging: staging}, limits)
		timeouts := bifrost.Timeouts{
			Read:     time.Duration(cfg.API.ReadTimeoutSeconds) * time.Second,
			Idle:     time.Duration(cfg.API.IdleTimeoutSeconds) * time.Second,
			Shutdown: time.Duration(cfg.API.ShutdownTimeoutSeconds) * time.Second,
		}
		if cfg.API.ListenAddress != "" {
			members = append(members, grouper.Member{Name: "api", Runner: bifrost.NewServer(logger, cfg.API.ListenAddress,
				opsServer.InstrumentHandler("plain", handler), timeouts)})
		}
		if cfg.API.TLSListenAddress != "" {
			server, err := bifrost.NewMutualTLSServer(logger, cfg.API.TLSListenAddress, opsServer.InstrumentHandler("tls", handler), timeouts,
				cfg.API.TLSCertFile, cfg.API.TLSKeyFile, cfg.API.ClientCAFile)
			if err != nil {
				return nil, err
			}
			// Staging pods have no client certificate: they report with
			// their staging's token, on that route only.
			server.AcceptWithoutClientCertificate(opsServer.InstrumentHandler("tls-staging-token", bifrost.NewStagingTokenHandler(logger, staging, limits)))
			members = append(members, grouper.Member{Name: "api-tls", Runner: server})
		}
		if cfg.BBS.Enabled() {
			bbsMembers, err := bbsFront(logger, cfg, clientset, caches, builder, lrps, opsServer)
			if err != nil {
				return nil, err
			}
			members = append(members, bbsMembers...)
		}
	}
	return members, nil
}

// bbsFront is the BBS front over the Kubernetes backend, or, with a Diego
// BBS configured, over both, routed by space: the placement watch, the
// relay of Diego's events and the server, in that order. The Kubernetes
// event feed registers with the caches here, before they start.
func bbsFront(logger lager.Logger, cfg config.Config, clientset kubernetes.Interface, caches *k8s.Caches, builder *k8s.Builder, lrps *k8s.LRPClient, opsServer *ops.Server) (grouper.Members, error) {
	hub := bbs.NewEventHub(logger, bbs.DefaultSubscriberBuffer)
	if _, err := bbsbackend.NewFeed(logger, caches, hub); err != nil {
		return nil, err
	}
	translate := bbsbackend.TranslateOptions{AllowPrivileged: cfg.BBS.AllowPrivileged, MaxInstances: cfg.LRP.MaxInstances, Stacks: cfg.BBS.Stacks}
	kube := bbsbackend.NewBackend(clientset, caches, lrps, translate)
	// Tasks' completions are posted by the recipe task reporter (events).
	kubeTasks := bbsbackend.NewTasks(k8s.NewRecipeTaskClient(clientset, caches, builder, cfg.WorkloadsNamespaces), translate, clock.RealClock{})
	domains := bbs.NewDomainStore(clock.RealClock{})
	backends := bbs.Backends{DesiredLRPs: kube, ActualLRPs: kube, Domains: domains, Tasks: kubeTasks}
	var members grouper.Members
	if d := cfg.BBS.Diego; d.Enabled() {
		client, err := bbsclient.NewClient(d.URL, d.CAFile, d.ClientCertFile, d.ClientKeyFile, 0, 0)
		if err != nil {
			return nil, fmt.Errorf("bbs: diego: %w", err)
		}
		fallback, err := spaces.ParseSide(d.DefaultBackend)
		if err != nil {
			return nil, fmt.Errorf("bbs: diego: default_backend: %w", err)
		}
		namespace := cfg.LeaderElection.Namespace
		if namespace == "" {
			namespace = cfg.DefaultNamespace()
		}
		placement, err := spaces.NewConfigMapPlacement(logger, clientset, namespace, d.PlacementConfigMap, fallback)
		if err != nil {
			return nil, err
		}
		diegoBackend := diego.NewBackend(client)
		router := spaces.NewRouter(kube, domains, diegoBackend, diegoBackend, placement)
		backends = bbs.Backends{DesiredLRPs: router, ActualLRPs: router, Domains: router,
			Tasks: spaces.NewTaskRouter(kubeTasks, diego.NewTasks(client), placement)}
		// Live migration of spaces whose placement changed: every replica
		// routes by the moves; the Lease holder makes them.
		movesName := spaces.MigrationsConfigMap(d.PlacementConfigMap)
		moves, err := spaces.NewMoveWatch(logger, clientset, namespace, movesName)
		if err != nil {
			return nil, err
		}
		router.FollowMoves(moves)
		for _, state := range []spaces.MoveState{spaces.Copying, spaces.Switched} {
			opsServer.GaugeFunc("space_moves", "LRPs being moved between Diego and Kubernetes, by state (from the moves ConfigMap).",
				prometheus.Labels{"state": string(state)}, func() float64 { return float64(moves.Count(state, false)) })
		}
		opsServer.GaugeFunc("space_moves_failing", "LRPs being moved whose last step failed (retried with backoff).", nil,
			func() float64 { return float64(moves.Count("", true)) })
		opts := spaces.DefaultMigratorOptions()
		opts.Interval = time.Duration(d.Migration.IntervalSeconds) * time.Second
		opts.MaxInFlight = d.Migration.MaxInFlight
		migrator := spaces.NewMigrator(logger, kube, diegoBackend, placement,
			spaces.NewConfigMapMoveStore(clientset, namespace, movesName), clock.RealClock{}, opts)
		admin := spaces.NewAdminHandler(logger, spaces.Status{Kubernetes: kube, Diego: diegoBackend, Placement: placement, Moves: moves},
			clientset, namespace, d.PlacementConfigMap)
		opsServer.HandleAdmin("GET /admin/spaces", admin)
		opsServer.HandleAdmin("PUT /admin/placement", admin)
		members = append(members,
			grouper.Member{Name: "space-placement", Runner: placement},
			grouper.Member{Name: "space-moves", Runner: moves},
			grouper.Member{Name: "diego-event-relay", Runner: diego.NewRelay(logger, client, hub, clock.RealClock{})},
			grouper.Member{Name: "space-migrator", Runner: onLeader(logger, cfg, clientset, d.Migration.LeaseName, migrator)})
	}
	handler := bbs.NewHandler(logger, backends, hub, cfg.API.MaxRequestBodyBytes)
	server, err := bbs.NewServer(logger, cfg.BBS, opsServer.InstrumentHandler("bbs", handler), hub,
		time.Duration(cfg.API.ShutdownTimeoutSeconds)*time.Second)
	if err != nil {
		return nil, err
	}
	return append(members, grouper.Member{Name: "bbs", Runner: server}), nil
}

// leaderElected are the members that must run on one replica at a time:
// the crash, task and staging reporters and CELL logs (events), container
// metrics, and pod log streaming.
func leaderElected(logger lager.Logger, cfg config.Config, restConfig *rest.Config, clientset kubernetes.Interface, caches *k8s.Caches, sender *logs.Sender, opsServer *ops.Server) (grouper.Members, error) {
	var members grouper.Members
	if cfg.Runs(config.ComponentEvents) {
		reporters, err := reporters(logger, cfg, clientset, caches, opsServer)
		if err != nil {
			return nil, err
		}
		members = append(members, reporters...)
		if sender != nil {
			cellLogs, err := events.NewCellLogger(logger, caches, sender)
			if err != nil {
				return nil, err
			}
			members = append(members, grouper.Member{Name: "cell-logs", Runner: cellLogs})
		}
	}
	if cfg.Runs(config.ComponentMetrics) && sender != nil {
		metricsClient, err := metricsclient.NewForConfig(restConfig)
		if err != nil {
			return nil, fmt.Errorf("creating metrics client: %w", err)
		}
		usage := metrics.NewKubeUsage(clientset, metricsClient, cfg.Metrics.DiskFromStatsSummary)
		reporter := metrics.NewReporter(logger, usage, caches, sender, cfg.WorkloadsNamespaces, time.Duration(cfg.Metrics.IntervalSeconds)*time.Second)
		opsServer.CounterFunc("metrics_envelopes_skipped_total", "Container metrics a pass did not emit because Loggregator did not take them within the interval.", counter(reporter.Skipped))
		members = append(members, grouper.Member{Name: "metrics", Runner: reporter})
	}
	if cfg.Runs(config.ComponentPodLogs) && sender != nil {
		streamer, err := podlogs.NewStreamer(logger, clientset, caches, sender)
		if err != nil {
			return nil, err
		}
		members = append(members, grouper.Member{Name: "pod-logs", Runner: streamer})
	}
	return members, nil
}

// reporters post crashes, task completions and staging results to CC.
func reporters(logger lager.Logger, cfg config.Config, clientset kubernetes.Interface, caches *k8s.Caches, opsServer *ops.Server) (grouper.Members, error) {
	ccClient, err := cc.NewClient(cc.Options{
		InternalAPIURL: cfg.CC.InternalAPIURL,
		CACertFile:     cfg.CC.CACertFile,
		CertFile:       cfg.CC.CertFile,
		KeyFile:        cfg.CC.KeyFile,
		Timeout:        time.Duration(cfg.CC.TimeoutSeconds) * time.Second,
	})
	if err != nil {
		return nil, err
	}
	opts := events.Options{
		MaxRetries: cfg.Events.MaxRetries,
		MaxBackoff: time.Duration(cfg.Events.MaxBackoffSeconds) * time.Second,
		JobTTL:     time.Duration(cfg.Events.TaskJobTTLSeconds) * time.Second,
		Clock:      clock.RealClock{},
	}
	crashes, err := events.NewCrashReporter(logger, clientset, caches, ccClient, opts)
	if err != nil {
		return nil, err
	}
	tasks, err := events.NewTaskReporter(logger, clientset, caches, ccClient, opts)
	if err != nil {
		return nil, err
	}
	images := imageStager{stager: docker.NewStager(docker.Options{InsecureRegistries: cfg.Staging.InsecureRegistries})}
	staging, err := events.NewStagingReporter(logger, clientset, caches, ccClient, images, opts)
	if err != nil {
		return nil, err
	}
	// Tasks desired through the BBS front, completed as BBS completes them.
	recipeTasks, err := events.NewRecipeTaskReporter(logger, clientset, caches, ccClient, opts)
	if err != nil {
		return nil, err
	}
	observeQueue(opsServer, "crash", crashes)
	observeQueue(opsServer, "task", tasks)
	observeQueue(opsServer, "staging", staging)
	observeQueue(opsServer, "bbs_task", recipeTasks)
	return grouper.Members{
		{Name: "crash-reporter", Runner: crashes},
		{Name: "task-reporter", Runner: tasks},
		{Name: "staging-reporter", Runner: staging},
		{Name: "bbs-task-reporter", Runner: recipeTasks},
	}, nil
}

// onLeader runs runner while this process holds the Lease named lease.
func onLeader(logger lager.Logger, cfg config.Config, clientset kubernetes.Interface, lease string, runner ifrit.Runner) ifrit.Runner {
	le := cfg.LeaderElection
	namespace := le.Namespace
	if namespace == "" {
		namespace = cfg.DefaultNamespace()
	}
	hostname, _ := os.Hostname()
	return leader.NewRunner(logger, clientset, leader.Options{
		Namespace:     namespace,
		Name:          lease,
		Identity:      hostname + "-" + strconv.Itoa(os.Getpid()),
		LeaseDuration: time.Duration(le.LeaseDurationSeconds) * time.Second,
		RenewDeadline: time.Duration(le.RenewDeadlineSeconds) * time.Second,
		RetryPeriod:   time.Duration(le.RetryPeriodSeconds) * time.Second,
	}, runner)
}

// loggregatorSender connects to the ingress; closeConn must run after the
// sender stopped.
func loggregatorSender(logger lager.Logger, cfg config.Loggregator) (*logs.Sender, func() error, error) {
	client, conn, err := logs.Dial(logs.IngressConfig{
		Address:    cfg.IngressAddress,
		CACertFile: cfg.CACertFile,
		CertFile:   cfg.CertFile,
		KeyFile:    cfg.KeyFile,
		ServerName: cfg.ServerName,
	})
	if err != nil {
		return nil, nil, err
	}
	return logs.NewSender(logger, client, logs.SenderConfig{BufferSize: cfg.BufferSize}), conn.Close, nil
}

// closing runs runner, then closeFn.
func closing(runner ifrit.Runner, closeFn func() error) ifrit.Runner {
	return ifrit.RunFunc(func(signals <-chan os.Signal, ready chan<- struct{}) error {
		defer func() { _ = closeFn() }()
		return runner.Run(signals, ready)
	})
}

// kubeClient builds the API client, rate-limited as configured.
func kubeClient(cfg config.Config, userAgent string) (*rest.Config, kubernetes.Interface, error) {
	return countedKubeClient(cfg, userAgent, nil)
}

// countedKubeClient is kubeClient with its requests counted by count (the
// ops server's iris_kube_api_requests_total), if not nil.
func countedKubeClient(cfg config.Config, userAgent string, count func(http.RoundTripper) http.RoundTripper) (*rest.Config, kubernetes.Interface, error) {
	restConfig, err := kubeConfig(cfg.Kubeconfig)
	if err != nil {
		return nil, nil, err
	}
	restConfig.QPS = cfg.KubeAPIQPS
	restConfig.Burst = cfg.KubeAPIBurst
	restConfig.UserAgent = userAgent
	if count != nil {
		restConfig.Wrap(count)
	}
	clientset, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return nil, nil, fmt.Errorf("creating kubernetes client: %w", err)
	}
	return restConfig, clientset, nil
}

// kubeConfig uses the configured path, then $KUBECONFIG, then the in-cluster
// service account.
func kubeConfig(path string) (*rest.Config, error) {
	if path == "" {
		path = os.Getenv("KUBECONFIG")
	}
	if path == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no kubeconfig set and not in a cluster: %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}
