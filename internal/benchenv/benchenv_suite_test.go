package benchenv_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestBenchenv(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Benchenv Suite")
}
