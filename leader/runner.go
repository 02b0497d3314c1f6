// Package leader runs a component only while this Iris holds a Kubernetes
// Lease, so several replicas can run without duplicate work.
package leader

import (
	"context"
	"fmt"
	"os"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Options name the Lease and its timing.
type Options struct {
	Namespace     string
	Name          string
	Identity      string
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

// Runner is an ifrit runner that campaigns for the Lease and runs inner while
// it leads. Losing the Lease stops inner and campaigns again; a signal stops
// inner and releases the Lease at once, so a successor takes over without
// waiting for it to expire.
type Runner struct {
	logger    lager.Logger
	clientset kubernetes.Interface
	opts      Options
	inner     ifrit.Runner
}

// NewRunner returns a leader-elected wrapper around inner.
func NewRunner(logger lager.Logger, clientset kubernetes.Interface, opts Options, inner ifrit.Runner) *Runner {
	return &Runner{logger: logger.Session("leader", lager.Data{"lease": opts.Namespace + "/" + opts.Name, "identity": opts.Identity}), clientset: clientset, opts: opts, inner: inner}
}

// Run campaigns until signalled.
func (r *Runner) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	close(ready)

	for {
		leading := make(chan struct{})
		lost := make(chan struct{})
		elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: &resourcelock.LeaseLock{
				LeaseMeta:  metav1.ObjectMeta{Namespace: r.opts.Namespace, Name: r.opts.Name},
				Client:     r.clientset.CoordinationV1(),
				LockConfig: resourcelock.ResourceLockConfig{Identity: r.opts.Identity},
			},
			LeaseDuration:   r.opts.LeaseDuration,
			RenewDeadline:   r.opts.RenewDeadline,
			RetryPeriod:     r.opts.RetryPeriod,
			ReleaseOnCancel: true,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) { close(leading) },
				OnStoppedLeading: func() { close(lost) },
			},
		})
		if err != nil {
			return fmt.Errorf("configuring leader election: %w", err)
		}
		electionCtx, stopElection := context.WithCancel(ctx)
		go elector.Run(electionCtx)
		r.logger.Info("campaigning")

		select {
		case <-signals:
			stopElection()
			<-lost
			return nil
		case <-leading:
		}
		r.logger.Info("leading")
		process := ifrit.Invoke(r.inner)
		select {
		case sig := <-signals:
			process.Signal(sig)
			err := <-process.Wait()
			stopElection() // releases the Lease
			<-lost
			r.logger.Info("released")
			return err
		case <-lost:
			r.logger.Info("lost-lease")
			process.Signal(os.Interrupt)
			<-process.Wait()
			stopElection()
		case err := <-process.Wait():
			stopElection()
			<-lost
			if err == nil {
				err = fmt.Errorf("exited without being signalled")
			}
			return fmt.Errorf("leader-elected component: %w", err)
		}
	}
}
