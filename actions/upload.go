package actions

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/md5" //nolint:gosec // Content-MD5 is what Diego's uploader sends
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
)

// maxUploadAttempts: Diego's uploader tries three times, without waiting
// in between (executor depot/uploader/uploader.go).
const maxUploadAttempts = 3

// Diego's upload failure texts (executor steps/upload_step.go).
const (
	errParsingURL      = "Failed to parse URL"
	errCreateTmpFile   = "Failed to create temp file"
	errCopyStreamToTmp = "Failed to copy stream contents into temp file"
	errEstablishStream = "Failed to establish stream from container"
	errUploadPayload   = "Failed to upload payload"
)

// uploadStep POSTs a file (or a directory, as a tgz) to a URL (executor
// steps/upload_step.go). A failed upload returns the raw error and writes
// only "Failed to upload payload for <artifact>" to the log stream: the
// error may contain the URL, which may be signed.
type uploadStep struct {
	model  *models.UploadAction
	client *http.Client
	// proxy, when set, is the upload proxy's client: payloads go through
	// it (see UploadProxy) instead of straight to the destination.
	proxy    *http.Client
	tempDir  string
	streamer Streamer
	logger   lager.Logger
	// baseDir resolves a relative `from`, as for downloads.
	baseDir string
}

func (s *uploadStep) Run(ctx context.Context) error {
	logger := s.logger.Session("upload-step", lager.Data{"from": s.model.From})
	if s.model.User != "" {
		logger.Info("user-not-switched", lager.Data{"requested_user": s.model.User})
	}
	s.emit("Uploading %s...", s.model.Artifact)
	to, err := url.ParseRequestURI(s.model.To)
	if err != nil {
		logger.Error("failed-to-parse-url", err)
		s.emitError(errParsingURL)
		return err
	}

	payload, cleanup, err := s.payload(logger)
	if err != nil {
		return err
	}
	defer cleanup()

	size, err := upload(ctx, logger, s.client, s.proxy, payload, to)
	if err != nil {
		if ctx.Err() != nil {
			return new(CancelledError)
		}
		logger.Error("failed-to-upload", err)
		s.emitError(errUploadPayload)
		return err
	}
	s.emit("Uploaded %s (%s)", s.model.Artifact, byteSize(uint64(size)))
	logger.Info("upload-successful")
	return nil
}

// payload is the file to send: From itself, or a tgz of it when it is a
// directory.
func (s *uploadStep) payload(logger lager.Logger) (string, func(), error) {
	from := resolve(s.baseDir, s.model.From)
	info, err := os.Stat(from)
	if err != nil {
		logger.Error("failed-to-stream-out", err)
		return "", nil, s.failure(errEstablishStream, err)
	}
	if !info.IsDir() {
		return from, func() {}, nil
	}
	tmp, err := os.CreateTemp(s.tempDir, "compressed")
	if err != nil {
		return "", nil, s.failure(errCreateTmpFile, err)
	}
	cleanup := func() { _ = os.Remove(tmp.Name()) }
	err = writeTgz(tmp, from)
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		cleanup()
		return "", nil, s.failure(errCopyStreamToTmp, err)
	}
	return tmp.Name(), cleanup, nil
}

func (s *uploadStep) failure(text string, err error) error {
	msg := s.artifactErr(text)
	s.emitError(text)
	return NewEmittableError(err, "%s", msg)
}

func (s *uploadStep) emit(format string, args ...any) {
	if s.model.Artifact != "" {
		s.streamer.Out(fmt.Sprintf(format, args...))
	}
}

func (s *uploadStep) artifactErr(text string) string {
	if s.model.Artifact != "" {
		return text + " for " + s.model.Artifact
	}
	return text
}

func (s *uploadStep) emitError(text string) {
	if s.model.Artifact != "" {
		s.streamer.Err(s.artifactErr(text))
	}
}

// upload sends file with Diego's headers: Content-MD5 and Content-Digest
// (sha-256), both base64, which cc-uploader and the blobstore check.
// Through a proxy (non-nil), each attempt is one request to the proxy,
// which answers with the destination's status: the retries stay here.
func upload(ctx context.Context, logger lager.Logger, client, proxy *http.Client, file string, to *url.URL) (int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	md5sum, sha256sum := md5.New(), sha256.New() //nolint:gosec
	size, err := io.Copy(io.MultiWriter(md5sum, sha256sum), f)
	if err != nil {
		return 0, err
	}
	contentMD5 := base64.StdEncoding.EncodeToString(md5sum.Sum(nil))
	contentSHA256 := base64.StdEncoding.EncodeToString(sha256sum.Sum(nil))

	for attempt := 0; attempt < maxUploadAttempts; attempt++ {
		err = attemptUpload(ctx, logger, client, proxy, f, size, contentMD5, contentSHA256, to)
		if err == nil || ctx.Err() != nil {
			break
		}
		logger.Error("failed-uploading", err, lager.Data{"attempt": attempt})
	}
	if err != nil {
		return 0, err
	}
	return size, nil
}

func attemptUpload(ctx context.Context, logger lager.Logger, client, proxy *http.Client, f *os.File, size int64, contentMD5, contentSHA256 string, to *url.URL) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	target := to.String()
	if proxy != nil {
		client, target = proxy, "http://"+uploadProxyHost+UploadProxyPath
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, io.NopCloser(f))
	if err != nil {
		return err
	}
	if proxy != nil {
		req.Header.Set(UploadProxyDestinationHeader, to.String())
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Content-MD5", contentMD5)
	req.Header.Set("Content-Digest", fmt.Sprintf("sha-256=:%s:", contentSHA256))
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 400 {
		if refusal := resp.Header.Get(UploadProxyErrorHeader); refusal != "" {
			logger.Info("upload-proxy-refused", lager.Data{"status": resp.StatusCode, "message": refusal})
		}
		return fmt.Errorf("Upload failed: Status code %d", resp.StatusCode) //nolint:staticcheck // Diego's exact text
	}
	return nil
}

// writeTgz writes dir's contents (paths relative to dir) as a gzipped tar.
func writeTgz(w io.Writer, dir string) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	return errors.Join(err, tw.Close(), gz.Close())
}
