package bbswire_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestBBSWire(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "bbswire")
}
