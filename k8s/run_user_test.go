package k8s_test

import (
	bbsmodels "code.cloudfoundry.org/bbs/models"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"

	"github.com/iris-cf/iris/actions"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/k8s"
)

var _ = Describe("The user a recipe pod runs as", func() {
	var (
		cfg             config.LRP
		runsAsImageUser bool
	)

	BeforeEach(func() {
		cfg = runnerConfig()
		runsAsImageUser = false
	})

	// taskPod is the pod of a task whose run actions ask for users.
	taskPod := func(users ...string) corev1.PodSpec {
		GinkgoHelper()
		runs := make([]bbsmodels.ActionInterface, 0, len(users))
		for _, user := range users {
			runs = append(runs, &bbsmodels.RunAction{Path: "/tmp/lifecycle/launcher", User: user})
		}
		task := &k8s.RecipeTask{
			GUID: "task-guid", Domain: "cf-tasks", SourceType: k8s.SourceTypeTask, Image: "registry.example.com/team/app:1",
			RunsAsImageUser: runsAsImageUser,
			Recipe:          &actions.Recipe{Action: bbsmodels.WrapAction(bbsmodels.Serial(runs...))},
		}
		objects, err := k8s.NewBuilder(cfg).BuildRecipeTask(task, "cf-workloads")
		Expect(err).NotTo(HaveOccurred())
		return objects.Job.Spec.Template.Spec
	}

	expectAppUser := func(spec corev1.PodSpec) {
		GinkgoHelper()
		Expect(spec.SecurityContext.RunAsUser).To(HaveValue(BeEquivalentTo(2000)))
		Expect(spec.SecurityContext.RunAsNonRoot).To(HaveValue(BeTrue()))
		task := spec.Containers[0].SecurityContext
		Expect(task.RunAsUser).To(BeNil())
		Expect(task.RunAsNonRoot).To(HaveValue(BeTrue()))
		Expect(task.Capabilities).To(Equal(&corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}))
		Expect(spec.Containers[0].Command).NotTo(ContainElement("--demote-root-to"))
	}

	It("runs CC's vcap as lrp.app_uid, as before", func() {
		expectAppUser(taskPod("vcap", "vcap"))
	})

	It("runs a numeric user as its uid and gid, still non-root and without capabilities", func() {
		spec := taskPod("1000:1001")
		task := spec.Containers[0].SecurityContext
		Expect(task.RunAsUser).To(HaveValue(BeEquivalentTo(1000)))
		Expect(task.RunAsGroup).To(HaveValue(BeEquivalentTo(1001)))
		Expect(task.RunAsNonRoot).To(HaveValue(BeTrue()))
		Expect(task.Capabilities.Add).To(BeEmpty())
		Expect(spec.InitContainers[0].SecurityContext.RunAsUser).To(BeNil(), "the runner's install runs as the pod's app user")
	})

	It("runs root as app_uid where root images are not allowed (the runner runs it unprivileged)", func() {
		expectAppUser(taskPod("root"))
	})

	It("runs root as the image's user where the operator allows it", func() {
		runsAsImageUser = true
		spec := taskPod("root")
		Expect(spec.SecurityContext.RunAsUser).To(BeNil())
		Expect(spec.Containers[0].SecurityContext.RunAsUser).To(BeNil())
		Expect(spec.Containers[0].SecurityContext.Capabilities.Add).To(BeEmpty())
	})

	Context("when only the image's /etc/passwd can tell the uid, or the recipe asks for several", func() {
		It("stays app_uid without user namespaces: never root on the node (the runner fails what it cannot be)", func() {
			expectAppUser(taskPod("nginx"))
			expectAppUser(taskPod("vcap", "1000"))
			expectAppUser(taskPod("vcap:www-data"))
			Expect(taskPod("nginx").HostUsers).To(BeNil())
		})

		Context("with user namespaces", func() {
			BeforeEach(func() { cfg.UserNamespaces = true })

			It("runs the runner as root in the pod's user namespace with SETUID, SETGID and CHOWN only, demoting root to app_uid", func() {
				for _, users := range [][]string{{"nginx"}, {"vcap", "1000"}} {
					spec := taskPod(users...)
					Expect(spec.HostUsers).To(HaveValue(BeFalse()))
					task := spec.Containers[0]
					Expect(task.SecurityContext.RunAsUser).To(HaveValue(BeEquivalentTo(0)))
					Expect(task.SecurityContext.RunAsGroup).To(HaveValue(BeEquivalentTo(0)))
					Expect(task.SecurityContext.RunAsNonRoot).To(HaveValue(BeFalse()))
					Expect(task.SecurityContext.Capabilities).To(Equal(&corev1.Capabilities{
						Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"SETUID", "SETGID", "CHOWN"},
					}))
					Expect(task.SecurityContext.AllowPrivilegeEscalation).To(HaveValue(BeFalse()))
					Expect(task.SecurityContext.Privileged).To(HaveValue(BeFalse()))
					Expect(task.Command).To(ContainElements("--demote-root-to", "2000:2000"))
					// Only the runner's container: the pod and the install stay app_uid.
					Expect(spec.SecurityContext.RunAsUser).To(HaveValue(BeEquivalentTo(2000)))
					Expect(spec.InitContainers[0].SecurityContext.RunAsUser).To(BeNil())
					Expect(spec.InitContainers[0].SecurityContext.Capabilities.Add).To(BeEmpty())
				}
			})

			It("lets root actions be root where the operator allows root images", func() {
				runsAsImageUser = true
				task := taskPod("nginx").Containers[0]
				Expect(task.SecurityContext.RunAsUser).To(HaveValue(BeEquivalentTo(0)))
				Expect(task.Command).NotTo(ContainElement("--demote-root-to"))
			})

			It("still runs vcap as app_uid without any privilege", func() {
				expectAppUser(taskPod("vcap"))
			})
		})
	})

	Describe("a buildpack LRP", func() {
		It("keeps the pod template of a vcap recipe as it was (no rolling of running apps)", func() {
			objects, err := k8s.NewBuilder(cfg).Build(buildpackWorkload(), "cf-workloads")
			Expect(err).NotTo(HaveOccurred())
			app := objects.StatefulSet.Spec.Template.Spec.Containers[0]
			Expect(app.SecurityContext.RunAsUser).To(BeNil())
			Expect(app.SecurityContext.RunAsGroup).To(BeNil())
			Expect(app.SecurityContext.Capabilities.Add).To(BeEmpty())
		})

		It("switches for a process user that only the stack knows, in a user namespace", func() {
			cfg.UserNamespaces = true
			lrp := buildpackWorkload()
			lrp.Process.Recipe.Action.GetCodependentAction().Actions[0].GetRunAction().User = "ContainerUser"
			objects, err := k8s.NewBuilder(cfg).Build(lrp, "cf-workloads")
			Expect(err).NotTo(HaveOccurred())
			app := objects.StatefulSet.Spec.Template.Spec.Containers[0]
			Expect(app.SecurityContext.RunAsUser).To(HaveValue(BeEquivalentTo(0)))
			Expect(app.SecurityContext.Capabilities.Add).To(ConsistOf(corev1.Capability("SETUID"), corev1.Capability("SETGID"), corev1.Capability("CHOWN")))
			Expect(app.Command).To(ContainElements("--demote-root-to", "2000:2000"))
		})
	})
})
