package buildpack_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestBuildpack(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Buildpack Staging Suite")
}
