package logagent_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestLogAgent(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Log Agent Suite")
}
