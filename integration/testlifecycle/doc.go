// Package testlifecycle is the integration suite's stand-in for Cloud
// Foundry's buildpack app lifecycle (code.cloudfoundry.org/buildpackapplifecycle),
// which the Go module proxy does not serve at any version, so the suite
// cannot build the real one. Its three commands keep the real ones'
// command lines and file contracts as CC's recipes use them, and nothing
// more:
//
//   - builder: the staging run action's flags (-buildDir, -buildpacksDir,
//     -buildpackOrder, -skipDetect, -buildArtifactsCacheDir, -outputDroplet,
//     -outputMetadata, -outputBuildArtifactsCache); buildpacks found at
//     <buildpacksDir>/<md5 of key> as CC's cached dependencies put them;
//     bin/detect, bin/supply, bin/finalize, bin/release (the v3 buildpack
//     API; bin/compile for older buildpacks); the exit codes CC maps (222
//     no buildpack detected, 223 compile failed, 224 release failed); the
//     droplet as a tgz of ./app, ./deps, ./profile.d, ./tmp, ./logs and
//     ./staging_info.yml; result.json with lifecycle_type,
//     lifecycle_metadata and process_types.
//   - launcher: `launcher <app dir> <start command> <execution metadata>`
//     run in the vcap user's home: it sources ./profile.d/*.sh and
//     <app dir>/.profile.d/*.sh, takes the start command from
//     staging_info.yml when it is empty, and execs it with bash -c.
//   - healthcheck: `healthcheck -port=N [-uri=/path] [-timeout=1s]`: one TCP
//     connection (or HTTP GET wanting 200), exit 0 or 1 with Diego's message.
//
// Nothing here is Cloud Foundry's code.
package testlifecycle
