package diego_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestDiego(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Diego Backend Suite")
}
