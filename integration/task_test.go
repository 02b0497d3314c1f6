package integration_test

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/google/uuid"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

// newTask is a task as CC's OPI task client sends it: no memory_mb, disk_mb
// or cpu_weight (CC passes the task's memory as MEMORY_LIMIT and its default
// disk in VCAP_APPLICATION's limits), the command as the buildpack
// lifecycle's start_command. Send it with desireTask or ccTaskBody.
func newTask() *models.TaskRequest {
	guid := uuid.NewString()
	return &models.TaskRequest{
		GUID: guid, Name: "migrate", AppGUID: uuid.NewString(), AppName: "dora",
		OrgGUID: "org-guid", OrgName: "acme", SpaceGUID: "space-guid", SpaceName: "dev",
		CompletionCallback: cc.URL() + "/internal/v4/tasks/" + guid + "/completed",
		Environment: []models.EnvironmentVariable{
			{Name: "VCAP_APPLICATION", Value: `{"name":"dora","limits":{"mem":64,"disk":128,"fds":16384}}`},
			{Name: "MEMORY_LIMIT", Value: "64m"},
		},
		Lifecycle: models.Lifecycle{BuildpackLifecycle: &models.BuildpackLifecycle{DropletGUID: "droplet", DropletHash: "sha", StartCommand: "bin/rake db:migrate"}},
	}
}

// ccTaskBody is task's JSON without the fields CC never sends for a task,
// so no spec depends on Iris's own resource fields by accident.
func ccTaskBody(task *models.TaskRequest) map[string]any {
	data, err := json.Marshal(task)
	Expect(err).NotTo(HaveOccurred())
	var body map[string]any
	Expect(json.Unmarshal(data, &body)).To(Succeed())
	for _, field := range []string{"memory_mb", "disk_mb", "cpu_weight", "command", "guid", "namespace"} {
		delete(body, field)
	}
	return body
}

func desireTask(task *models.TaskRequest) {
	status, body := request("POST", "/tasks/"+task.GUID, ccTaskBody(task))
	Expect(status).To(Equal(http.StatusAccepted), string(body))
}

func taskJobs(task *models.TaskRequest) []batchv1.Job {
	GinkgoHelper()
	return taskJobsWith(Default, task)
}

func taskJobsWith(g Gomega, task *models.TaskRequest) []batchv1.Job {
	list, err := clientset.BatchV1().Jobs(namespace).List(context.Background(), metav1.ListOptions{LabelSelector: k8s.LabelTaskGUID + "=" + task.GUID})
	g.Expect(err).NotTo(HaveOccurred())
	return list.Items
}

// runningTaskPod waits for the task's pod to run and returns it.
func runningTaskPod(task *models.TaskRequest) *corev1.Pod {
	var pod *corev1.Pod
	Eventually(func(g Gomega) bool {
		list, err := clientset.CoreV1().Pods(namespace).List(context.Background(), metav1.ListOptions{LabelSelector: k8s.LabelTaskGUID + "=" + task.GUID})
		g.Expect(err).NotTo(HaveOccurred())
		for i := range list.Items {
			if list.Items[i].Status.Phase == corev1.PodRunning {
				pod = &list.Items[i]
				return true
			}
		}
		return false
	}, 30*time.Second).Should(BeTrue())
	return pod
}

// finishTask plays the kubelet: the task container exits with code.
func finishTask(task *models.TaskRequest, code int32) {
	pod := runningTaskPod(task)
	phase := corev1.PodSucceeded
	if code != 0 {
		phase = corev1.PodFailed
	}
	pod.Status.Phase = phase
	now := metav1.Now()
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == corev1.PodReady {
			pod.Status.Conditions[i].Status = corev1.ConditionFalse
		}
	}
	pod.Status.ContainerStatuses[0].Ready = false
	pod.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: code, Reason: "Completed", StartedAt: now, FinishedAt: now, ContainerID: "containerd://" + task.GUID,
	}}
	_, err := clientset.CoreV1().Pods(namespace).UpdateStatus(context.Background(), pod, metav1.UpdateOptions{})
	Expect(err).NotTo(HaveOccurred())
}

// getTaskState asks Iris for the task: the HTTP status and the task's state.
func getTaskState(g Gomega, task *models.TaskRequest) (int, string) {
	status, body := requestWith(g, irisURL, "GET", "/tasks/"+task.GUID, nil)
	var resp models.TaskResponse
	_ = json.Unmarshal(body, &resp)
	return status, resp.State
}

