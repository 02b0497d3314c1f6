// Command image builds Iris's container image without a Docker engine: a
// static iris binary (one per platform) on an empty base, as an OCI image
// index, pushed to a registry and/or written as an OCI image layout. The
// chart runs it with args only, so the entrypoint is the iris binary.
//
//	go run ./scripts/image -push registry.example.com/cf/iris:1.0
//	go run ./scripts/image -oci-layout bin/iris-oci -platforms linux/amd64
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	binaryPath = "/usr/local/bin/iris"
	// nonRootID is the image's default user and group. The chart sets its
	// own runAsUser; the log agent runs as root to read the kubelet's logs.
	nonRootID = 65532
)

type options struct {
	push      string
	ociLayout string
	platforms string
	binary    string
	insecure  bool
	revision  string
}

func main() {
	var o options
	flag.StringVar(&o.push, "push", "", "push the image index to this reference (registry/repository:tag)")
	flag.StringVar(&o.ociLayout, "oci-layout", "", "write the image index as an OCI image layout into this directory")
	flag.StringVar(&o.platforms, "platforms", "linux/amd64,linux/arm64", "comma-separated os/arch list to build for")
	flag.StringVar(&o.binary, "binary", "", "package this prebuilt static iris binary instead of building (one platform only)")
	flag.BoolVar(&o.insecure, "insecure", false, "allow a plain HTTP registry for -push")
	flag.StringVar(&o.revision, "revision", "", "source revision for the org.opencontainers.image.revision label")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.push == "" && o.ociLayout == "" {
		return fmt.Errorf("nothing to do: set -push and/or -oci-layout")
	}
	platforms := strings.Split(o.platforms, ",")
	if o.binary != "" && len(platforms) != 1 {
		return fmt.Errorf("-binary packages one platform; got -platforms %q", o.platforms)
	}
	index := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		platform, err := v1.ParsePlatform(strings.TrimSpace(p))
		if err != nil {
			return fmt.Errorf("platform %q: %w", p, err)
		}
		binary := o.binary
		if binary == "" {
			dir, err := os.MkdirTemp("", "iris-image-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			binary = filepath.Join(dir, "iris")
			if err := buildStatic(binary, platform); err != nil {
				return err
			}
		}
		img, err := Image(binary, platform, o.revision)
		if err != nil {
			return err
		}
		index = mutate.AppendManifests(index, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: platform}})
		fmt.Fprintf(os.Stderr, "image: built %s\n", platform)
	}

	if o.ociLayout != "" {
		if _, err := layout.Write(o.ociLayout, index); err != nil {
			return fmt.Errorf("writing OCI layout %s: %w", o.ociLayout, err)
		}
		fmt.Fprintf(os.Stderr, "image: wrote OCI layout %s\n", o.ociLayout)
	}
	if o.push != "" {
		var opts []name.Option
		if o.insecure {
			opts = append(opts, name.Insecure)
		}
		ref, err := name.ParseReference(o.push, opts...)
		if err != nil {
			return fmt.Errorf("reference %q: %w", o.push, err)
		}
		if err := remote.WriteIndex(ref, index, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return fmt.Errorf("pushing %s: %w", ref, err)
		}
		digest, err := index.Digest()
		if err != nil {
			return err
		}
		fmt.Printf("%s@%s\n", ref.Context(), digest)
	}
	return nil
}

// buildStatic compiles cmd/iris without cgo, so it runs on an empty base.
func buildStatic(out string, platform *v1.Platform) error {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd/iris")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+platform.OS, "GOARCH="+platform.Architecture)
	if platform.Variant != "" && platform.Architecture == "arm" {
		cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(platform.Variant, "v"))
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building iris for %s: %w", platform, err)
	}
	return nil
}

// Image is one platform's image: a single layer holding the binary, a
// passwd/group naming the non-root user, and a world-writable /tmp.
func Image(binary string, platform *v1.Platform, revision string) (v1.Image, error) {
	layerTar, err := rootfs(binary)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Variant = platform.OS, platform.Architecture, platform.Variant
	cfg.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	id := strconv.Itoa(nonRootID)
	cfg.Config = v1.Config{
		Entrypoint: []string{binaryPath},
		User:       id + ":" + id,
		WorkingDir: "/",
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		Labels: map[string]string{
			"org.opencontainers.image.title":       "iris",
			"org.opencontainers.image.description": "Cloud Foundry app scheduler on Kubernetes",
		},
	}
	if revision != "" {
		cfg.Config.Labels["org.opencontainers.image.revision"] = revision
	}
	return mutate.ConfigFile(img, cfg)
}

// rootfs returns the layer as a tar. Every timestamp is the epoch, so the
// same binary always gives the same digest.
func rootfs(binary string) ([]byte, error) {
	content, err := os.ReadFile(binary)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", binary, err)
	}
	id := strconv.Itoa(nonRootID)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	dir := func(name string, mode int64, uid int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, Uid: uid, Gid: uid, ModTime: epoch})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	steps := []func() error{
		func() error { return dir("etc/", 0o755, 0) },
		func() error {
			return file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:"+id+":"+id+":nonroot:/home/nonroot:/sbin/nologin\n"))
		},
		func() error { return file("etc/group", 0o644, []byte("root:x:0:\nnonroot:x:"+id+":\n")) },
		func() error { return dir("home/", 0o755, 0) },
		func() error { return dir("home/nonroot/", 0o700, nonRootID) },
		func() error { return dir("tmp/", 0o1777, 0) },
		func() error { return dir("usr/", 0o755, 0) },
		func() error { return dir("usr/local/", 0o755, 0) },
		func() error { return dir("usr/local/bin/", 0o755, 0) },
		func() error { return file(strings.TrimPrefix(binaryPath, "/"), 0o755, content) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
