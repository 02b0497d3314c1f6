package actions

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"code.cloudfoundry.org/bbs/models"
)

// Recipe is what one pod's runner runs: the parts of a DesiredLRP or
// TaskDefinition that execute inside the container. Field names are BBS's.
type Recipe struct {
	// LogSource is the source type of the runner's own lines (CC: CELL
	// for apps and tasks, STG for staging). Empty means CELL.
	LogSource            string                        `json:"log_source,omitempty"`
	EnvironmentVariables []*models.EnvironmentVariable `json:"environment_variables,omitempty"`
	CachedDependencies   []*models.CachedDependency    `json:"cached_dependencies,omitempty"`
	ImageLayers          []*models.ImageLayer          `json:"image_layers,omitempty"`
	// LegacyDownloadUser is the user of the exclusive image layers'
	// downloads (recorded only).
	LegacyDownloadUser string         `json:"legacy_download_user,omitempty"`
	Setup              *models.Action `json:"setup,omitempty"`
	Action             *models.Action `json:"action"`
	Monitor            *models.Action `json:"monitor,omitempty"`
	// StartTimeoutMs bounds the monitor's first success; 0 waits forever,
	// as in Diego.
	StartTimeoutMs int64 `json:"start_timeout_ms,omitempty"`
	// ResultFile is read after a successful run (a task's result).
	ResultFile string `json:"result_file,omitempty"`
}

// Validate checks the recipe with BBS's own validation of each part, so
// the runner refuses what BBS would have refused.
func (r *Recipe) Validate() error {
	var verr models.ValidationError
	if r.Action == nil {
		verr = verr.Append(models.ErrInvalidField{Field: "action"})
	}
	for name, action := range map[string]*models.Action{"setup": r.Setup, "action": r.Action, "monitor": r.Monitor} {
		if err := action.Validate(); err != nil {
			verr = verr.Append(fmt.Errorf("%s: %w", name, err))
		}
	}
	for _, dep := range r.CachedDependencies {
		if err := dep.Validate(); err != nil {
			verr = verr.Append(fmt.Errorf("cached_dependency: %w", err))
		}
	}
	for _, layer := range r.ImageLayers {
		if err := layer.Validate(); err != nil {
			verr = verr.Append(fmt.Errorf("image_layer: %w", err))
		}
	}
	for _, env := range r.EnvironmentVariables {
		if env.GetName() == "" {
			verr = verr.Append(models.ErrInvalidField{Field: "environment_variables"})
		}
	}
	if r.StartTimeoutMs < 0 {
		verr = verr.Append(models.ErrInvalidField{Field: "start_timeout_ms"})
	}
	if verr.Empty() {
		return nil
	}
	return verr
}

// RecipeFromDesiredLRP is the runner's part of an LRP. The monitor is left
// out when the LRP has a check_definition with checks: Iris turns those
// into Kubernetes probes, as Diego's executor prefers them to the monitor.
func RecipeFromDesiredLRP(lrp *models.DesiredLRP) *Recipe {
	r := &Recipe{
		LogSource:            lrp.GetLogSource(),
		EnvironmentVariables: lrp.GetEnvironmentVariables(),
		CachedDependencies:   lrp.GetCachedDependencies(),
		ImageLayers:          lrp.GetImageLayers(),
		LegacyDownloadUser:   lrp.GetLegacyDownloadUser(), //nolint:staticcheck // still sent by CC
		Setup:                lrp.GetSetup(),
		Action:               lrp.GetAction(),
		Monitor:              lrp.GetMonitor(),
		StartTimeoutMs:       lrp.GetStartTimeoutMs(),
	}
	if checks := lrp.GetCheckDefinition(); checks != nil && len(checks.GetChecks()) > 0 {
		r.Monitor = nil
	}
	return r
}

// RecipeFromTaskDefinition is the runner's part of a task (or staging).
func RecipeFromTaskDefinition(task *models.TaskDefinition) *Recipe {
	return &Recipe{
		LogSource:            task.GetLogSource(),
		EnvironmentVariables: task.GetEnvironmentVariables(),
		CachedDependencies:   task.GetCachedDependencies(),
		ImageLayers:          task.GetImageLayers(),
		LegacyDownloadUser:   task.GetLegacyDownloadUser(), //nolint:staticcheck // still sent by CC
		Action:               task.GetAction(),
		ResultFile:           task.GetResultFile(),
	}
}

// Input formats of DecodeRecipe.
const (
	FormatJSON            = "json"
	FormatDesiredLRPProto = "desired-lrp-protobuf"
	FormatTaskDefProto    = "task-definition-protobuf"
)

// DecodeRecipe reads a recipe in one of the input formats and validates it.
// JSON is a Recipe (unknown fields are refused, so a typo does not silently
// drop an action); the protobuf formats are BBS's DesiredLRP and
// TaskDefinition messages as CC sends them.
func DecodeRecipe(data []byte, format string) (*Recipe, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errEmptyRecipe
	}
	var recipe *Recipe
	switch format {
	case FormatJSON:
		recipe = &Recipe{}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(recipe); err != nil {
			return nil, fmt.Errorf("decoding JSON recipe: %w", err)
		}
	case FormatDesiredLRPProto:
		lrp := &models.DesiredLRP{}
		if err := lrp.Unmarshal(data); err != nil {
			return nil, fmt.Errorf("decoding DesiredLRP: %w", err)
		}
		recipe = RecipeFromDesiredLRP(lrp)
	case FormatTaskDefProto:
		task := &models.TaskDefinition{}
		if err := task.Unmarshal(data); err != nil {
			return nil, fmt.Errorf("decoding TaskDefinition: %w", err)
		}
		recipe = RecipeFromTaskDefinition(task)
	default:
		return nil, fmt.Errorf("unknown recipe format %q (one of %s, %s, %s)", format, FormatJSON, FormatDesiredLRPProto, FormatTaskDefProto)
	}
	if err := recipe.Validate(); err != nil {
		return nil, fmt.Errorf("invalid recipe: %w", err)
	}
	return recipe, nil
}

// errEmptyRecipe is an input with nothing in it.
var errEmptyRecipe = errors.New("empty recipe")
