package actions

import (
	"archive/tar"
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"
)

func tarOf(entries ...*tar.Header) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, hdr := range entries {
		body := []byte("content of " + hdr.Name)
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(body))
		}
		Expect(tw.WriteHeader(hdr)).To(Succeed())
		if hdr.Typeflag == tar.TypeReg {
			_, err := tw.Write(body)
			Expect(err).NotTo(HaveOccurred())
		}
	}
	Expect(tw.Close()).To(Succeed())
	return buf.Bytes()
}

func extractBytes(archive []byte, dest string) error {
	file := filepath.Join(GinkgoT().TempDir(), "archive")
	Expect(os.WriteFile(file, archive, 0o600)).To(Succeed())
	format, err := detectArchive(file)
	if err != nil {
		return err
	}
	return extractArchive(format, file, dest, nil)
}

var _ = Describe("extracting", func() {
	It("keeps modes (executables) despite the umask, and hard links", func() {
		dest := filepath.Join(GinkgoT().TempDir(), "new", "dest")
		Expect(extractBytes(tarOf(
			&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755},
			&tar.Header{Name: "bin/start", Typeflag: tar.TypeReg, Mode: 0o755},
			&tar.Header{Name: "bin/again", Typeflag: tar.TypeLink, Linkname: "bin/start"},
		), dest)).To(Succeed())
		info, err := os.Stat(filepath.Join(dest, "bin/start"))
		Expect(err).NotTo(HaveOccurred())
		Expect(info.Mode().Perm()).To(Equal(os.FileMode(0o755)))
		Expect(os.ReadFile(filepath.Join(dest, "bin/again"))).To(Equal([]byte("content of bin/start")))
	})

	It("does not write through a symlink that points out of the destination", func() {
		outside := GinkgoT().TempDir()
		dest := GinkgoT().TempDir()
		err := extractBytes(tarOf(
			&tar.Header{Name: "escape", Typeflag: tar.TypeSymlink, Linkname: outside},
			&tar.Header{Name: "escape/pwned", Typeflag: tar.TypeReg, Mode: 0o644},
		), dest)
		Expect(err).To(HaveOccurred())
		Expect(filepath.Join(outside, "pwned")).NotTo(BeAnExistingFile())
	})

	It("replaces an existing symlink with a file instead of writing through it", func() {
		outside := GinkgoT().TempDir()
		target := filepath.Join(outside, "victim")
		Expect(os.WriteFile(target, []byte("untouched"), 0o644)).To(Succeed())
		dest := GinkgoT().TempDir()
		Expect(os.Symlink(target, filepath.Join(dest, "file"))).To(Succeed())
		Expect(extractBytes(tarOf(&tar.Header{Name: "file", Typeflag: tar.TypeReg, Mode: 0o644}), dest)).To(Succeed())
		Expect(os.ReadFile(target)).To(Equal([]byte("untouched")))
		Expect(os.ReadFile(filepath.Join(dest, "file"))).To(Equal([]byte("content of file")))
	})

	It("refuses what is not an archive", func() {
		Expect(extractBytes([]byte("plain text"), GinkgoT().TempDir())).To(MatchError(ErrUnknownArchiveFormat))
	})
})

// flakyServer answers each request with the next queued status (200 with
// body once the queue is empty) and counts requests.
type flakyServer struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	requests int
}

func newFlakyServer(body []byte, statuses ...int) *flakyServer {
	s := &flakyServer{statuses: statuses}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		s.requests++
		status := http.StatusOK
		if len(s.statuses) > 0 {
			status, s.statuses = s.statuses[0], s.statuses[1:]
		}
		s.mu.Unlock()
		w.WriteHeader(status)
		if status == http.StatusOK {
			_, _ = w.Write(body)
		}
	}))
	DeferCleanup(s.Close)
	return s
}

