// Command healthcheck is the test lifecycle's port/http health check (see
// package testlifecycle).
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	port := flag.String("port", "8080", "port to check")
	uri := flag.String("uri", "", "HTTP path to GET; empty checks TCP only")
	timeout := flag.Duration("timeout", time.Second, "time one check may take")
	flag.Parse()
	addr := net.JoinHostPort("127.0.0.1", *port)
	if *uri == "" {
		conn, err := net.DialTimeout("tcp", addr, *timeout)
		if err != nil {
			fmt.Printf("failed to make TCP connection to port %s: connection refused\n", *port)
			os.Exit(1)
		}
		conn.Close()
		return
	}
	client := &http.Client{Timeout: *timeout}
	resp, err := client.Get("http://" + addr + *uri)
	if err != nil {
		fmt.Printf("failed to make HTTP request to '%s' on port %s: connection refused\n", *uri, *port)
		os.Exit(1)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Printf("failed to make HTTP request to '%s' on port %s: received status code %d\n", *uri, *port, resp.StatusCode)
		os.Exit(1)
	}
}
