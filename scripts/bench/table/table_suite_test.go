package main

import (
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestTable(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Bench Table Suite")
}

var _ = Describe("choosing parts", func() {
	all := parts("1000,50000", "1000")

	It("runs the named parts in the table's order, whatever order they are named in", func() {
		got, err := selectParts(all, "startup, memory,250k")
		Expect(err).NotTo(HaveOccurred())
		var names []string
		for _, p := range got {
			names = append(names, p.name)
		}
		Expect(names).To(Equal([]string{"memory", "250k", "startup"}))
		Expect(got[2].commands).To(Equal([][]string{{"scripts/bench/run", "-scale", "1000,50000"}}))
	})

	It("runs nothing for none", func() {
		got, err := selectParts(all, "none")
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(BeEmpty())
	})

	It("refuses an unknown part and lists the known ones", func() {
		_, err := selectParts(all, "memory,disk")
		Expect(err).To(MatchError(And(ContainSubstring(`unknown part "disk"`), ContainSubstring("desire, memory, sync, 250k, startup"))))
	})
})

var _ = Describe("logs of earlier runs", func() {
	It("reads the result lines of each log and refuses a glob that matches nothing", func() {
		dir := GinkgoT().TempDir()
		log := filepath.Join(dir, "startup.log")
		Expect(os.WriteFile(log, []byte("fill: ...\n"+`IRIS-BENCH-RESULT {"goal":"g","value":1}`+"\n"), 0o600)).To(Succeed())

		paths, err := expand(filepath.Join(dir, "*.log"))
		Expect(err).NotTo(HaveOccurred())
		Expect(paths).To(Equal([]string{log}))
		results, err := readLog(log)
		Expect(err).NotTo(HaveOccurred())
		Expect(results).To(HaveLen(1))
		Expect(results[0].Goal).To(Equal("g"))

		_, err = expand(filepath.Join(dir, "none-*.log"))
		Expect(err).To(MatchError(ContainSubstring("no such file")))
	})
})
