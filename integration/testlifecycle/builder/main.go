// Command builder is the test lifecycle's staging builder (see package
// testlifecycle): it runs the buildpacks over the app and writes the
// droplet, the build artifacts cache and result.json.
package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// Exit codes CC maps to its staging error ids.
const (
	exitNoAppDetected   = 222
	exitCompileFailed   = 223
	exitReleaseFailed   = 224
	exitBuilderMisfired = 1
)

type options struct {
	buildDir, buildpacksDir, cacheDir string
	outputDroplet, outputMetadata     string
	outputCache                       string
	order                             []string
	skipDetect                        bool
}

func main() {
	var o options
	var order string
	flag.StringVar(&o.buildDir, "buildDir", "/tmp/app", "the app's files")
	flag.StringVar(&o.buildpacksDir, "buildpacksDir", "/tmp/buildpacks", "buildpacks, each at <dir>/<md5 of its key>")
	flag.StringVar(&order, "buildpackOrder", "", "buildpack keys, comma separated")
	flag.BoolVar(&o.skipDetect, "skipDetect", false, "use every buildpack in order (the last one finalizes)")
	flag.StringVar(&o.cacheDir, "buildArtifactsCacheDir", "/tmp/cache", "the previous build's cache")
	flag.StringVar(&o.outputDroplet, "outputDroplet", "/tmp/droplet", "the droplet to write")
	flag.StringVar(&o.outputMetadata, "outputMetadata", "/tmp/result.json", "the staging result to write")
	flag.StringVar(&o.outputCache, "outputBuildArtifactsCache", "/tmp/output-cache", "the cache to write")
	flag.Bool("skipCertVerify", false, "accepted for CC's command line; unused")
	flag.Parse()
	if order != "" {
		o.order = strings.Split(order, ",")
	}
	code, err := build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

type buildpack struct {
	key, dir string
}

// build stages the app; it returns the exit code and what went wrong.
func build(o options) (int, error) {
	if len(o.order) == 0 {
		return exitBuilderMisfired, errors.New("no buildpacks given (-buildpackOrder)")
	}
	var all []buildpack
	for _, key := range o.order {
		sum := md5.Sum([]byte(key))
		all = append(all, buildpack{key: key, dir: filepath.Join(o.buildpacksDir, hex.EncodeToString(sum[:]))})
	}
	// The droplet's layout, relative to the vcap user's home.
	staging, err := os.MkdirTemp("", "droplet-")
	if err != nil {
		return exitBuilderMisfired, err
	}
	defer os.RemoveAll(staging)
	app := filepath.Join(staging, "app")
	deps := filepath.Join(staging, "deps")
	profile := filepath.Join(staging, "profile.d")
	for _, dir := range []string{deps, profile, filepath.Join(staging, "tmp"), filepath.Join(staging, "logs"), o.cacheDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return exitBuilderMisfired, err
		}
	}
	if err := copyTree(o.buildDir, app); err != nil {
		return exitBuilderMisfired, fmt.Errorf("copying the app: %w", err)
	}

	used := all
	if !o.skipDetect {
		detected, ok := detect(all, app)
		if !ok {
			return exitNoAppDetected, errors.New("None of the buildpacks detected a compatible application")
		}
		used = []buildpack{detected}
	}
	final := used[len(used)-1]
	for i, bp := range used[:len(used)-1] {
		if err := runScript(bp, "supply", app, o.cacheDir, deps, strconv.Itoa(i)); err != nil {
			return exitCompileFailed, fmt.Errorf("Failed to compile droplet: %w", err)
		}
	}
	finalIndex := strconv.Itoa(len(used) - 1)
	if exists(filepath.Join(final.dir, "bin", "finalize")) {
		if exists(filepath.Join(final.dir, "bin", "supply")) {
			if err := runScript(final, "supply", app, o.cacheDir, deps, finalIndex); err != nil {
				return exitCompileFailed, fmt.Errorf("Failed to compile droplet: %w", err)
			}
		}
		if err := runScript(final, "finalize", app, o.cacheDir, deps, finalIndex, profile); err != nil {
			return exitCompileFailed, fmt.Errorf("Failed to compile droplet: %w", err)
		}
	} else if err := runScript(final, "compile", app, o.cacheDir); err != nil {
		return exitCompileFailed, fmt.Errorf("Failed to compile droplet: %w", err)
	}

	release, err := exec.Command(filepath.Join(final.dir, "bin", "release"), app).Output()
	if err != nil {
		return exitReleaseFailed, fmt.Errorf("Failed to build droplet release: %w", err)
	}
	var released struct {
		DefaultProcessTypes map[string]string `json:"default_process_types"`
	}
	if err := yaml.Unmarshal(release, &released); err != nil {
		return exitReleaseFailed, fmt.Errorf("Failed to build droplet release: %w", err)
	}
	name := buildpackName(final)
	info, err := yaml.Marshal(map[string]string{"detected_buildpack": name, "start_command": released.DefaultProcessTypes["web"]})
	if err != nil {
		return exitBuilderMisfired, err
	}
	if err := os.WriteFile(filepath.Join(staging, "staging_info.yml"), info, 0o644); err != nil {
		return exitBuilderMisfired, err
	}
	if err := writeTgz(staging, o.outputDroplet); err != nil {
		return exitBuilderMisfired, fmt.Errorf("writing the droplet: %w", err)
	}
	if err := writeTgz(o.cacheDir, o.outputCache); err != nil {
		return exitBuilderMisfired, fmt.Errorf("writing the build artifacts cache: %w", err)
	}
	var buildpacks []map[string]string
	for _, bp := range used {
		buildpacks = append(buildpacks, map[string]string{"key": bp.key, "name": buildpackName(bp)})
	}
	result, err := json.Marshal(map[string]any{
		"lifecycle_type": "buildpack",
		"lifecycle_metadata": map[string]any{
			"detected_buildpack": name,
			"buildpack_key":      final.key,
			"buildpacks":         buildpacks,
		},
		"process_types":      released.DefaultProcessTypes,
		"execution_metadata": "",
	})
	if err != nil {
		return exitBuilderMisfired, err
	}
	return 0, os.WriteFile(o.outputMetadata, result, 0o644)
}

// detect is the first buildpack whose bin/detect passes.
func detect(all []buildpack, app string) (buildpack, bool) {
	for _, bp := range all {
		cmd := exec.Command(filepath.Join(bp.dir, "bin", "detect"), app)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if cmd.Run() == nil {
			return bp, true
		}
	}
	return buildpack{}, false
}

func runScript(bp buildpack, script string, args ...string) error {
	cmd := exec.Command(filepath.Join(bp.dir, "bin", script), args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", bp.key, script, err)
	}
	return nil
}

// buildpackName is the buildpack's name from its manifest.yml, else its key.
func buildpackName(bp buildpack) string {
	data, err := os.ReadFile(filepath.Join(bp.dir, "manifest.yml"))
	if err == nil {
		var manifest struct {
			Language string `json:"language"`
		}
		if yaml.Unmarshal(data, &manifest) == nil && manifest.Language != "" {
			return manifest.Language
		}
	}
	return bp.key
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// writeTgz writes dir's contents, as ./<path>, to a gzipped tar at dest.
func writeTgz(dir, dest string) error {
	f, err := os.Create(dest)
	if err != nil {
		return err
	}
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
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
		header, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		header.Name = "./" + filepath.ToSlash(rel)
		if d.IsDir() {
			header.Name += "/"
		}
		if err := tw.WriteHeader(header); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		_, err = io.Copy(tw, in)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = gz.Close()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	return err
}
