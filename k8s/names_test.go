package k8s_test

import (
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/iris-cf/iris/k8s"
)

var _ = Describe("StatefulSetName", func() {
	It("is deterministic and readable", func() {
		name := k8s.StatefulSetName("My_App", "Dev Space", "guid-v1")
		Expect(name).To(Equal(k8s.StatefulSetName("My_App", "Dev Space", "guid-v1")))
		Expect(name).To(HavePrefix("my-app-dev-space-"))
	})

	It("differs by process guid", func() {
		Expect(k8s.StatefulSetName("a", "s", "guid-v1")).NotTo(Equal(k8s.StatefulSetName("a", "s", "guid-v2")))
	})

	DescribeTable("is a valid DNS-1123 label short enough for the revision-hash label",
		func(app, space string) {
			name := k8s.StatefulSetName(app, space, "6a3c1b2e-0000-4000-8000-000000000000-7f1e2d3c-0000-4000-8000-000000000000")
			Expect(validation.IsDNS1123Label(name)).To(BeEmpty())
			Expect(len(name)).To(BeNumerically("<=", 51))
		},
		Entry("plain", "app", "space"),
		Entry("long", strings.Repeat("a", 100), strings.Repeat("b", 100)),
		Entry("unicode and punctuation", "Ünïcødé!!app", "--space--"),
		Entry("cut at a dash", strings.Repeat("a", 39)+"-x", "s"),
		Entry("empty names", "", ""),
		Entry("only symbols", "!!!", "###"),
	)
})