var _ = Describe("Tasks", Serial, func() {
	AfterEach(func() { cc.SetStatus(http.StatusOK) })

	It("runs a task as a Job and reports its success once, then removes the Job", func() {
		task := newTask()
		desireTask(task)
		desireTask(task) // idempotent
		Expect(taskJobs(task)).To(HaveLen(1))
		job := taskJobs(task)[0]
		Expect(*job.Spec.BackoffLimit).To(BeZero())
		Expect(job.Spec.Template.Spec.RestartPolicy).To(Equal(corev1.RestartPolicyNever))
		Expect(job.Labels).To(HaveKeyWithValue(k8s.LabelSourceType, "TASK"))
		Expect(*job.Spec.Template.Spec.AutomountServiceAccountToken).To(BeFalse())
		Expect(*job.Spec.Template.Spec.SecurityContext.RunAsNonRoot).To(BeTrue())
		container := job.Spec.Template.Spec.Containers[0]
		Expect(container.Command).To(Equal([]string{"/lifecycle/launcher", "app", "bin/rake db:migrate", ""}))
		Expect(container.Image).To(Equal("127.0.0.1:5000/cloudfoundry/droplet:sha"))
		// CC sent no limits: memory from MEMORY_LIMIT, disk from VCAP_APPLICATION.
		Expect(container.Resources.Limits.Memory().Value()).To(Equal(int64(64 << 20)))
		Expect(container.Resources.Limits.StorageEphemeral().Value()).To(Equal(int64(128 << 20)))

		Eventually(func(g Gomega) string { _, state := getTaskState(g, task); return state }, 10*time.Second).Should(Equal(models.TaskRunning))
		status, body := request("GET", "/tasks", nil)
		Expect(status).To(Equal(http.StatusOK))
		Expect(string(body)).To(ContainSubstring(task.GUID))

		finishTask(task, 0)
		Eventually(func() []models.TaskCompletedRequest { return cc.taskCallbacks(task.GUID, true) }, 30*time.Second).Should(
			Equal([]models.TaskCompletedRequest{{TaskGUID: task.GUID, Failed: false, FailureReason: ""}}))
		// Removed a TTL (3 s here) after CC took the callback, and never reported again.
		Eventually(func(g Gomega) []batchv1.Job { return taskJobsWith(g, task) }, 20*time.Second).Should(BeEmpty())
		Expect(cc.taskCallbacks(task.GUID, false)).To(HaveLen(1))
		Eventually(func(g Gomega) int { status, _ := getTaskState(g, task); return status }, 10*time.Second).Should(Equal(http.StatusNotFound))
	})

	It("reports a failed task with its exit status", func() {
		task := newTask()
		desireTask(task)
		finishTask(task, 2)
		Eventually(func() []models.TaskCompletedRequest { return cc.taskCallbacks(task.GUID, true) }, 30*time.Second).Should(
			Equal([]models.TaskCompletedRequest{{TaskGUID: task.GUID, Failed: true, FailureReason: "Exited with status 2"}}))
	})

	It("cancels a task: its pod goes and CC hears 'task was cancelled' once", func() {
		task := newTask()
		desireTask(task)
		runningTaskPod(task)
		status, _ := request("DELETE", "/tasks/"+task.GUID, nil)
		Expect(status).To(Equal(http.StatusNoContent))

		Eventually(func() []models.TaskCompletedRequest { return cc.taskCallbacks(task.GUID, true) }, 30*time.Second).Should(
			Equal([]models.TaskCompletedRequest{{TaskGUID: task.GUID, Failed: true, FailureReason: "task was cancelled"}}))
		Eventually(func(g Gomega) []batchv1.Job { return taskJobsWith(g, task) }, 20*time.Second).Should(BeEmpty())
		Expect(cc.taskCallbacks(task.GUID, false)).To(HaveLen(1))

		status, _ = request("DELETE", "/tasks/"+task.GUID, nil)
		Expect(status).To(Equal(http.StatusNotFound))
	})

	It("rejects bad tasks with 400 and creates nothing", func() {
		task := newTask()
		task.Lifecycle = models.Lifecycle{}
		status, _ := request("POST", "/tasks/"+task.GUID, task)
		Expect(status).To(Equal(http.StatusBadRequest))
		task = newTask()
		task.Environment = append(task.Environment, models.EnvironmentVariable{Name: "A=B", Value: "x"})
		status, body := request("POST", "/tasks/"+task.GUID, task)
		Expect(status).To(Equal(http.StatusBadRequest), string(body))
		Consistently(func(g Gomega) []batchv1.Job { return taskJobsWith(g, task) }, time.Second).Should(BeEmpty())
	})

	It("retries the callback through a CC outage", func() {
		task := newTask()
		desireTask(task)
		cc.SetStatus(http.StatusBadGateway)
		finishTask(task, 0)
		Eventually(func() int { return len(cc.taskCallbacks(task.GUID, false)) }, 20*time.Second).Should(BeNumerically(">=", 2))
		cc.SetStatus(http.StatusOK)
		Eventually(func() int { return len(cc.taskCallbacks(task.GUID, true)) }, 20*time.Second).Should(Equal(1))
		Consistently(func() int { return len(cc.taskCallbacks(task.GUID, true)) }, 2*time.Second).Should(Equal(1))
	})

	It("delivers the callback of a task that finished while Iris was down, once", func() {
		task := newTask()
		desireTask(task)
		runningTaskPod(task)
		stopIris()
		finishTask(task, 0)
		startIris()
		Eventually(func() int { return len(cc.taskCallbacks(task.GUID, true)) }, 30*time.Second).Should(Equal(1))
		Consistently(func() int { return len(cc.taskCallbacks(task.GUID, false)) }, 3*time.Second).Should(Equal(1))
	})
})
