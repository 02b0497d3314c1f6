// Command iris runs Iris's components as members of one ifrit group. Which
// components run in this process is chosen by the config's `components`.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/go-logr/logr"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/grouper"
	"github.com/tedsuo/ifrit/sigmon"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/iris-cf/iris/bifrost"
	"github.com/iris-cf/iris/cc"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/events"
	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/leader"
	"github.com/iris-cf/iris/route"
	"github.com/iris-cf/iris/stager/docker"
)

func main() {
	configPath := flag.String("config", "", "path to the Iris YAML config (see config/iris.example.yml)")
	flag.Parse()
	if *configPath == "" {
		fmt.Fprintln(os.Stderr, "iris: --config is required")
		os.Exit(2)
	}
	cfg, err := config.Load(*configPath)
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

	members, err := buildMembers(logger, cfg)
	if err != nil {
		logger.Error("start-failed", err)
		os.Exit(1)
	}
	logger.Info("starting", lager.Data{"components": cfg.Components, "namespaces": cfg.WorkloadsNamespaces})
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

func buildMembers(logger lager.Logger, cfg config.Config) (grouper.Members, error) {
	restConfig, err := kubeConfig(cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	restConfig.QPS = cfg.KubeAPIQPS
	restConfig.Burst = cfg.KubeAPIBurst
	restConfig.UserAgent = "iris"
	clientset, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return nil, fmt.Errorf("creating kubernetes client: %w", err)
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
		bus, err := route.ConnectNATS(logger, route.NATSOptions{
			Servers:    cfg.Route.NATSServers,
			Username:   cfg.Route.NATSUsername,
			Password:   cfg.Route.NATSPassword,
			CACertFile: cfg.Route.NATSCACertFile,
			CertFile:   cfg.Route.NATSCertFile,
			KeyFile:    cfg.Route.NATSKeyFile,
		})
		if err != nil {
			return nil, err
		}
		emitter, err := route.NewEmitter(logger, bus, caches, cfg.Route.TLSPort,
			time.Duration(cfg.Route.DefaultRegisterIntervalSeconds)*time.Second)
		if err != nil {
			return nil, err
		}
		members = append(members, grouper.Member{Name: "route-emitter", Runner: emitter})
	}
	if cfg.Runs(config.ComponentEvents) {
		reporters, err := reporters(logger, cfg, clientset, caches)
		if err != nil {
			return nil, err
		}
		members = append(members, grouper.Member{Name: "reporters", Runner: reporters})
	}
	// Caches first: everything after them reads synced caches.
	members = append(grouper.Members{{Name: "informers", Runner: ifrit.RunFunc(caches.Run(logger))}}, members...)

	if cfg.Runs(config.ComponentAPI) {
		builder := k8s.NewBuilder(cfg.LRP)
		lrps := k8s.NewLRPClient(clientset, caches, builder, cfg.WorkloadsNamespaces)
		tasks := k8s.NewTaskClient(clientset, caches, builder, cfg.WorkloadsNamespaces)
		staging := k8s.NewStagingClient(clientset, caches, builder, cfg.Staging, cfg.WorkloadsNamespaces)
		handler := bifrost.NewHandler(logger, bifrost.Backends{LRPs: lrps, Tasks: tasks, Staging: staging}, cfg.API.MaxRequestBodyBytes)
		shutdown := time.Duration(cfg.API.ShutdownTimeoutSeconds) * time.Second
		if cfg.API.ListenAddress != "" {
			members = append(members, grouper.Member{Name: "api", Runner: bifrost.NewServer(logger, cfg.API.ListenAddress, handler, shutdown)})
		}
		if cfg.API.TLSListenAddress != "" {
			server, err := bifrost.NewMutualTLSServer(logger, cfg.API.TLSListenAddress, handler, shutdown,
				cfg.API.TLSCertFile, cfg.API.TLSKeyFile, cfg.API.ClientCAFile)
			if err != nil {
				return nil, err
			}
			members = append(members, grouper.Member{Name: "api-tls", Runner: server})
		}
	}
	return members, nil
}

// reporters runs the crash, task and staging reporters on the Lease holder only.
func reporters(logger lager.Logger, cfg config.Config, clientset kubernetes.Interface, caches *k8s.Caches) (ifrit.Runner, error) {
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
	maxBackoff := time.Duration(cfg.Events.MaxBackoffSeconds) * time.Second
	crashes, err := events.NewCrashReporter(logger, clientset, caches, ccClient, cfg.Events.MaxRetries, maxBackoff)
	if err != nil {
		return nil, err
	}
	tasks, err := events.NewTaskReporter(logger, clientset, caches, ccClient,
		time.Duration(cfg.Events.TaskJobTTLSeconds)*time.Second, cfg.Events.MaxRetries, maxBackoff)
	if err != nil {
		return nil, err
	}
	images := imageStager{stager: docker.NewStager(docker.Options{InsecureRegistries: cfg.Staging.InsecureRegistries})}
	staging, err := events.NewStagingReporter(logger, clientset, caches, ccClient, images,
		time.Duration(cfg.Events.TaskJobTTLSeconds)*time.Second, cfg.Events.MaxRetries, maxBackoff)
	if err != nil {
		return nil, err
	}
	reporters := grouper.NewParallel(os.Interrupt, grouper.Members{
		{Name: "crash-reporter", Runner: crashes},
		{Name: "task-reporter", Runner: tasks},
		{Name: "staging-reporter", Runner: staging},
	})
	le := cfg.LeaderElection
	namespace := le.Namespace
	if namespace == "" {
		namespace = cfg.DefaultNamespace()
	}
	hostname, _ := os.Hostname()
	return leader.NewRunner(logger, clientset, leader.Options{
		Namespace:     namespace,
		Name:          le.Name,
		Identity:      hostname + "-" + strconv.Itoa(os.Getpid()),
		LeaseDuration: time.Duration(le.LeaseDurationSeconds) * time.Second,
		RenewDeadline: time.Duration(le.RenewDeadlineSeconds) * time.Second,
		RetryPeriod:   time.Duration(le.RetryPeriodSeconds) * time.Second,
	}, reporters), nil
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
