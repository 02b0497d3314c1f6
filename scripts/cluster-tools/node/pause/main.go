// Command pause is the real node's pod sandbox process (containerd's
// sandbox image, built by scripts/cluster so no image comes from outside):
// it holds the pod's namespaces open and exits on SIGTERM or SIGINT.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	// As PID 1 of a shared process namespace it would inherit orphans:
	// reap them so they do not stay zombies.
	signal.Notify(signals, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			return
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
