// Package logs turns app, task and staging output into Loggregator v2
// envelopes and ships them to a Loggregator ingress (the forwarder agent on
// a node, or any v2 ingress) over mTLS, without ever blocking the reader.
package logs

import (
	"strconv"
	"time"
	"unicode/utf8"

	"code.cloudfoundry.org/go-loggregator/v9/rpc/loggregator_v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/iris-cf/iris/actions"
	"github.com/iris-cf/iris/k8s"
)

// MaxPayloadBytes is the largest log payload Loggregator carries in one
// envelope (Diego's executor splits at the same size); longer lines are split.
const MaxPayloadBytes = 61440

// Source types Loggregator and `cf logs` know. App instances use
// APP/PROC/<PROCESS TYPE>, tasks APP/TASK/<name>.
const (
	SourceTypeStaging = "STG"
	SourceTypeCell    = "CELL"
)

// Source says whose output a line is: the envelope fields and tags every
// line of one container shares.
type Source struct {
	// SourceID is the app guid: `cf logs` selects on it.
	SourceID string
	// InstanceID is the instance index ("0" for tasks and staging).
	InstanceID string
	// SourceType, e.g. APP/PROC/WEB, APP/TASK/migrate, STG, CELL.
	SourceType string
	// Tags are the CF metadata tags (app_id, app_name, space_*, organization_*,
	// process_id, process_type, process_instance_id).
	Tags map[string]string
	// LogRateLimit is the app instance's log rate limit in bytes per
	// second; nil: unlimited (so a Source built without one is unlimited).
	LogRateLimit *int64
	// Runner is true for pods that run a Diego recipe with Iris's action
	// runner: their output is the runner's tagged lines (see Line).
	Runner bool
}

// Line is what one line a pod wrote becomes: the source it is shipped
// under, its message, and whether it is shipped at all. Other pods' lines
// go out as they are. A runner pod's lines carry their source type in
// a tag (actions.FormatLine: the app's output is APP/PROC/WEB, progress is
// CELL, staging output STG), so they go out under that type without the
// tag; its untagged lines are the runner's own operational logs, which are
// not the app's and are dropped. Only runner pods are read this way, so
// an app that prints a tag itself cannot pass as CELL: the runner tags
// everything the app writes.
func (s Source) Line(line []byte) (Source, []byte, bool) {
	if !s.Runner {
		return s, line, true
	}
	source, message, ok := actions.ParseLine(string(line))
	if !ok {
		return s, nil, false
	}
	return s.WithSourceType(source), []byte(message), true
}

// WithSourceType is a copy of s with another source type, for Iris's own
// CELL lines about the same instance.
func (s Source) WithSourceType(sourceType string) Source {
	s.SourceType = sourceType
	return s
}

// LogEnvelopes builds the envelopes for one line: one envelope, or several
// when the line is longer than MaxPayloadBytes (split on UTF-8 boundaries,
// all with the same timestamp so they stay in order at the consumer).
func (s Source) LogEnvelopes(ts time.Time, stdout bool, line []byte) []*loggregator_v2.Envelope {
	logType := loggregator_v2.Log_ERR
	if stdout {
		logType = loggregator_v2.Log_OUT
	}
	chunks := splitPayload(line, MaxPayloadBytes)
	envelopes := make([]*loggregator_v2.Envelope, 0, len(chunks))
	for _, chunk := range chunks {
		envelopes = append(envelopes, &loggregator_v2.Envelope{
			Timestamp:  ts.UnixNano(),
			SourceId:   s.SourceID,
			InstanceId: s.InstanceID,
			Tags:       s.tags(),
			Message: &loggregator_v2.Envelope_Log{
				Log: &loggregator_v2.Log{Payload: chunk, Type: logType},
			},
		})
	}
	return envelopes
}

func (s Source) tags() map[string]string {
	tags := make(map[string]string, len(s.Tags)+1)
	for k, v := range s.Tags {
		tags[k] = v
	}
	tags["source_type"] = s.SourceType
	return tags
}

// splitPayload cuts b into pieces of at most max bytes without cutting a
// UTF-8 sequence in two; an empty line is one empty payload.
func splitPayload(b []byte, max int) [][]byte {
	if len(b) <= max {
		return [][]byte{b}
	}
	var chunks [][]byte
	for len(b) > max {
		cut := max
		// Step back to the start of a rune, at most utf8.UTFMax-1 bytes.
		for i := 0; i < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(b[cut]); i++ {
			cut--
		}
		if cut == 0 || !utf8.RuneStart(b[cut]) {
			cut = max // not UTF-8 after all: cut at the byte limit
		}
		chunks = append(chunks, b[:cut])
		b = b[cut:]
	}
	if len(b) > 0 {
		chunks = append(chunks, b)
	}
	return chunks
}

// LogRateLimit is pod's log rate limit in bytes per second as its LRP asked
// for it (k8s.AnnotationLogRateLimit); nil, unlimited, when it has none.
func LogRateLimit(pod *corev1.Pod) *int64 {
	limit, err := strconv.ParseInt(pod.Annotations[k8s.AnnotationLogRateLimit], 10, 64)
	if err != nil || limit < 0 {
		return nil
	}
	return &limit
}

// SourceForPod derives the log source of a pod Iris created: an app
// instance, a task or a staging. ok is false for pods that are not Iris's.
func SourceForPod(pod *corev1.Pod) (Source, bool) {
	labels, annotations := pod.Labels, pod.Annotations
	appGUID := labels[k8s.LabelAppGUID]
	if appGUID == "" {
		return Source{}, false
	}
	tags := map[string]string{
		"app_id":            appGUID,
		"app_name":          annotations[k8s.AnnotationAppName],
		"space_id":          labels[k8s.LabelSpaceGUID],
		"space_name":        annotations[k8s.AnnotationSpaceName],
		"organization_id":   labels[k8s.LabelOrgGUID],
		"organization_name": annotations[k8s.AnnotationOrgName],
	}
	src := Source{SourceID: appGUID, InstanceID: "0", Tags: tags, LogRateLimit: LogRateLimit(pod), Runner: k8s.RunsRecipe(pod)}
	switch labels[k8s.LabelSourceType] {
	case k8s.SourceTypeApp:
		processType := labels[k8s.LabelProcessType]
		if processType == "" {
			processType = "web"
		}
		src.SourceType = k8s.AppSourceType(pod)
		// The StatefulSet controller sets the index label on every pod.
		if index, err := strconv.Atoi(labels[k8s.PodIndexLabel]); err == nil {
			src.InstanceID = strconv.Itoa(index)
		}
		tags["process_id"] = labels[k8s.LabelGUID]
		tags["process_type"] = processType
		tags["process_instance_id"] = string(pod.UID)
	case k8s.SourceTypeTask:
		src.SourceType = "APP/TASK/" + annotations[k8s.AnnotationTaskName]
		tags["process_id"] = labels[k8s.LabelTaskGUID]
		tags["process_type"] = "task"
		tags["process_instance_id"] = string(pod.UID)
	case k8s.SourceTypeStaging:
		src.SourceType = SourceTypeStaging
	default:
		return Source{}, false
	}
	for k, v := range tags {
		if v == "" {
			delete(tags, k)
		}
	}
	return src, true
}