func (s *flakyServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

var _ = Describe("Fetcher", func() {
	var clk *clocktesting.FakeClock
	var fetcher *Fetcher

	BeforeEach(func() {
		clk = clocktesting.NewFakeClock(time.Now())
		fetcher = NewFetcher(lagertest.NewTestLogger("fetch"), http.DefaultClient, "", GinkgoT().TempDir(), clk)
	})

	fetch := func(server *flakyServer, algorithm, value string) (*fetched, error) {
		u, err := url.Parse(server.URL + "/blob")
		Expect(err).NotTo(HaveOccurred())
		return fetcher.Fetch(context.Background(), u, "", algorithm, value)
	}

	It("tries four times with backoff, then fails with Diego's status text", func() {
		server := newFlakyServer(nil, 500, 500, 500, 500, 500)
		result := make(chan error, 1)
		go func() {
			_, err := fetch(server, "", "")
			result <- err
		}()
		for attempt := 1; attempt <= 3; attempt++ {
			awaitTimer(clk)
			Expect(server.count()).To(Equal(attempt))
			// 500ms, 1s, 2s plus jitter below 200ms.
			clk.Step(retryWaitMin<<(attempt-1) + maxJitter)
		}
		Eventually(func(g Gomega) { g.Expect(result).To(Receive(MatchError("Download failed: Status code 500"))) }).Should(Succeed())
		Expect(server.count()).To(Equal(4))
	})

	It("succeeds once the server recovers", func() {
		server := newFlakyServer([]byte("blob"), 503)
		result := make(chan *fetched, 1)
		go func() {
			f, err := fetch(server, "md5", "ee26908bf9629eeb4b37dac350f4754a")
			Expect(err).NotTo(HaveOccurred())
			result <- f
		}()
		awaitTimer(clk)
		clk.Step(retryWaitMin + maxJitter)
		var f *fetched
		Eventually(func(g Gomega) { g.Expect(result).To(Receive(&f)) }).Should(Succeed())
		Expect(os.ReadFile(f.path)).To(Equal([]byte("blob")))
		Expect(f.size).To(Equal(int64(4)))
		f.release()
		Expect(f.path).NotTo(BeAnExistingFile())
	})

	It("does not retry a checksum mismatch", func() {
		server := newFlakyServer([]byte("blob"))
		_, err := fetch(server, "md5", "00000000000000000000000000000000")
		Expect(err).To(BeAssignableToTypeOf(&ChecksumFailedError{}))
		Expect(server.count()).To(Equal(1))
	})

	It("stops waiting for a retry when cancelled", func() {
		server := newFlakyServer(nil, 500)
		ctx, cancel := context.WithCancel(context.Background())
		result := make(chan error, 1)
		go func() {
			u, _ := url.Parse(server.URL)
			_, err := fetcher.Fetch(ctx, u, "", "", "")
			result <- err
		}()
		awaitTimer(clk)
		cancel()
		Eventually(func(g Gomega) { g.Expect(result).To(Receive(BeAssignableToTypeOf(&DownloadCancelledError{}))) }).Should(Succeed())
	})
})

var _ = Describe("Recipe", func() {
	It("decodes JSON with BBS's field names and validates with BBS's rules", func() {
		recipe, err := DecodeRecipe([]byte(`{
			"log_source": "STG",
			"environment_variables": [{"name": "A", "value": "1"}],
			"action": {"timeout": {"timeout_ms": 1000, "action": {"run": {"path": "/bin/true", "user": "vcap",
				"resource_limits": {"nofile": 1024}}}}}
		}`), FormatJSON)
		Expect(err).NotTo(HaveOccurred())
		Expect(recipe.LogSource).To(Equal("STG"))
		Expect(recipe.Action.TimeoutAction.Action.RunAction.ResourceLimits.GetNofile()).To(Equal(uint64(1024)))

		_, err = DecodeRecipe([]byte(`{"action": {"download": {"from": "http://x", "to": "/tmp"}}}`), FormatJSON)
		Expect(err).To(MatchError(ContainSubstring("user")))
		_, err = DecodeRecipe([]byte(`{"setup": {"run": {"path": "/bin/true", "user": "vcap"}}}`), FormatJSON)
		Expect(err).To(MatchError(ContainSubstring("action")))
		_, err = DecodeRecipe([]byte(`  `), FormatJSON)
		Expect(err).To(MatchError("empty recipe"))
		_, err = DecodeRecipe([]byte(`{}`), "yaml")
		Expect(err).To(MatchError(ContainSubstring(`unknown recipe format "yaml"`)))
	})

	It("takes a DesiredLRP as protobuf, leaving out the monitor when checks become probes", func() {
		lrp := &models.DesiredLRP{
			LogSource:      "CELL",
			Setup:          models.WrapAction(&models.DownloadAction{From: "http://127.0.0.1/droplet", To: ".", User: "vcap"}),
			Action:         models.WrapAction(&models.RunAction{Path: "/tmp/lifecycle/launcher", User: "vcap"}),
			Monitor:        models.WrapAction(&models.RunAction{Path: "/tmp/lifecycle/healthcheck", User: "vcap"}),
			StartTimeoutMs: 60000,
		}
		data, err := lrp.Marshal()
		Expect(err).NotTo(HaveOccurred())
		recipe, err := DecodeRecipe(data, FormatDesiredLRPProto)
		Expect(err).NotTo(HaveOccurred())
		Expect(recipe.Monitor).NotTo(BeNil())
		Expect(recipe.Setup.DownloadAction.From).To(Equal("http://127.0.0.1/droplet"))
		Expect(recipe.StartTimeoutMs).To(Equal(int64(60000)))

		lrp.CheckDefinition = &models.CheckDefinition{Checks: []*models.Check{{TcpCheck: &models.TCPCheck{Port: 8080}}}}
		Expect(RecipeFromDesiredLRP(lrp).Monitor).To(BeNil())
	})
})

var _ = Describe("lookPath", func() {
	It("resolves a bare name with the process's PATH, not the runner's", func() {
		dir := GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(dir, "tool"), []byte("#!/bin/sh\n"), 0o755)).To(Succeed())
		path, err := lookPath("tool", []string{"PATH=/nowhere", "PATH=" + dir})
		Expect(err).NotTo(HaveOccurred())
		Expect(path).To(Equal(filepath.Join(dir, "tool")))
		_, err = lookPath("tool", []string{"PATH=/nowhere"})
		Expect(err).To(MatchError(ContainSubstring("executable file not found")))
	})
})

var _ = Describe("oomKills", func() {
	It("reads cgroup v2's oom_kill counter, and nothing from a missing file", func() {
		events := filepath.Join(GinkgoT().TempDir(), "memory.events")
		Expect(os.WriteFile(events, []byte("low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\noom_group_kill 0\n"), 0o600)).To(Succeed())
		n, ok := oomKills(events)
		Expect(ok).To(BeTrue())
		Expect(n).To(Equal(uint64(2)))
		_, ok = oomKills(filepath.Join(GinkgoT().TempDir(), "none"))
		Expect(ok).To(BeFalse())
	})
})
