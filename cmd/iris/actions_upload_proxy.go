package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/iris-cf/iris/actions"
)

// actionsUploadProxy is the upload sidecar of recipe pods (`iris actions
// upload-proxy`): it alone holds the pod's upload identity (client
// certificate and key) and relays the runner's uploads, received on a unix
// socket, to the recipe's upload destinations (see actions.UploadProxy).
const actionsUploadProxy = "upload-proxy"

// runUploadProxy serves until SIGTERM or SIGINT, then lets uploads in
// flight finish (up to --shutdown-timeout) and exits 0: Kubernetes stops a
// native sidecar once the pod's main containers have exited, and that stop
// is no failure. It exits 2 on bad input and 1 when it cannot serve.
func runUploadProxy(args []string) int {
	flags := flag.NewFlagSet("iris actions "+actionsUploadProxy, flag.ContinueOnError)
	listen := flags.String("listen", "", "unix socket to listen on (on a volume shared with the recipe's container only)")
	recipePath := flags.String("recipe", "", "the pod's recipe: only its upload actions' destinations are served")
	format := flags.String("format", actions.FormatJSON, "recipe format: json, desired-lrp-protobuf or task-definition-protobuf")
	caFile := flags.String("tls-ca-file", "", "CA bundle the destinations' server certificates are verified with (default: system roots)")
	certFile := flags.String("tls-cert-file", "", "client certificate presented to the destinations (required)")
	keyFile := flags.String("tls-key-file", "", "client key (required)")
	shutdownTimeout := flags.Duration("shutdown-timeout", 20*time.Second, "on SIGTERM, how long uploads in flight may still take")
	logLevel := flags.String("log-level", "info", "level of the proxy's logs (JSON on stderr)")
	if err := flags.Parse(args); err != nil {
		return actionsExitBadInput
	}
	fail := func(code int, format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "iris actions %s: %s\n", actionsUploadProxy, fmt.Sprintf(format, args...))
		return code
	}
	if *listen == "" || *recipePath == "" {
		return fail(actionsExitBadInput, "--listen and --recipe are required")
	}
	if *certFile == "" || *keyFile == "" {
		return fail(actionsExitBadInput, "--tls-cert-file and --tls-key-file are required: the proxy exists to present them")
	}
	minLevel, err := lager.LogLevelFromString(*logLevel)
	if err != nil {
		return fail(actionsExitBadInput, "log-level: %v", err)
	}
	logger := lager.NewLogger("iris-upload-proxy")
	logger.RegisterSink(lager.NewWriterSink(os.Stderr, minLevel))

	recipe, err := loadRecipe(*recipePath, *format)
	if err != nil {
		return fail(actionsExitBadInput, "%v", err)
	}
	client, err := actionsHTTPClient(*caFile, *certFile, *keyFile)
	if err != nil {
		return fail(actionsExitBadInput, "%v", err)
	}
	proxy := actions.NewUploadProxy(logger, recipe, client)

	// A socket left by this pod's previous proxy container (the volume
	// outlives it) would make the listen fail.
	if err := os.Remove(*listen); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fail(actionsExitFailed, "removing the old socket: %v", err)
	}
	listener, err := net.Listen("unix", *listen)
	if err != nil {
		return fail(actionsExitFailed, "listening: %v", err)
	}
	// The recipe's container may run as another user (a docker image's
	// own); the volume is shared with that container alone.
	if err := os.Chmod(*listen, 0o666); err != nil {
		listener.Close()
		return fail(actionsExitFailed, "opening the socket to the recipe's container: %v", err)
	}

	server := &http.Server{Handler: proxy, ReadHeaderTimeout: 10 * time.Second}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)
	served := make(chan error, 1)
	go func() { served <- server.Serve(listener) }()
	logger.Info("serving", lager.Data{"socket": *listen, "destinations": proxy.Destinations()})

	select {
	case err := <-served:
		logger.Error("serving-failed", err)
		return actionsExitFailed
	case sig := <-signals:
		logger.Info("stopping", lager.Data{"signal": sig.String()})
	}
	ctx, cancel := context.WithTimeout(context.Background(), *shutdownTimeout)
	defer cancel()
	if err := server.Shutdown(ctx); err != nil {
		// Uploads still in flight are cut; the runner's attempt fails
		// (and it is stopping too: the pod is going away).
		logger.Error("uploads-cut-at-shutdown", err)
		_ = server.Close()
	}
	logger.Info("stopped")
	return 0
}
