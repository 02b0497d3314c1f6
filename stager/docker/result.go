package docker

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// LifecycleType is CC's name for the docker lifecycle.
const LifecycleType = "docker"

// Result is the "result" of a successful docker staging callback to CC
// (CC's Diego::Docker::V3::StagingCompletionHandler), with the shape of
// Diego's dockerapplifecycle.StagingResult.
type Result struct {
	LifecycleType     string            `json:"lifecycle_type"`
	LifecycleMetadata LifecycleMetadata `json:"lifecycle_metadata"`
	// ProcessTypes always holds "web": CC fails staging with "No process
	// types returned from stager" when it is empty.
	ProcessTypes map[string]string `json:"process_types"`
	// ExecutionMetadata is ExecutionMetadata encoded as a JSON string; CC
	// stores it verbatim on the droplet and parses it for ports and user.
	ExecutionMetadata string `json:"execution_metadata"`
}

// LifecycleMetadata echoes the image that was staged.
type LifecycleMetadata struct {
	DockerImage string `json:"docker_image"`
}

// ExecutionMetadata matches dockerapplifecycle's protocol.ExecutionMetadata,
// field names and omitempty included, because CC's DropletModel reads
// "ports" (Port/Protocol) and "user" from it.
type ExecutionMetadata struct {
	Cmd          []string `json:"cmd,omitempty"`
	Entrypoint   []string `json:"entrypoint,omitempty"`
	Workdir      string   `json:"workdir,omitempty"`
	ExposedPorts []Port   `json:"ports,omitempty"`
	User         string   `json:"user,omitempty"`
}

// Port matches dockerapplifecycle's protocol.Port: it has no JSON tags, so
// the keys are "Port" and "Protocol", which is what CC reads.
type Port struct {
	Port     uint16
	Protocol string
}

// newResult builds CC's result from an image config, as Diego's builder does.
func newResult(image string, cfg v1.Config) (Result, error) {
	ports, err := exposedPorts(cfg.ExposedPorts)
	if err != nil {
		return Result{}, err
	}
	meta, err := json.Marshal(ExecutionMetadata{
		Cmd:          cfg.Cmd,
		Entrypoint:   cfg.Entrypoint,
		Workdir:      cfg.WorkingDir,
		ExposedPorts: ports,
		User:         cfg.User,
	})
	if err != nil {
		return Result{}, fmt.Errorf("encoding execution metadata: %w", err)
	}
	return Result{
		LifecycleType:     LifecycleType,
		LifecycleMetadata: LifecycleMetadata{DockerImage: image},
		ProcessTypes:      map[string]string{"web": startCommand(cfg)},
		ExecutionMetadata: string(meta),
	}, nil
}

// startCommand is the detected "web" command, entrypoint then cmd joined by
// spaces, as Diego's builder reports it. CC only displays it: for docker
// processes CC passes the user's own command (or none) to the backend, and
// the image's entrypoint/cmd come from execution_metadata.
func startCommand(cfg v1.Config) string {
	return strings.Join(append(append([]string{}, cfg.Entrypoint...), cfg.Cmd...), " ")
}

// exposedPorts turns the config's "8080/tcp" keys into Ports sorted by
// number, tcp first on a tie, as Diego's builder does. A key without a
// protocol means tcp (docker's rule). An image without exposed ports gets
// none; CC then opens 8080 for the web process.
func exposedPorts(set map[string]struct{}) ([]Port, error) {
	var ports []Port
	for key := range set {
		number, proto, found := strings.Cut(key, "/")
		if !found || proto == "" {
			proto = "tcp"
		}
		n, err := strconv.ParseUint(number, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("invalid exposed port %q in image config: %w", key, err)
		}
		ports = append(ports, Port{Port: uint16(n), Protocol: strings.ToLower(proto)})
	}
	sort.Slice(ports, func(i, j int) bool {
		a, b := ports[i], ports[j]
		if a.Port != b.Port {
			return a.Port < b.Port
		}
		if (a.Protocol == "tcp") != (b.Protocol == "tcp") {
			return a.Protocol == "tcp"
		}
		return a.Protocol < b.Protocol
	})
	return ports, nil
}
