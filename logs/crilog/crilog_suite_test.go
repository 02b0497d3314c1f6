package crilog_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestCrilog(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "CRI Log Suite")
}
