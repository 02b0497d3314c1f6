package integration_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	bbsmodels "code.cloudfoundry.org/bbs/models"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/uuid"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

// ccInternalAuth is the user and password CC puts in staging callbacks.
const ccInternalAuth = "internal_user:internal-pa55"

func stagingRequest(guid string) *models.StagingRequest {
	return &models.StagingRequest{
		AppGUID: uuid.NewString(), AppName: "dora", OrgGUID: "org-guid", OrgName: "acme", SpaceGUID: "space-guid", SpaceName: "dev",
		// As CC builds it: its internal API user and password in the URL.
		CompletionCallback: strings.Replace(cc.URL(), "https://", "https://"+ccInternalAuth+"@", 1) + "/internal/v3/staging/" + guid + "/build_completed?start=true",
		Environment:        []models.EnvironmentVariable{{Name: "LANG", Value: "en_US.UTF-8"}},
		MemoryMB:           1024, DiskMB: 4096, CPUWeight: 50,
	}
}

func dockerStaging(guid, image, user, pass string) *models.StagingRequest {
	req := stagingRequest(guid)
	req.Lifecycle.DockerLifecycle = &models.StagingDockerLifecycle{Image: image, RegistryUsername: user, RegistryPassword: pass}
	return req
}

func buildpackStaging(guid string) *models.StagingRequest {
	req := stagingRequest(guid)
	req.Lifecycle.BuildpackLifecycle = &models.StagingBuildpackLifecycle{
		AppBitsDownloadURI: "https://cc/bits/" + guid, DropletUploadURI: "https://cc/droplet/" + guid,
		Buildpacks:                []models.Buildpack{{Name: "ruby_buildpack", Key: "ruby-key", URL: "https://cc/bp/ruby", SkipDetect: false}},
		BuildpackCacheDownloadURI: "https://cc/cache/" + guid, BuildpackCacheUploadURI: "https://cc/cache-up/" + guid,
		BuildpackCacheChecksum: "abc", BuildpackCacheChecksumAlgorithm: "sha256",
	}
	return req
}

func stage(guid string, req *models.StagingRequest) {
	status, body := request("POST", "/stage/"+guid, req)
	Expect(status).To(Equal(http.StatusAccepted), string(body))
}

func stagingJobs(guid string) []batchv1.Job {
	GinkgoHelper()
	return stagingJobsWith(Default, guid)
}

func stagingJobsWith(g Gomega, guid string) []batchv1.Job {
	list, err := clientset.BatchV1().Jobs(namespace).List(context.Background(), metav1.ListOptions{LabelSelector: k8s.LabelStagingGUID + "=" + guid})
	g.Expect(err).NotTo(HaveOccurred())
	return list.Items
}

func oneStagingCallback(guid string) models.StagingCallback {
	Eventually(func() []models.StagingCallback { return cc.stagingCallbacks(guid, true) }, 30*time.Second).Should(HaveLen(1))
	Consistently(func() []models.StagingCallback { return cc.stagingCallbacks(guid, false) }, 2*time.Second).Should(HaveLen(1))
	return cc.stagingCallbacks(guid, true)[0]
}

// setStagingPodStatus plays the kubelet for the staging pod of guid.
func setStagingPodStatus(guid string, mutate func(*corev1.Pod)) {
	Eventually(func() error {
		list, err := clientset.CoreV1().Pods(namespace).List(context.Background(), metav1.ListOptions{LabelSelector: k8s.LabelStagingGUID + "=" + guid})
		// Wait for KWOK to start the pod: a status written before would be
		// replaced by its start.
		if err != nil || len(list.Items) == 0 || list.Items[0].Status.Phase != corev1.PodRunning {
			return errNotYet
		}
		pod := list.Items[0]
		mutate(&pod)
		_, err = clientset.CoreV1().Pods(namespace).UpdateStatus(context.Background(), &pod, metav1.UpdateOptions{})
		return err
	}, 30*time.Second).Should(Succeed())
}

var errNotYet = &notYet{}

type notYet struct{}

func (*notYet) Error() string { return "not yet" }

