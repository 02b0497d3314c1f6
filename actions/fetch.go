package actions

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"k8s.io/utils/clock"
)

// Diego's downloader retries (cacheddownloader downloader.go): four
// attempts, exponential backoff from 500ms to 5s plus up to 200ms jitter;
// a checksum mismatch or a cancel is not retried.
const (
	maxDownloadAttempts = 4
	retryWaitMin        = 500 * time.Millisecond
	retryWaitMax        = 5 * time.Second
	maxJitter           = 200 * time.Millisecond
)

// DownloadCancelledError is a download stopped by a cancel.
type DownloadCancelledError struct {
	source string
	cause  error
}

func (e *DownloadCancelledError) Error() string {
	return fmt.Sprintf("Download cancelled: source '%s'", e.source)
}

func (e *DownloadCancelledError) Unwrap() error { return e.cause }

// Fetcher downloads archives with Diego's retries and checksum checks, and
// keeps those with a cache key (and an ETag or Last-Modified) in a local
// cache directory, revalidated with a conditional GET. In a pod that
// directory is an emptyDir, so a restarted container skips the download.
type Fetcher struct {
	client   *http.Client
	cacheDir string
	tempDir  string
	clock    clock.Clock
	logger   lager.Logger

	mu   sync.Mutex
	keys map[string]*sync.Mutex
}

// NewFetcher downloads with client; cacheDir "" disables the cache.
func NewFetcher(logger lager.Logger, client *http.Client, cacheDir, tempDir string, clk clock.Clock) *Fetcher {
	return &Fetcher{client: client, cacheDir: cacheDir, tempDir: tempDir, clock: clk, logger: logger.Session("fetcher"), keys: map[string]*sync.Mutex{}}
}

type cacheMeta struct {
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	URL          string `json:"url"`
}

// fetched is a downloaded file; release removes it unless it is the cache's.
type fetched struct {
	path string
	// size is the bytes downloaded now: 0 when the cache answered.
	size    int64
	release func()
}

// Fetch downloads from into a local file.
func (f *Fetcher) Fetch(ctx context.Context, from *url.URL, cacheKey, algorithm, value string) (*fetched, error) {
	if cacheKey == "" || f.cacheDir == "" {
		path, _, err := f.download(ctx, from, cacheMeta{}, algorithm, value)
		if err != nil {
			return nil, err
		}
		return &fetched{path: path, size: fileSize(path), release: func() { _ = os.Remove(path) }}, nil
	}

	lock := f.keyLock(cacheKey)
	lock.Lock()
	defer lock.Unlock()
	sum := sha256.Sum256([]byte(cacheKey))
	entry := filepath.Join(f.cacheDir, hex.EncodeToString(sum[:]))
	var meta cacheMeta
	if raw, err := os.ReadFile(entry + ".json"); err == nil {
		if json.Unmarshal(raw, &meta) != nil || meta.URL != from.String() {
			meta = cacheMeta{}
		}
	}
	if _, err := os.Stat(entry); err != nil {
		meta = cacheMeta{}
	}
	path, newMeta, err := f.download(ctx, from, meta, algorithm, value)
	if err != nil {
		return nil, err
	}
	keep := func() {}
	if path == "" {
		f.logger.Info("cache-hit", lager.Data{"cache_key": cacheKey})
		return &fetched{path: entry, size: 0, release: keep}, nil
	}
	size := fileSize(path)
	if newMeta.ETag == "" && newMeta.LastModified == "" {
		// Nothing to revalidate with: not cacheable (as in Diego).
		return &fetched{path: path, size: size, release: func() { _ = os.Remove(path) }}, nil
	}
	if err := os.MkdirAll(f.cacheDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Rename(path, entry); err != nil {
		return nil, err
	}
	newMeta.URL = from.String()
	raw, _ := json.Marshal(newMeta)
	if err := os.WriteFile(entry+".json", raw, 0o644); err != nil {
		f.logger.Error("failed-writing-cache-metadata", err)
	}
	return &fetched{path: entry, size: size, release: keep}, nil
}

func (f *Fetcher) keyLock(key string) *sync.Mutex {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.keys[key]
	if !ok {
		l = &sync.Mutex{}
		f.keys[key] = l
	}
	return l
}

// download returns "" when the server answered 304 to a revalidation.
func (f *Fetcher) download(ctx context.Context, from *url.URL, cached cacheMeta, algorithm, value string) (string, cacheMeta, error) {
	var err error
	for attempt := 0; attempt < maxDownloadAttempts; attempt++ {
		var path string
		var meta cacheMeta
		path, meta, err = f.attempt(ctx, from, cached, algorithm, value)
		if err == nil {
			return path, meta, nil
		}
		var checksumErr *ChecksumFailedError
		var cancelled *DownloadCancelledError
		if errors.As(err, &checksumErr) || errors.As(err, &cancelled) || attempt == maxDownloadAttempts-1 {
			break
		}
		f.logger.Info("retrying", lager.Data{"attempt": attempt, "error": err.Error()})
		select {
		case <-f.clock.After(backoff(attempt)):
		case <-ctx.Done():
			return "", cacheMeta{}, &DownloadCancelledError{source: "backoff", cause: ctx.Err()}
		}
	}
	return "", cacheMeta{}, err
}

func backoff(attempt int) time.Duration {
	wait := retryWaitMin << attempt
	if wait > retryWaitMax || wait <= 0 {
		wait = retryWaitMax
	}
	return wait + time.Duration(rand.Int64N(int64(maxJitter)))
}

func (f *Fetcher) attempt(ctx context.Context, from *url.URL, cached cacheMeta, algorithm, value string) (string, cacheMeta, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, from.String(), nil)
	if err != nil {
		return "", cacheMeta{}, err
	}
	if cached.ETag != "" {
		req.Header.Set("If-None-Match", cached.ETag)
	}
	if cached.LastModified != "" {
		req.Header.Set("If-Modified-Since", cached.LastModified)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", cacheMeta{}, &DownloadCancelledError{source: "fetch-request", cause: err}
		}
		return "", cacheMeta{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified && (cached.ETag != "" || cached.LastModified != "") {
		return "", cached, nil
	}
	if resp.StatusCode != http.StatusOK {
		return "", cacheMeta{}, fmt.Errorf("Download failed: Status code %d", resp.StatusCode) //nolint:staticcheck // Diego's exact text
	}

	var sum *checksum
	if algorithm != "" || value != "" {
		if sum, err = newChecksum(algorithm); err != nil {
			return "", cacheMeta{}, err
		}
	}
	tmp, err := os.CreateTemp(f.tempDir, "download-")
	if err != nil {
		return "", cacheMeta{}, err
	}
	var dst io.Writer = tmp
	if sum != nil {
		dst = io.MultiWriter(tmp, sum)
	}
	_, err = io.Copy(dst, resp.Body)
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err == nil && sum != nil {
		err = sum.verify(value)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		if ctx.Err() != nil {
			return "", cacheMeta{}, &DownloadCancelledError{source: "copy-body", cause: err}
		}
		return "", cacheMeta{}, err
	}
	return tmp.Name(), cacheMeta{ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified")}, nil
}

func fileSize(path string) int64 {
	info, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return info.Size()
}
