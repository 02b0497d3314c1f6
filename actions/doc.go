// Package actions interprets a Diego action tree (code.cloudfoundry.org/bbs
// models.Action) inside an app, task or staging pod, as Diego's executor
// does in a Garden container: cached dependencies and shared image layers
// are fetched first, then `setup` runs, then `action` with `monitor` beside
// it. Each step keeps the executor's semantics, messages and error texts
// (executor depot/steps), because Cloud Controller and users read them: CC
// maps staging failure reasons by their exit-status suffix, and `cf logs`
// shows the progress lines.
//
// Everything the runner writes for the app's log stream goes to stdout or
// stderr as one line per message, each tagged with its Loggregator source
// type (see FormatLine), so the pod's log pipeline can attribute CELL, STG,
// HEALTH and APP lines without parsing the tree itself.
package actions
