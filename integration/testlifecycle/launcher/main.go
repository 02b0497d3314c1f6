// Command launcher is the test lifecycle's app launcher (see package
// testlifecycle): `launcher <app dir> <start command> <execution metadata>`.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"sigs.k8s.io/yaml"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: launcher <app dir> <start command> [<execution metadata>]")
		os.Exit(1)
	}
	appDir, err := filepath.Abs(os.Args[1])
	if err != nil {
		fail(err)
	}
	home := filepath.Dir(appDir)
	command := os.Args[2]
	if strings.TrimSpace(command) == "" {
		if command, err = stagedStartCommand(filepath.Join(home, "staging_info.yml")); err != nil {
			fail(err)
		}
	}
	if err := os.Chdir(appDir); err != nil {
		fail(err)
	}
	// The buildpacks' profile scripts (profile.d from finalize, the app's
	// own .profile.d) set the environment the start command sees.
	script := fmt.Sprintf(`for f in %[1]q/profile.d/*.sh %[2]q/.profile.d/*.sh; do [ -f "$f" ] && . "$f"; done
[ -f %[2]q/.profile ] && . %[2]q/.profile
exec bash -c %[3]q`, home, appDir, command)
	bash, err := exec.LookPath("bash")
	if err != nil {
		fail(err)
	}
	env := append(os.Environ(), "DEPS_DIR="+filepath.Join(home, "deps"))
	fail(syscall.Exec(bash, []string{"bash", "-c", script}, env))
}

// stagedStartCommand is the builder's start command for a droplet started
// without one.
func stagedStartCommand(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("no start command and no staging info: %w", err)
	}
	var info struct {
		StartCommand string `json:"start_command"`
	}
	if err := yaml.Unmarshal(data, &info); err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	return info.StartCommand, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "launcher:", err)
	os.Exit(1)
}
