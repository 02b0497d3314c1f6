package crilog_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/logs/crilog"
)

var _ = Describe("an agent restarting while a container logs and its log rotates", func() {
	It("hands on every line exactly once, in order", func() {
		dir := filepath.Join(GinkgoT().TempDir(), "ns_pod_0c1d", "app")
		Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
		path := filepath.Join(dir, "0.log")
		checkpoints := filepath.Join(GinkgoT().TempDir(), "checkpoints.json")

		const lines = 3000
		want := make([]string, lines)
		for i := range want {
			want[i] = fmt.Sprintf("%s line-%05d", stream(i), i)
		}

		writerDone := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(writerDone)
			w, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
			Expect(err).NotTo(HaveOccurred())
			switchAt, rotations := -1, 0
			for i := range lines {
				content, ts := fmt.Sprintf("line-%05d", i), epoch.Add(time.Duration(i)*time.Millisecond)
				if i%7 == 0 { // a long line the runtime split; each segment is a write
					write(w, criLine(ts, stream(i), "P", content[:3]))
					if i%21 == 0 {
						time.Sleep(2 * poll) // often caught waiting for the rest
					}
					write(w, criLine(ts, stream(i), "P", content[3:6]))
					write(w, criLine(ts, stream(i), "F", content[6:]))
				} else {
					write(w, criLine(ts, stream(i), "F", content))
				}
				if i%97 == 0 {
					write(w, "garbage\n")
				}
				if i%5 == 0 {
					time.Sleep(time.Millisecond)
				}
				if i%400 == 399 {
					// The kubelet renames; the runtime goes on writing to the
					// old file for a while before it reopens the path.
					rotations++
					Expect(os.Rename(path, fmt.Sprintf("%s.20240101-%06d", path, rotations))).To(Succeed())
					switchAt = i + 3
				}
				if i == switchAt {
					Expect(w.Close()).To(Succeed())
					w, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
					Expect(err).NotTo(HaveOccurred())
				}
			}
			Expect(w.Close()).To(Succeed())
		}()

		rng := rand.New(rand.NewPCG(7, 11))
		var got []string
		restarts := 0
		for len(got) < lines {
			cps, err := crilog.OpenCheckpoints(checkpoints)
			Expect(err).NotTo(HaveOccurred())
			start, _ := cps.Get(path)
			f := follow(path, start, crilog.FollowerConfig{})
			target := min(len(got)+20+rng.IntN(150), lines)
			Eventually(func() int { return len(got) + len(f.Lines()) }, 10*time.Second).Should(BeNumerically(">=", target))
			f.stop()
			for _, rec := range f.Records() {
				got = append(got, fmt.Sprintf("%s %s", streamOf(rec), rec.Line))
			}
			if len(f.Positions()) > 0 {
				cps.Set(path, f.Last())
			}
			Expect(cps.Save()).To(Succeed())
			restarts++
		}
		GinkgoWriter.Printf("%d lines over %d restarts\n", len(got), restarts)
		Expect(got).To(Equal(want))
		Expect(restarts).To(BeNumerically(">", 10))

		Eventually(writerDone).Should(BeClosed())
		cps, err := crilog.OpenCheckpoints(checkpoints)
		Expect(err).NotTo(HaveOccurred())
		start, _ := cps.Get(path)
		f := follow(path, start, crilog.FollowerConfig{})
		Consistently(f.Lines, 20*poll).Should(BeEmpty())
	})
})

func stream(i int) string {
	if i%5 == 0 {
		return "stderr"
	}
	return "stdout"
}

func streamOf(rec crilog.Record) string {
	if rec.Stdout {
		return "stdout"
	}
	return "stderr"
}
