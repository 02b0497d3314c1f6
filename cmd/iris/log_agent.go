package main

import (
	"fmt"
	"os"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/grouper"

	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/logagent"
	"github.com/iris-cf/iris/logs/crilog"
	"github.com/iris-cf/iris/ops"
)

// logAgentMembers are the members of `iris log-agent`: the pod cache of
// this node, the Loggregator sender and the agent, stopped in reverse so
// the agent's last lines are flushed before the sender drains.
func logAgentMembers(logger lager.Logger, cfg config.Config, opsServer *ops.Server) (grouper.Members, error) {
	_, clientset, err := kubeClient(cfg, "iris-log-agent")
	if err != nil {
		return nil, err
	}
	sources, err := logagent.NewPodSources(clientset, cfg.WorkloadsNamespaces, cfg.LogAgent.NodeName)
	if err != nil {
		return nil, err
	}
	sender, closeConn, err := loggregatorSender(logger, cfg.Loggregator)
	if err != nil {
		return nil, err
	}
	observeSender(opsServer, sender)
	agent := logagent.New(logger, logagent.Config{
		PodLogDir:      cfg.LogAgent.PodLogDir,
		CheckpointFile: cfg.LogAgent.PositionsFile,
		Namespaces:     cfg.WorkloadsNamespaces,
		ScanInterval:   time.Duration(cfg.LogAgent.ScanIntervalMilliseconds) * time.Millisecond,
		Follower:       crilog.FollowerConfig{PollInterval: time.Duration(cfg.LogAgent.PollIntervalMilliseconds) * time.Millisecond},
	}, sources, sender)
	podCache := ifrit.RunFunc(func(signals <-chan os.Signal, ready chan<- struct{}) error {
		stop := make(chan struct{})
		defer close(stop)
		if err := sources.Start(logger, stop); err != nil {
			return fmt.Errorf("log agent pod cache: %w", err)
		}
		close(ready)
		<-signals
		return nil
	})
	return grouper.Members{
		{Name: "pod-cache", Runner: podCache},
		{Name: "loggregator", Runner: closing(sender, closeConn)},
		{Name: "log-agent", Runner: agent},
	}, nil
}
