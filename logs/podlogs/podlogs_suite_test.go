package podlogs_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestPodLogs(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Pod Logs Suite")
}
