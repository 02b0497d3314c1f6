package crilog_test

import (
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/logs/crilog"
)

var _ = Describe("Follower", func() {
	var podDir, dir, path string

	BeforeEach(func() {
		podDir = filepath.Join(GinkgoT().TempDir(), "ns_pod_0c1d")
		dir = filepath.Join(podDir, "app")
		Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
		path = filepath.Join(dir, "0.log")
	})

	rotate := func(stamp string) string {
		GinkgoHelper()
		rotated := path + "." + stamp
		Expect(os.Rename(path, rotated)).To(Succeed())
		return rotated
	}

	It("hands on the lines in the file and those appended, with the Position after each", func() {
		appendTo(path, full("one")+criLine(epoch.Add(1), "stderr", "F", "two"))
		f := follow(path, crilog.Position{}, crilog.FollowerConfig{})
		Eventually(f.Lines).Should(Equal([]string{"one", "two"}))
		appendTo(path, full("three"))
		Eventually(f.Lines).Should(Equal([]string{"one", "two", "three"}))

		recs := f.Records()
		Expect(recs[0].Stdout).To(BeTrue())
		Expect(recs[0].Timestamp).To(Equal(epoch))
		Expect(recs[1].Stdout).To(BeFalse())
		Expect(recs[1].Timestamp).To(Equal(epoch.Add(1)))
		n := int64(len(full("one")))
		ino := inodeOf(path)
		Expect(f.Positions()).To(Equal([]crilog.Position{
			{Inode: ino, Offset: n},
			{Inode: ino, Offset: n + int64(len(criLine(epoch.Add(1), "stderr", "F", "two")))},
			{Inode: ino, Offset: sizeOf(path)},
		}))
	})

	It("waits for a file that does not exist yet", func() {
		f := follow(path, crilog.Position{}, crilog.FollowerConfig{})
		Consistently(f.Lines, 10*poll).Should(BeEmpty())
		appendTo(path, full("late"))
		Eventually(f.Lines).Should(Equal([]string{"late"}))
	})

	It("joins partial lines across writes and holds back an unfinished one", func() {
		appendTo(path, partial("ab"))
		f := follow(path, crilog.Position{}, crilog.FollowerConfig{})
		appendTo(path, partial("cd"))
		half := full("ef")
		appendTo(path, half[:10]) // a line without its newline yet
		Consistently(f.Lines, 10*poll).Should(BeEmpty())
		appendTo(path, half[10:])
		Eventually(f.Lines).Should(Equal([]string{"abcdef"}))
		Expect(f.Last()).To(Equal(crilog.Position{Inode: inodeOf(path), Offset: sizeOf(path)}))
		Expect(f.Records()[0].Timestamp).To(Equal(epoch))
	})

	It("skips and counts malformed lines, even between partial segments", func() {
		appendTo(path, "garbage\n"+full("one")+partial("t")+"2016-10-06T00:17:09Z stdin F x\n"+full("wo")+"\n")
		f := follow(path, crilog.Position{}, crilog.FollowerConfig{})
		Eventually(f.Lines).Should(Equal([]string{"one", "two"}))
		Expect(f.follower.Malformed()).To(BeEquivalentTo(3))
	})

	It("reads lines longer than its read buffer", func() {
		long := strings.Repeat("0123456789", 100)
		appendTo(path, full("a")+partial(long)+full(long)+full("b")+"garbage"+long+"\n"+full("c"))
		f := follow(path, crilog.Position{}, crilog.FollowerConfig{ReadBufferBytes: 128})
		Eventually(f.Lines).Should(Equal([]string{"a", long + long, "b", "c"}))
		Expect(f.follower.Malformed()).To(BeEquivalentTo(1))
	})

	It("hands on lines longer than MaxLineBytes in pieces, and resumes after any piece", func() {
		appendTo(path, partial("0123456")+full("789abcdefghij")+full("k"))
		cfg := crilog.FollowerConfig{MaxLineBytes: 10}
		f := follow(path, crilog.Position{}, cfg)
		Eventually(f.Lines).Should(Equal([]string{"0123456789", "abcdefghij", "k"}))

		resumed := follow(path, f.Positions()[0], cfg)
		Eventually(resumed.Lines).Should(Equal([]string{"abcdefghij", "k"}))
		Consistently(resumed.Lines, 10*poll).Should(HaveLen(2))
	})

	It("cuts a partial line when the other stream's lines come between its segments", func() {
		appendTo(path, partial("out-1 ")+criLine(epoch, "stderr", "F", "err")+full("out-2"))
		f := follow(path, crilog.Position{}, crilog.FollowerConfig{})
		Eventually(f.Lines).Should(Equal([]string{"out-1 ", "err", "out-2"}))
		Expect(f.Records()[1].Stdout).To(BeFalse())
	})

	It("ends when the pod's directory is removed, having handed on everything", func() {
		appendTo(path, full("one"))
		f := follow(path, crilog.Position{}, crilog.FollowerConfig{})
		Eventually(f.Lines).Should(Equal([]string{"one"}))
		w, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(w.Close)
		Expect(os.RemoveAll(podDir)).To(Succeed())
		write(w, full("two")+partial("never finished"))

		Eventually(f.done).Should(Receive(BeNil()))
		f.done <- nil
		Expect(f.Lines()).To(Equal([]string{"one", "two", "never finished"}))
	})

	It("returns at once when the pod's directory does not exist", func() {
		Expect(os.RemoveAll(podDir)).To(Succeed())
		f := follow(path, crilog.Position{Inode: 42, Offset: 7}, crilog.FollowerConfig{})
		Eventually(f.done).Should(Receive(BeNil()))
		f.done <- nil
	})

	Describe("rotation", func() {
		It("reads the old file to its end, including lines written after the rename, then the new one", func() {
			old := create(path)
			write(old, full("1")+full("2"))
			f := follow(path, crilog.Position{}, crilog.FollowerConfig{})
			Eventually(f.Lines).Should(Equal([]string{"1", "2"}))
			oldIno := inodeOf(path)

			rotate("20240101-000000")
			write(old, full("3"))
			Consistently(f.done, 10*poll).ShouldNot(Receive()) // the path is missing, the directory is not
			write(old, full("4"))
			current := create(path)
			write(current, full("5"))
			write(old, full("6")) // the runtime has not switched yet
			write(current, full("7"))

			Eventually(f.Lines).Should(Equal([]string{"1", "2", "3", "4", "6", "5", "7"}))
			pos := f.Positions()
			Expect(pos[4]).To(Equal(crilog.Position{Inode: oldIno, Offset: sizeOf(path + ".20240101-000000")}))
			Expect(pos[6]).To(Equal(crilog.Position{Inode: inodeOf(path), Offset: sizeOf(path)}))
		})

		It("joins a line whose segments are split across the rotation", func() {
			old := create(path)
			write(old, full("1")+partial("a"))
			f := follow(path, crilog.Position{}, crilog.FollowerConfig{})
			Eventually(f.Lines).Should(Equal([]string{"1"}))
			rotate("20240101-000000")
			write(create(path), full("b")+full("2"))
			Eventually(f.Lines).Should(Equal([]string{"1", "ab", "2"}))
		})
	})

	Describe("resuming from a Position", func() {
		It("continues in the same file", func() {
			appendTo(path, full("1")+full("2")+full("3"))
			start := crilog.Position{Inode: inodeOf(path), Offset: int64(len(full("1")))}
			f := follow(path, start, crilog.FollowerConfig{})
			Eventually(f.Lines).Should(Equal([]string{"2", "3"}))
			Consistently(f.Lines, 10*poll).Should(HaveLen(2))
		})

		It("finishes the file it was in after that file was rotated away", func() {
			appendTo(path, full("1")+full("2")+full("3"))
			start := crilog.Position{Inode: inodeOf(path), Offset: int64(len(full("1")))}
			rotate("20240101-000000")
			appendTo(path, full("4"))

			f := follow(path, start, crilog.FollowerConfig{})
			Eventually(f.Lines).Should(Equal([]string{"2", "3", "4"}))
			Consistently(f.Lines, 10*poll).Should(HaveLen(3))
		})

		It("goes on reading the file it was in while the runtime still writes to it after its rotation", func() {
			old := create(path)
			write(old, full("1")+full("2"))
			start := crilog.Position{Inode: inodeOf(path), Offset: int64(len(full("1")))}
			rotate("20240101-000000")

			f := follow(path, start, crilog.FollowerConfig{})
			Eventually(f.Lines).Should(Equal([]string{"2"}))
			write(old, full("3"))
			Eventually(f.Lines).Should(Equal([]string{"2", "3"}))
			write(create(path), full("4"))
			Eventually(f.Lines).Should(Equal([]string{"2", "3", "4"}))
		})

		It("reads every rotated file after the one it was in", func() {
			appendTo(path, full("1")+full("2"))
			start := crilog.Position{Inode: inodeOf(path), Offset: int64(len(full("1")))}
			rotate("20240101-000000")
			appendTo(path, full("3"))
			rotate("20240101-000010")
			appendTo(path, full("4"))
			appendTo(path+".20231231-235950.gz", "\x1f\x8b not for us")

			f := follow(path, start, crilog.FollowerConfig{})
			Eventually(f.Lines).Should(Equal([]string{"2", "3", "4"}))
			Consistently(f.Lines, 10*poll).Should(HaveLen(3))
		})

		It("reads the uncompressed rotated files when the file it was in was compressed", func() {
			appendTo(path, full("1")+full("2"))
			start := crilog.Position{Inode: inodeOf(path), Offset: int64(len(full("1")))}
			rotate("20240101-000000")
			appendTo(path, full("3"))
			rotate("20240101-000010")
			appendTo(path, full("4"))
			// Keeps the inode, but .gz files are not read.
			Expect(os.Rename(path+".20240101-000000", path+".20240101-000000.gz")).To(Succeed())

			f := follow(path, start, crilog.FollowerConfig{})
			Eventually(f.Lines).Should(Equal([]string{"3", "4"}))
			Consistently(f.Lines, 10*poll).Should(HaveLen(2))
		})

		It("starts over when the file is shorter than the Position", func() {
			appendTo(path, full("1")+full("2"))
			start := crilog.Position{Inode: inodeOf(path), Offset: sizeOf(path) + 100}
			f := follow(path, start, crilog.FollowerConfig{})
			Eventually(f.Lines).Should(Equal([]string{"1", "2"}))
		})

		It("starts over when the file is truncated while followed", func() {
			appendTo(path, full("1"))
			f := follow(path, crilog.Position{}, crilog.FollowerConfig{})
			Eventually(f.Lines).Should(Equal([]string{"1"}))
			// Shorter than what was read: same-size rewrites go unnoticed.
			Expect(os.WriteFile(path, []byte(full("")), 0o600)).To(Succeed())
			Eventually(f.Lines).Should(Equal([]string{"1", ""}))
			appendTo(path, full("a"))
			Eventually(f.Lines).Should(Equal([]string{"1", "", "a"}))
		})

		It("neither repeats nor skips a record from any Position it handed on", func() {
			long := strings.Repeat("x", 25)
			huge := strings.Repeat("y", 300) // longer than the read buffer
			appendTo(path, full("1")+partial("2a")+full("2b")+"garbage\n"+partial(long)+full("3")+full(huge)+
				partial("out ")+criLine(epoch, "stderr", "F", "err")+full("4"))
			rotate("20240101-000000")
			appendTo(path, partial("5a")+criLine(epoch, "stderr", "F", long+long))
			rotate("20240101-000010")
			appendTo(path, full("5b")+full("6")+partial("7 wait"))

			cfg := crilog.FollowerConfig{MaxLineBytes: 10, ReadBufferBytes: 128}
			first := crilog.Position{Inode: inodeOf(path + ".20240101-000000")}
			all := follow(path, first, cfg)
			Eventually(all.Lines).Should(ContainElement("6"))
			Consistently(all.Lines, 10*poll).Should(HaveLen(len(all.Lines())))
			Expect(strings.Join(all.Lines(), "")).To(Equal("12a2b" + long + "3" + huge + "out err4" + "5a" + long + long + "5b6"))
			want := all.Records()

			for i, pos := range all.Positions() {
				resumed := follow(path, pos, cfg)
				rest := want[i+1:]
				Eventually(resumed.Lines).Should(HaveLen(len(rest)), "from record %d at %+v", i, pos)
				Consistently(resumed.Lines, 5*poll).Should(HaveLen(len(rest)))
				got := resumed.Records()
				for j := range rest {
					Expect(got[j].Stdout).To(Equal(rest[j].Stdout))
					Expect(string(got[j].Line)).To(Equal(string(rest[j].Line)), "from record %d at %+v", i, pos)
				}
				resumed.stop()
			}
		})
	})
})
