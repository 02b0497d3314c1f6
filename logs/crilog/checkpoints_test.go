package crilog_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/logs/crilog"
)

var _ = Describe("Checkpoints", func() {
	var dir, file string

	BeforeEach(func() {
		dir = GinkgoT().TempDir()
		file = filepath.Join(dir, "checkpoints.json")
	})

	open := func() *crilog.Checkpoints {
		GinkgoHelper()
		c, err := crilog.OpenCheckpoints(file)
		Expect(err).NotTo(HaveOccurred())
		return c
	}

	It("starts empty when the file is missing", func() {
		c := open()
		_, ok := c.Get("/var/log/pods/a/app/0.log")
		Expect(ok).To(BeFalse())
		Expect(c.Paths()).To(BeEmpty())
	})

	It("refuses a corrupt file", func() {
		for _, corrupt := range []string{"", "{", `{"positions":{"/p":{"inode":"x"}}}`, `{"positions":{"/p":{"inode":1,"offset":-1}}}`} {
			Expect(os.WriteFile(file, []byte(corrupt), 0o600)).To(Succeed())
			_, err := crilog.OpenCheckpoints(file)
			Expect(err).To(HaveOccurred(), corrupt)
		}
	})

	It("round-trips Positions through the file", func() {
		c := open()
		c.Set("/a", crilog.Position{Inode: 1, Offset: 10})
		c.Set("/b", crilog.Position{Inode: 2, Offset: 20})
		c.Set("/gone", crilog.Position{Inode: 3, Offset: 30})
		c.Delete("/gone")
		c.Set("/a", crilog.Position{Inode: 1, Offset: 11})
		Expect(c.Save()).To(Succeed())

		reopened := open()
		Expect(reopened.Paths()).To(ConsistOf("/a", "/b"))
		pos, ok := reopened.Get("/a")
		Expect(ok).To(BeTrue())
		Expect(pos).To(Equal(crilog.Position{Inode: 1, Offset: 11}))
		pos, _ = reopened.Get("/b")
		Expect(pos).To(Equal(crilog.Position{Inode: 2, Offset: 20}))
	})

	It("saves by replacing the file, leaving no temporary file behind", func() {
		c := open()
		c.Set("/a", crilog.Position{Inode: 1, Offset: 10})
		Expect(c.Save()).To(Succeed())
		before := inodeOf(file)

		c.Set("/a", crilog.Position{Inode: 1, Offset: 20})
		Expect(c.Save()).To(Succeed())
		Expect(inodeOf(file)).NotTo(Equal(before), "written in place, not renamed over")
		Expect(os.ReadDir(dir)).To(HaveLen(1))

		unchanged := inodeOf(file)
		Expect(c.Save()).To(Succeed())
		Expect(inodeOf(file)).To(Equal(unchanged), "nothing changed, nothing written")
	})

	It("ignores and removes a temporary file a crash left behind", func() {
		c := open()
		c.Set("/a", crilog.Position{Inode: 1, Offset: 10})
		Expect(c.Save()).To(Succeed())
		Expect(os.WriteFile(file+".tmp-123", []byte("{half"), 0o600)).To(Succeed())

		pos, _ := open().Get("/a")
		Expect(pos).To(Equal(crilog.Position{Inode: 1, Offset: 10}))
		Expect(os.ReadDir(dir)).To(HaveLen(1))
	})

	It("takes Set, Get and Save from many goroutines", func() {
		c := open()
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Go(func() {
				defer GinkgoRecover()
				path := fmt.Sprintf("/var/log/pods/ns_pod_%d/app/0.log", g)
				for i := range 200 {
					c.Set(path, crilog.Position{Inode: uint64(g), Offset: int64(i)})
					pos, ok := c.Get(path)
					Expect(ok).To(BeTrue())
					Expect(pos.Offset).To(BeEquivalentTo(i))
					if i%20 == 0 {
						Expect(c.Save()).To(Succeed())
					}
				}
			})
		}
		wg.Wait()
		Expect(c.Save()).To(Succeed())

		reopened := open()
		Expect(reopened.Paths()).To(HaveLen(16))
		for g := range 16 {
			pos, _ := reopened.Get(fmt.Sprintf("/var/log/pods/ns_pod_%d/app/0.log", g))
			Expect(pos).To(Equal(crilog.Position{Inode: uint64(g), Offset: 199}))
		}
	})
})
