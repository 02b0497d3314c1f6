// Package buildpack turns an OPI buildpack staging request into the Diego
// recipe Iris's action runner runs in the staging pod: the recipe current
// CC sends Diego for the same staging (cloud_controller_ng
// lib/cloud_controller/diego/buildpack/staging_action_builder.rb), so OPI
// and BBS staging run the same lifecycle the same way. OPI's request
// names no lifecycle bundle and no stack; the operator configures both.
package buildpack

import (
	"crypto/md5" //nolint:gosec // CC names buildpack directories by the md5 of their key
	"encoding/hex"
	"strconv"
	"strings"

	bbsmodels "code.cloudfoundry.org/bbs/models"

	"github.com/iris-cf/iris/actions"
	"github.com/iris-cf/iris/models"
)

// Paths of CC's staging recipe, inside the stack's root file system.
const (
	LifecycleDir  = "/tmp/lifecycle"
	BuilderPath   = LifecycleDir + "/builder"
	AppDir        = "/tmp/app"
	BuildpacksDir = "/tmp/buildpacks"
	CacheDir      = "/tmp/cache"
	OutputDroplet = "/tmp/droplet"
	OutputCache   = "/tmp/output-cache"
	ResultFile    = "/tmp/result.json"
	// customBuildpack is CC's name for a buildpack given by URL, which the
	// builder fetches itself rather than the recipe.
	customBuildpack = "custom"
	stagingUser     = "vcap"
	// defaultLang is CC's STAGING_DEFAULT_LANG.
	defaultLang = "en_US.UTF-8"
)

// Options are the operator's parts of the recipe.
type Options struct {
	// LifecycleBundleURL is the buildpack lifecycle (builder, launcher)
	// the recipe downloads into /tmp/lifecycle, as Diego's file server
	// serves it to cells (staging.lifecycle_bundle_url).
	LifecycleBundleURL string
	// Stack names the lifecycle's cache key, as CC's does.
	Stack string
}

// Recipe is the staging recipe for req: the lifecycle and the buildpacks
// as cached dependencies, the app bits (and the previous build artifacts
// cache, if any) downloaded, the builder run with CC's flags and the app's
// environment, and the droplet and cache uploaded to CC's URIs. Its result
// is the builder's result.json. It fails only for a request it cannot
// represent.
func Recipe(req *models.StagingRequest, opts Options) (*actions.Recipe, error) {
	bp := req.Lifecycle.BuildpackLifecycle
	if bp == nil {
		return nil, models.Invalidf("lifecycle: buildpack_lifecycle is required")
	}
	if opts.LifecycleBundleURL == "" {
		return nil, models.Invalidf("lifecycle: this Iris cannot stage buildpack apps: staging.lifecycle_bundle_url (the buildpack lifecycle) is not set")
	}
	if bp.AppBitsDownloadURI == "" || bp.DropletUploadURI == "" {
		return nil, models.Invalidf("lifecycle: buildpack_lifecycle.app_bits_download_uri and droplet_upload_uri are required")
	}

	dependencies := []*bbsmodels.CachedDependency{{
		From: opts.LifecycleBundleURL, To: LifecycleDir, CacheKey: "buildpack-" + opts.Stack + "-lifecycle",
	}}
	keys := make([]string, 0, len(bp.Buildpacks))
	skipDetect := false
	for _, b := range bp.Buildpacks {
		if b.Key == "" {
			return nil, models.Invalidf("lifecycle: every buildpack needs a key")
		}
		keys = append(keys, b.Key)
		skipDetect = skipDetect || b.SkipDetect
		if b.Name == customBuildpack {
			continue
		}
		dep := &bbsmodels.CachedDependency{Name: b.Name, From: b.URL, To: BuildpackDir(b.Key), CacheKey: b.Key}
		if b.SHA256 != "" {
			dep.ChecksumAlgorithm, dep.ChecksumValue = "sha256", b.SHA256
		}
		dependencies = append(dependencies, dep)
	}

	downloads := []bbsmodels.ActionInterface{&bbsmodels.DownloadAction{
		Artifact: "app package", From: bp.AppBitsDownloadURI, To: AppDir, User: stagingUser,
	}}
	if bp.BuildpackCacheDownloadURI != "" && bp.BuildpackCacheChecksum != "" {
		algorithm := strings.ToLower(bp.BuildpackCacheChecksumAlgorithm)
		if algorithm == "" {
			algorithm = "sha256"
		}
		downloads = append(downloads, bbsmodels.Try(&bbsmodels.DownloadAction{
			Artifact: "build artifacts cache", From: bp.BuildpackCacheDownloadURI, To: CacheDir, User: stagingUser,
			ChecksumAlgorithm: algorithm, ChecksumValue: bp.BuildpackCacheChecksum,
		}))
	}

	env := make([]*bbsmodels.EnvironmentVariable, 0, len(req.Environment))
	for _, e := range req.Environment {
		env = append(env, &bbsmodels.EnvironmentVariable{Name: e.Name, Value: e.Value})
	}
	builder := &bbsmodels.RunAction{
		Path: BuilderPath,
		User: stagingUser,
		Args: []string{
			"-buildpackOrder=" + strings.Join(keys, ","),
			"-skipCertVerify=false",
			"-skipDetect=" + strconv.FormatBool(skipDetect),
			"-buildDir=" + AppDir,
			"-outputDroplet=" + OutputDroplet,
			"-outputMetadata=" + ResultFile,
			"-outputBuildArtifactsCache=" + OutputCache,
			"-buildpacksDir=" + BuildpacksDir,
			"-buildArtifactsCacheDir=" + CacheDir,
		},
		Env: env,
	}

	uploads := []bbsmodels.ActionInterface{&bbsmodels.UploadAction{
		Artifact: "droplet", From: OutputDroplet, To: bp.DropletUploadURI, User: stagingUser,
	}}
	if bp.BuildpackCacheUploadURI != "" {
		uploads = append(uploads, &bbsmodels.UploadAction{
			Artifact: "build artifacts cache", From: OutputCache, To: bp.BuildpackCacheUploadURI, User: stagingUser,
		})
	}

	recipe := &actions.Recipe{
		LogSource:            "STG",
		EnvironmentVariables: []*bbsmodels.EnvironmentVariable{{Name: "LANG", Value: defaultLang}},
		CachedDependencies:   dependencies,
		Action: bbsmodels.WrapAction(bbsmodels.Serial(
			bbsmodels.Parallel(downloads...),
			builder,
			bbsmodels.EmitProgressFor(bbsmodels.Parallel(uploads...),
				"Uploading droplet, build artifacts cache...", "Uploading complete", "Uploading failed"),
		)),
		ResultFile: ResultFile,
	}
	if err := recipe.Validate(); err != nil {
		return nil, models.Invalidf("staging recipe: %v", err)
	}
	return recipe, nil
}

// BuildpackDir is where CC's recipe puts the buildpack with key, and where
// the builder looks for it: /tmp/buildpacks/<md5 of key>.
func BuildpackDir(key string) string {
	sum := md5.Sum([]byte(key)) //nolint:gosec // a name, not a digest of trust
	return BuildpacksDir + "/" + hex.EncodeToString(sum[:])
}