var _ = Describe("Staging", Serial, func() {
	var appConfig v1.Config

	BeforeEach(func() {
		appConfig = v1.Config{
			Entrypoint:   []string{"/bin/app"},
			Cmd:          []string{"--listen", ":8080"},
			User:         "vcap",
			WorkingDir:   "/home/vcap/app",
			ExposedPorts: map[string]struct{}{"8080/tcp": {}},
		}
	})

	Describe("docker", func() {
		It("reads the image's config from the registry and reports CC's result, then cleans up", func() {
			image := oci.push("public/dora:v1", appConfig)
			guid := uuid.NewString()
			stage(guid, dockerStaging(guid, image, "", ""))

			callback := oneStagingCallback(guid)
			Expect(callback.Error).To(BeNil())
			Expect(cc.stagingCallbackAuths(guid)).To(HaveEach(ccInternalAuth), "the callback carries CC's credentials")
			var result struct {
				LifecycleType     string            `json:"lifecycle_type"`
				LifecycleMetadata map[string]string `json:"lifecycle_metadata"`
				ProcessTypes      map[string]string `json:"process_types"`
				ExecutionMetadata string            `json:"execution_metadata"`
			}
			Expect(json.Unmarshal(callback.Result, &result)).To(Succeed())
			Expect(result.LifecycleType).To(Equal("docker"))
			Expect(result.LifecycleMetadata).To(HaveKeyWithValue("docker_image", image))
			Expect(result.ProcessTypes).To(HaveKey("web"))
			Expect(result.ExecutionMetadata).To(MatchJSON(`{"cmd":["--listen",":8080"],"entrypoint":["/bin/app"],"workdir":"/home/vcap/app","user":"vcap","ports":[{"Port":8080,"Protocol":"tcp"}]}`))
			Eventually(func(g Gomega) []batchv1.Job { return stagingJobsWith(g, guid) }, 20*time.Second).Should(BeEmpty())
		})

		It("reads a private image with the credentials CC sent", func() {
			image := oci.push("private/secret-app:v1", appConfig)
			guid := uuid.NewString()
			stage(guid, dockerStaging(guid, image, "bob", "hunter2"))
			Expect(oneStagingCallback(guid).Error).To(BeNil())
		})

		DescribeTable("reports failures as StagingError",
			func(repo, user, pass, message string) {
				oci.push("private/other:v1", appConfig)
				guid := uuid.NewString()
				stage(guid, dockerStaging(guid, oci.Host()+"/"+repo, user, pass))
				callback := oneStagingCallback(guid)
				Expect(callback.Error).NotTo(BeNil())
				Expect(callback.Error.ID).To(Equal("StagingError"))
				Expect(callback.Error.Message).To(ContainSubstring(message))
				Expect(callback.Error.Message).NotTo(ContainSubstring("wrong-password"))
			},
			Entry("wrong credentials", "private/other:v1", "bob", "wrong-password", "unauthorized"),
			Entry("a missing image", "public/no-such-image:v1", "", "", "not found"),
		)
	})

	Describe("buildpack", func() {
		It("runs CC's staging recipe with the action runner in a Job, and forwards the reported result once", func() {
			guid := uuid.NewString()
			stage(guid, buildpackStaging(guid))
			stage(guid, buildpackStaging(guid)) // idempotent
			jobs := stagingJobs(guid)
			Expect(jobs).To(HaveLen(1))
			job := jobs[0]
			// CC's credentials are in a Secret, not on the Job or its pods.
			jobJSON, err := json.Marshal(job)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(jobJSON)).NotTo(ContainSubstring("internal-pa55"))
			Expect(job.Annotations).To(HaveKey(k8s.AnnotationCompletionCallbackSecret))
			Expect(job.Labels).To(HaveKeyWithValue(k8s.LabelSourceType, "STG"))
			Expect(*job.Spec.BackoffLimit).To(BeZero())
			Expect(*job.Spec.ActiveDeadlineSeconds).To(Equal(int64(600)))
			spec := job.Spec.Template.Spec
			Expect(spec.RestartPolicy).To(Equal(corev1.RestartPolicyNever))
			Expect(*spec.SecurityContext.RunAsNonRoot).To(BeTrue())
			Expect(*spec.AutomountServiceAccountToken).To(BeFalse())
			Expect(spec.InitContainers).To(HaveLen(2))
			Expect(spec.InitContainers[0].Name).To(Equal(k8s.RunnerInitContainerName))
			Expect(spec.InitContainers[0].Image).To(Equal(testRunnerImage))
			Expect(spec.InitContainers[1].Name).To(Equal(k8s.StagingRunnerName))
			Expect(spec.InitContainers[1].Image).To(Equal(testStackImage))
			Expect(spec.InitContainers[1].Resources.Limits.Memory().Value()).To(Equal(int64(1024 << 20)))
			Expect(spec.Containers[0].Name).To(Equal(k8s.StagingReporterName))
			Expect(spec.Containers[0].Env).To(ContainElement(corev1.EnvVar{Name: "STAGING_COMPLETION_URL", Value: irisURL + "/stage/" + guid + "/completed"}))

			recipe := stagingRecipe(&job)
			Expect(recipe.CachedDependencies[0].From).To(Equal(testLifecycleURL()))
			Expect(recipe.CachedDependencies[1].From).To(Equal("https://cc/bp/ruby"))
			steps := recipe.Action.GetSerialAction().Actions
			Expect(steps[0].GetParallelAction().Actions[0].GetDownloadAction().From).To(Equal("https://cc/bits/" + guid))
			builder := steps[1].GetRunAction()
			Expect(builder.Args).To(ContainElement("-buildpackOrder=ruby-key"))
			Expect(builder.Env).To(ContainElement(&bbsmodels.EnvironmentVariable{Name: "LANG", Value: "en_US.UTF-8"}))
			uploads := steps[2].GetEmitProgressAction().Action.GetParallelAction().Actions
			Expect(uploads[0].GetUploadAction().To).To(Equal("https://cc/droplet/" + guid))
			Expect(uploads[1].GetUploadAction().To).To(Equal("https://cc/cache-up/" + guid))

			// Play the reporting container.
			result := `{"lifecycle_type":"buildpack","lifecycle_metadata":{"buildpack_key":"ruby-key","detected_buildpack":"ruby"},"process_types":{"web":"bundle exec rackup"},"execution_metadata":""}`
			status, body := request("PUT", "/stage/"+guid+"/completed", models.StagingCompletedRequest{TaskGUID: guid, Result: result})
			Expect(status).To(Equal(http.StatusOK), string(body))
			callback := oneStagingCallback(guid)
			Expect(callback.Error).To(BeNil())
			Expect(string(callback.Result)).To(MatchJSON(result))
			Eventually(func(g Gomega) []batchv1.Job { return stagingJobsWith(g, guid) }, 20*time.Second).Should(BeEmpty())
		})

		It("maps a failed builder, as the runner reports it, to CC's buildpack error", func() {
			guid := uuid.NewString()
			stage(guid, buildpackStaging(guid))
			status, body := request("PUT", "/stage/"+guid+"/completed", models.StagingCompletedRequest{TaskGUID: guid, Failed: true, FailureReason: "Exited with status 223"})
			Expect(status).To(Equal(http.StatusOK), string(body))
			Expect(oneStagingCallback(guid).Error.ID).To(Equal("BuildpackCompileFailed"))
		})

		It("reports a staging container that was killed without waiting for its report", func() {
			guid := uuid.NewString()
			stage(guid, buildpackStaging(guid))
			setStagingPodStatus(guid, func(pod *corev1.Pod) {
				pod.Status.Phase = corev1.PodFailed
				pod.Status.InitContainerStatuses = []corev1.ContainerStatus{
					{Name: k8s.RunnerInitContainerName, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}},
					{Name: k8s.StagingRunnerName, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}}},
				}
			})
			callback := oneStagingCallback(guid)
			Expect(callback.Error).To(Equal(&models.StagingError{ID: "StagingError", Message: "staging stage exited with status 137"}))
		})

		It("reports a staging pod that cannot pull its image", func() {
			guid := uuid.NewString()
			stage(guid, buildpackStaging(guid))
			// The reporter's image cannot be pulled (KWOK has already completed
			// the init containers, and a terminated container cannot wait again).
			setStagingPodStatus(guid, func(pod *corev1.Pod) {
				for i := range pod.Status.ContainerStatuses {
					pod.Status.ContainerStatuses[i].Ready = false
					pod.Status.ContainerStatuses[i].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "no such image"}}
				}
			})
			callback := oneStagingCallback(guid)
			Expect(callback.Error.ID).To(Equal("StagingError"))
			Expect(callback.Error.Message).To(ContainSubstring("failed to pull image"))
		})

		It("cancels a staging: CC hears it was cancelled, once", func() {
			guid := uuid.NewString()
			stage(guid, buildpackStaging(guid))
			status, _ := request("DELETE", "/stage/"+guid, nil)
			Expect(status).To(Equal(http.StatusAccepted))
			Expect(oneStagingCallback(guid).Error).To(Equal(&models.StagingError{ID: "StagingError", Message: "staging was cancelled"}))
			Eventually(func(g Gomega) []batchv1.Job { return stagingJobsWith(g, guid) }, 20*time.Second).Should(BeEmpty())
		})
	})

	It("rejects a bad staging request with 400 and creates nothing", func() {
		guid := uuid.NewString()
		req := buildpackStaging(guid)
		req.Lifecycle.BuildpackLifecycle.DropletUploadURI = ""
		status, _ := request("POST", "/stage/"+guid, req)
		Expect(status).To(Equal(http.StatusBadRequest))
		Consistently(func(g Gomega) []batchv1.Job { return stagingJobsWith(g, guid) }, time.Second).Should(BeEmpty())
	})
})
