package logs_test

import (
	"bytes"
	"strings"
	"time"
	"unicode/utf8"

	"code.cloudfoundry.org/go-loggregator/v9/rpc/loggregator_v2"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/iris-cf/iris/actions"
	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/logs"
)

var _ = Describe("Source", func() {
	src := logs.Source{SourceID: "app-guid", InstanceID: "2", SourceType: "APP/PROC/WEB", Tags: map[string]string{"app_name": "dora"}}
	ts := time.Unix(1700000000, 123)

	It("builds one OUT or ERR envelope per short line", func() {
		out := src.LogEnvelopes(ts, true, []byte("hello"))
		Expect(out).To(HaveLen(1))
		Expect(out[0].SourceId).To(Equal("app-guid"))
		Expect(out[0].InstanceId).To(Equal("2"))
		Expect(out[0].Timestamp).To(Equal(ts.UnixNano()))
		Expect(out[0].Tags).To(Equal(map[string]string{"app_name": "dora", "source_type": "APP/PROC/WEB"}))
		Expect(out[0].GetLog().Payload).To(Equal([]byte("hello")))
		Expect(out[0].GetLog().Type).To(Equal(loggregator_v2.Log_OUT))

		errs := src.LogEnvelopes(ts, false, []byte("oops"))
		Expect(errs[0].GetLog().Type).To(Equal(loggregator_v2.Log_ERR))
	})

	It("does not share tag maps between envelopes or with the source", func() {
		out := src.LogEnvelopes(ts, true, []byte("a"))
		out[0].Tags["app_name"] = "changed"
		Expect(src.Tags["app_name"]).To(Equal("dora"))
	})

	It("splits payloads over 61,440 bytes, in order, without breaking UTF-8", func() {
		line := []byte(strings.Repeat("x", logs.MaxPayloadBytes-1) + "é" + strings.Repeat("y", 100))
		out := src.LogEnvelopes(ts, true, line)
		Expect(out).To(HaveLen(2))
		Expect(out[0].GetLog().Payload).To(HaveLen(logs.MaxPayloadBytes - 1))
		Expect(utf8.Valid(out[1].GetLog().Payload)).To(BeTrue())
		Expect(bytes.Join([][]byte{out[0].GetLog().Payload, out[1].GetLog().Payload}, nil)).To(Equal(line))

		exact := src.LogEnvelopes(ts, true, bytes.Repeat([]byte("z"), 3*logs.MaxPayloadBytes))
		Expect(exact).To(HaveLen(3))
		for _, e := range exact {
			Expect(e.GetLog().Payload).To(HaveLen(logs.MaxPayloadBytes))
		}
	})

	It("keeps an empty line as one empty envelope", func() {
		Expect(src.LogEnvelopes(ts, true, nil)).To(HaveLen(1))
	})
})

var _ = Describe("Source.Line", func() {
	app := logs.Source{SourceID: "app", SourceType: "APP/PROC/WEB"}
	runner := app
	runner.Runner = true

	It("ships other pods' lines as written, tags included", func() {
		src, msg, ship := app.Line([]byte("@iris[CELL] not from the runner"))
		Expect(ship).To(BeTrue())
		Expect(src.SourceType).To(Equal("APP/PROC/WEB"))
		Expect(string(msg)).To(Equal("@iris[CELL] not from the runner"))
	})

	It("ships a runner's tagged line under its source type, without the tag", func() {
		src, msg, ship := runner.Line([]byte(actions.FormatLine("CELL", "Downloading droplet...")))
		Expect(ship).To(BeTrue())
		Expect(src.SourceType).To(Equal("CELL"))
		Expect(src.SourceID).To(Equal("app"))
		Expect(string(msg)).To(Equal("Downloading droplet..."))
	})

	It("drops a runner pod's untagged lines (the runner's own logs)", func() {
		_, _, ship := runner.Line([]byte(`{"source":"iris-actions","message":"iris-actions.starting"}`))
		Expect(ship).To(BeFalse())
	})
})

var _ = Describe("SourceForPod", func() {
	pod := func(labels, annotations map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", UID: "pod-uid", Labels: labels, Annotations: annotations}}
	}
	names := map[string]string{k8s.AnnotationAppName: "dora", k8s.AnnotationSpaceName: "dev", k8s.AnnotationOrgName: "org"}

	It("maps an app instance to APP/PROC/<TYPE> with its index and CF tags", func() {
		src, ok := logs.SourceForPod(pod(map[string]string{
			k8s.LabelAppGUID: "app-guid", k8s.LabelSourceType: k8s.SourceTypeApp, k8s.LabelProcessType: "worker",
			k8s.LabelGUID: "process-guid", k8s.PodIndexLabel: "3", k8s.LabelSpaceGUID: "space-guid", k8s.LabelOrgGUID: "org-guid",
		}, names))
		Expect(ok).To(BeTrue())
		Expect(src.SourceID).To(Equal("app-guid"))
		Expect(src.InstanceID).To(Equal("3"))
		Expect(src.SourceType).To(Equal("APP/PROC/WORKER"))
		Expect(src.Tags).To(Equal(map[string]string{
			"app_id": "app-guid", "app_name": "dora", "space_id": "space-guid", "space_name": "dev",
			"organization_id": "org-guid", "organization_name": "org", "process_id": "process-guid",
			"process_type": "worker", "process_instance_id": "pod-uid",
		}))
	})

	It("maps a task to APP/TASK/<name>", func() {
		src, ok := logs.SourceForPod(pod(map[string]string{
			k8s.LabelAppGUID: "app-guid", k8s.LabelSourceType: k8s.SourceTypeTask, k8s.LabelTaskGUID: "task-guid",
		}, map[string]string{k8s.AnnotationTaskName: "migrate"}))
		Expect(ok).To(BeTrue())
		Expect(src.SourceType).To(Equal("APP/TASK/migrate"))
		Expect(src.InstanceID).To(Equal("0"))
		Expect(src.Tags).To(HaveKeyWithValue("process_id", "task-guid"))
	})

	It("maps staging to STG under the app guid", func() {
		src, ok := logs.SourceForPod(pod(map[string]string{
			k8s.LabelAppGUID: "app-guid", k8s.LabelSourceType: k8s.SourceTypeStaging, k8s.LabelStagingGUID: "stg",
		}, names))
		Expect(ok).To(BeTrue())
		Expect(src.SourceType).To(Equal(logs.SourceTypeStaging))
		Expect(src.SourceID).To(Equal("app-guid"))
	})

	It("reads a pod whose runner an init container installed as a runner pod, and no other", func() {
		runnerPod := pod(map[string]string{k8s.LabelAppGUID: "app-guid", k8s.LabelSourceType: k8s.SourceTypeApp}, names)
		plain, ok := logs.SourceForPod(runnerPod)
		Expect(ok).To(BeTrue())
		Expect(plain.Runner).To(BeFalse())
		runnerPod.Spec.InitContainers = []corev1.Container{{Name: k8s.RunnerInitContainerName}}
		src, ok := logs.SourceForPod(runnerPod)
		Expect(ok).To(BeTrue())
		Expect(src.Runner).To(BeTrue())
	})

	It("ignores pods that are not Iris's", func() {
		_, ok := logs.SourceForPod(pod(map[string]string{"app": "nginx"}, nil))
		Expect(ok).To(BeFalse())
	})
})
