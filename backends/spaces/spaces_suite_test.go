package spaces_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestSpaces(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Per-space Backends Suite")
}
