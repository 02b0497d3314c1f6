package actions_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
)

func TestActions(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Actions Suite")
}

// irisPath is the iris binary the process specs run as `iris actions`.
var irisPath string

var _ = SynchronizedBeforeSuite(func() []byte {
	path, err := gexec.Build("github.com/iris-cf/iris/cmd/iris")
	Expect(err).NotTo(HaveOccurred())
	return []byte(path)
}, func(path []byte) {
	irisPath = string(path)
})

var _ = SynchronizedAfterSuite(func() {}, func() {
	gexec.CleanupBuildArtifacts()
})
