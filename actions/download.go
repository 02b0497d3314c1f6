package actions

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"syscall"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
)

// downloadStep fetches an archive and unpacks it into `to` (executor
// steps/download_step.go). Progress lines go to the step's stream only when
// the action names an artifact; failures are emittable: "Downloading
// <artifact> failed" for the fetch (its cause stays in the runner's log,
// it may hold a signed URL) and "Copying <artifact> into the container
// failed: <err>" for the unpacking.
type downloadStep struct {
	model    *models.DownloadAction
	fetcher  *Fetcher
	streamer Streamer
	logger   lager.Logger
	// baseDir resolves a relative `to` (CC's droplet goes to "."): Garden
	// takes it relative to the user's home directory.
	baseDir string
	users   userResolver
}

func (s *downloadStep) Run(ctx context.Context) error {
	logger := s.logger.Session("download-step", lager.Data{"to": s.model.To, "cache_key": s.model.CacheKey})
	// A runner that switches users extracts as the user's (into its home
	// for a relative `to`), so that its processes own what they run in;
	// otherwise everything is the runner's, as the container's one user.
	baseDir := s.baseDir
	identity, err := s.users.identityFor(s.model.User)
	switch {
	case err != nil:
		logger.Info("user-not-switched", lager.Data{"requested_user": s.model.User, "reason": err.Error()})
	case identity.credential != nil:
		if identity.home != "" {
			baseDir = identity.home
		}
	}
	s.emit("Downloading %s...", s.model.Artifact)
	err = fetchAndExtract(ctx, s.fetcher, s.model.From, resolve(baseDir, s.model.To), s.model.CacheKey, s.model.ChecksumAlgorithm, s.model.ChecksumValue, identity.credential, func(size int64) {
		if size != 0 {
			s.emit("Downloaded %s (%s)", s.model.Artifact, byteSize(uint64(size)))
		} else {
			s.emit("Downloaded %s", s.model.Artifact)
		}
	})
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return new(CancelledError)
	}
	logger.Error("failed", err)
	var msg string
	switch err.(type) {
	case *extractError:
		msg = "Copying into the container failed: " + err.Error()
		if s.model.Artifact != "" {
			msg = fmt.Sprintf("Copying %s into the container failed: %v", s.model.Artifact, err)
		}
	default:
		msg = "Downloading failed"
		if s.model.Artifact != "" {
			msg = fmt.Sprintf("Downloading %s failed", s.model.Artifact)
		}
	}
	s.emitError(msg)
	return NewEmittableError(err, "%s", msg)
}

func (s *downloadStep) emit(format string, args ...any) {
	if s.model.Artifact != "" {
		s.streamer.Out(fmt.Sprintf(format, args...))
	}
}

// emitError is written even without an artifact, cut to 1 KiB as Diego does.
func (s *downloadStep) emitError(msg string) {
	const limit, suffix = 1024, " (error truncated)"
	if len(msg)+1 > limit {
		msg = msg[:limit-len(suffix)] + suffix
	}
	s.streamer.Err(msg)
}

// extractError marks a failure to unpack (not to fetch).
type extractError struct{ err error }

func (e *extractError) Error() string { return e.err.Error() }
func (e *extractError) Unwrap() error { return e.err }

// fetchAndExtract is a download action's work, shared with cached
// dependencies. An archive of an unknown format is a fetch failure, as in
// Diego, where the downloader rejects it.
func fetchAndExtract(ctx context.Context, fetcher *Fetcher, from, to, cacheKey, algorithm, value string, owner *syscall.Credential, downloaded func(size int64)) error {
	u, err := url.ParseRequestURI(from)
	if err != nil {
		return err
	}
	file, err := fetcher.Fetch(ctx, u, cacheKey, algorithm, value)
	if err != nil {
		return err
	}
	defer file.release()
	format, err := detectArchive(file.path)
	if err != nil {
		return err
	}
	if err := extractArchive(format, file.path, to, owner); err != nil {
		return &extractError{err: err}
	}
	downloaded(file.size)
	return nil
}

// resolve makes a relative container path absolute against base.
func resolve(base, p string) string {
	if filepath.IsAbs(p) || base == "" {
		return p
	}
	return filepath.Join(base, p)
}
