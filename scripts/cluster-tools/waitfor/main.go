// Command waitfor polls endpoints of the local test cluster (scripts/cluster)
// until each one answers, so the script needs neither curl nor openssl.
//
//	waitfor [-timeout 60s] [-pid PID] ENDPOINT...
//
// An ENDPOINT is http://... or https://... (ready when a GET returns 200;
// TLS certificates are not verified: these are loopback components with
// self-signed serving certificates) or tcp://HOST:PORT (ready when a
// connection is accepted). With -pid, it gives up as soon as that process
// has exited. Exit status: 0 ready, 1 timed out or process gone, 2 usage.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"
)

func main() {
	timeout := flag.Duration("timeout", 60*time.Second, "how long to wait in total")
	pid := flag.Int("pid", 0, "give up when this process has exited")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: waitfor [-timeout 60s] [-pid PID] ENDPOINT...")
		os.Exit(2)
	}

	client := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback, self-signed
			Proxy:           nil,
		},
	}
	deadline := time.Now().Add(*timeout)
	for _, ep := range flag.Args() {
		var last error
		for {
			if last = probe(client, ep); last == nil {
				break
			}
			if *pid > 0 && !alive(*pid) {
				fmt.Fprintf(os.Stderr, "waitfor: process %d exited before %s was ready (%v)\n", *pid, ep, last)
				os.Exit(1)
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "waitfor: %s not ready after %s: %v\n", ep, *timeout, last)
				os.Exit(1)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func probe(client *http.Client, ep string) error {
	if addr, ok := strings.CutPrefix(ep, "tcp://"); ok {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}
	resp, err := client.Get(ep)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}

// alive reports whether pid runs (a zombie, exited but not yet reaped, does not).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no procfs: trust kill(0)
	}
	// The state follows the parenthesised command name: "pid (comm) S ...".
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}
