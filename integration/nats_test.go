package integration_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
)

// natsServer is a real nats-server (built by scripts/cluster) that the suite
// owns, so tests can restart it.
type natsServer struct {
	binary  string
	port    int
	args    []string
	scheme  string
	session *gexec.Session
}

func startNATS(extraArgs ...string) *natsServer {
	bin := os.Getenv("IRIS_CLUSTER_BIN")
	Expect(bin).NotTo(BeEmpty(), "IRIS_CLUSTER_BIN is not set: eval \"$(scripts/cluster env)\"")
	_, port, err := net.SplitHostPort(freeAddress())
	Expect(err).NotTo(HaveOccurred())
	n := &natsServer{binary: filepath.Join(bin, "nats-server"), args: extraArgs, scheme: "nats"}
	n.port, err = strconv.Atoi(port)
	Expect(err).NotTo(HaveOccurred())
	n.Start()
	return n
}

func (n *natsServer) URL() string { return fmt.Sprintf("%s://127.0.0.1:%d", n.scheme, n.port) }

func (n *natsServer) Start() {
	var err error
	args := append([]string{"-a", "127.0.0.1", "-p", strconv.Itoa(n.port)}, n.args...)
	n.session, err = gexec.Start(exec.Command(n.binary, args...), GinkgoWriter, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	Eventually(func() error {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", n.port))
		if err == nil {
			c.Close()
		}
		return err
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
}

// Restart stops and starts the server on its port; the spec's cleanup
// starts it if the spec did not get that far.
func (n *natsServer) Restart() {
	GinkgoHelper()
	n.Stop()
	DeferCleanup(func() {
		if n.session.ExitCode() != -1 {
			n.Start()
		}
	})
	n.Start()
}

func (n *natsServer) Stop() {
	n.session.Interrupt()
	Eventually(n.session, 10*time.Second).Should(gexec.Exit())
}
