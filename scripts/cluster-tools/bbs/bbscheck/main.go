// Command bbscheck waits until the real BBS that scripts/cluster starts is
// usable: it answers /v1/ping over mTLS (through BBS's own Go client, so the
// request is exactly what Diego's components send) and it holds the "bbs" lock
// in locket, which BBS takes before it serves and keeps while it runs.
//
//	bbscheck -bbs-url URL -locket-address HOST:PORT -owner UUID \
//	    -ca CA -cert CERT -key KEY [-timeout 90s] [-pid PID]
//
// With -pid it gives up as soon as that process has exited. Exit status: 0
// ready, 1 not ready in time or process gone, 2 usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"code.cloudfoundry.org/bbs"
	"code.cloudfoundry.org/lager/v3"
	"code.cloudfoundry.org/locket"
	locketmodels "code.cloudfoundry.org/locket/models"
)

// bbsLockKey is the locket key BBS locks (cmd/bbs: bbsLockKey).
const bbsLockKey = "bbs"

func main() {
	bbsURL := flag.String("bbs-url", "", "BBS URL, https://HOST:PORT")
	locketAddress := flag.String("locket-address", "", "locket HOST:PORT")
	owner := flag.String("owner", "", "the uuid in BBS's config: the lock owner to expect")
	ca := flag.String("ca", "", "CA certificate of BBS and locket")
	cert := flag.String("cert", "", "client certificate")
	key := flag.String("key", "", "client key")
	timeout := flag.Duration("timeout", 90*time.Second, "how long to wait in total")
	pid := flag.Int("pid", 0, "give up when this process has exited")
	flag.Parse()
	if *bbsURL == "" || *locketAddress == "" || *owner == "" || *ca == "" || *cert == "" || *key == "" {
		fmt.Fprintln(os.Stderr, "usage: bbscheck -bbs-url URL -locket-address HOST:PORT -owner UUID -ca CA -cert CERT -key KEY [-timeout 90s] [-pid PID]")
		os.Exit(2)
	}
	if err := run(*bbsURL, *locketAddress, *owner, *ca, *cert, *key, *timeout, *pid); err != nil {
		fmt.Fprintln(os.Stderr, "bbscheck:", err)
		os.Exit(1)
	}
}

func run(bbsURL, locketAddress, owner, ca, cert, key string, timeout time.Duration, pid int) error {
	// The clients log through lager; their request logs would only be noise here.
	logger := lager.NewLogger("bbscheck")
	logger.RegisterSink(lager.NewWriterSink(io.Discard, lager.ERROR))

	bbsClient, err := bbs.NewClientWithConfig(bbs.ClientConfig{
		URL: bbsURL, IsTLS: true, CAFile: ca, CertFile: cert, KeyFile: key,
		RequestTimeout: 2 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("bbs client: %w", err)
	}
	locketClient, err := locket.NewClient(logger, locket.ClientLocketConfig{
		LocketAddress: locketAddress, LocketCACertFile: ca, LocketClientCertFile: cert, LocketClientKeyFile: key,
	})
	if err != nil {
		return fmt.Errorf("locket client: %w", err)
	}

	deadline := time.Now().Add(timeout)
	for {
		last := check(logger, bbsClient, locketClient, owner)
		if last == nil {
			return nil
		}
		if pid > 0 && !alive(pid) {
			return fmt.Errorf("process %d exited before BBS was ready (%w)", pid, last)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("BBS not ready after %s: %w", timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func check(logger lager.Logger, bbsClient bbs.InternalClient, locketClient locketmodels.LocketClient, owner string) error {
	if !bbsClient.Ping(logger, "") {
		return errors.New("/v1/ping did not answer available")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := locketClient.Fetch(ctx, &locketmodels.FetchRequest{Key: bbsLockKey})
	if err != nil {
		return fmt.Errorf("fetching locket lock %q: %w", bbsLockKey, err)
	}
	if got := resp.GetResource().GetOwner(); got != owner {
		return fmt.Errorf("locket lock %q is held by %q, not %q", bbsLockKey, got, owner)
	}
	return nil
}

// alive reports whether the process exists and is not a zombie.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// /proc/PID/stat: "pid (comm) S ..."; the state follows the last ')'.
	for i := len(status) - 1; i >= 0; i-- {
		if status[i] == ')' {
			return i+2 < len(status) && status[i+2] != 'Z'
		}
	}
	return true
}
