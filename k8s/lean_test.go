package k8s_test

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"time"
	"unsafe"

	bbsmodels "code.cloudfoundry.org/bbs/models"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/bifrost/bbs/bbstest"
	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/workload"
)

var _ = Describe("the app informers' transform", func() {
	at := metav1.NewTime(time.Unix(100, 0))
	managed := []metav1.ManagedFieldsEntry{{Manager: "iris", Operation: metav1.ManagedFieldsOperationApply, FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{}}`)}}}
	meta := func() metav1.ObjectMeta {
		return metav1.ObjectMeta{
			Name: "dora-dev-0123456789", Namespace: "cf-workloads", UID: "uid-1", ResourceVersion: "7", Generation: 2,
			CreationTimestamp: at, DeletionTimestamp: &at,
			Labels:          map[string]string{k8s.LabelGUID: "guid", k8s.LabelSourceType: k8s.SourceTypeApp},
			Annotations:     map[string]string{k8s.AnnotationProcessGUID: "guid-version", k8s.AnnotationRoutes: `{"cf-router":[]}`},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "dora", UID: "sts-uid", Controller: ptr.To(true)}},
			ManagedFields:   managed,
		}
	}
	resources := corev1.ResourceRequirements{
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi"), corev1.ResourceEphemeralStorage: resource.MustParse("1Gi")},
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("80m")},
	}
	ports := []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	heavy := func(name string) corev1.Container {
		return corev1.Container{
			Name: name, Image: "registry.example/app:1", Command: []string{"/launcher"}, Args: []string{"app"},
			Env:   []corev1.EnvVar{{Name: "VCAP_SERVICES", Value: `{"db":[{"credentials":{"password":"p"}}]}`}},
			Ports: ports, Resources: resources,
			ReadinessProbe:  &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{}}},
			SecurityContext: &corev1.SecurityContext{RunAsNonRoot: ptr.To(true)},
			VolumeMounts:    []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
		}
	}

	It("keeps of a StatefulSet what Iris reads: metadata, replicas, selector, the app container's ports, the pull secrets, the recipe Secret's volume, the status", func() {
		sts := &appsv1.StatefulSet{
			ObjectMeta: meta(),
			Spec: appsv1.StatefulSetSpec{
				Replicas: ptr.To[int32](3), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{k8s.LabelGUID: "guid"}},
				PodManagementPolicy: appsv1.ParallelPodManagement,
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}, Annotations: map[string]string{"c": "d"}},
					Spec: corev1.PodSpec{
						Containers:       []corev1.Container{heavy(k8s.AppContainerName), heavy("sidecar")},
						ImagePullSecrets: []corev1.LocalObjectReference{{Name: k8s.RegistrySecretNameFor("dora-dev-0123456789")}},
						Volumes: []corev1.Volume{{Name: "tmp"}, {Name: k8s.RecipeVolumeName, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
							SecretName: k8s.RecipeSecretNameFor("dora-dev-0123456789"), DefaultMode: ptr.To[int32](0o444),
						}}}},
					},
				},
			},
			Status: appsv1.StatefulSetStatus{Replicas: 3, ReadyReplicas: 2},
		}
		want := meta()
		want.ManagedFields = nil

		obj, err := k8s.LeanAppObject(sts)
		Expect(err).NotTo(HaveOccurred())
		lean := k8s.StatefulSetOf(obj)
		Expect(lean.ObjectMeta).To(Equal(want))
		Expect(lean.Spec).To(Equal(appsv1.StatefulSetSpec{
			Replicas: ptr.To[int32](3), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{k8s.LabelGUID: "guid"}},
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				Containers:       []corev1.Container{{Name: k8s.AppContainerName, Ports: ports}},
				ImagePullSecrets: []corev1.LocalObjectReference{{Name: k8s.RegistrySecretNameFor("dora-dev-0123456789")}},
				Volumes: []corev1.Volume{{Name: k8s.RecipeVolumeName, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
					SecretName: k8s.RecipeSecretNameFor("dora-dev-0123456789"),
				}}}},
			}},
		}))
		Expect(lean.Status).To(Equal(appsv1.StatefulSetStatus{Replicas: 3, ReadyReplicas: 2}))
		Expect(k8s.StatefulSetKeepsSelector(obj)).To(BeTrue(), "not the LRP's guid and version selector")
		Expect(k8s.RegistrySecretName(lean)).To(Equal(k8s.RegistrySecretNameFor(lean.Name)))
		Expect(k8s.RecipeSecretName(lean)).To(Equal(k8s.RecipeSecretNameFor(lean.Name)))
	})

	It("keeps of a pod what Iris reads: metadata but the controller's unread labels, the owner and the generation, node, restart policy, containers' names, ports and resources, the status but the plural IPs and the kubelet's container mounts, resources and user", func() {
		podMeta := meta()
		podMeta.Labels[k8s.PodIndexLabel] = "2"
		podMeta.Labels[appsv1.ControllerRevisionHashLabelKey] = "dora-6d5f8c7b9c"
		podMeta.Labels[appsv1.StatefulSetPodNameLabel] = "dora-2"
		status := corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.244.0.7", HostIP: "10.0.0.1", StartTime: &at,
			PodIPs:     []corev1.PodIP{{IP: "10.244.0.7"}},
			HostIPs:    []corev1.HostIP{{IP: "10.0.0.1"}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: at}, {Type: corev1.PodScheduled, Status: corev1.ConditionTrue}},
			Reason:     "Evicted", Message: "The node was low on resource: memory.",
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "setup", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}}},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: k8s.AppContainerName, RestartCount: 4, Image: "registry.example/app:1", ImageID: "registry.example/app@sha256:0", ContainerID: "containerd://abc",
				Ready: true, Started: ptr.To(true),
				State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}},
			}},
			QOSClass: corev1.PodQOSBurstable,
		}
		kubeletOnly := func(s *corev1.ContainerStatus) {
			s.VolumeMounts = []corev1.VolumeMountStatus{{Name: "tmp", MountPath: "/tmp"}}
			s.Resources, s.AllocatedResources = resources.DeepCopy(), resources.Limits.DeepCopy()
			s.User = &corev1.ContainerUser{Linux: &corev1.LinuxContainerUser{UID: 2000, GID: 2000}}
		}
		pod := &corev1.Pod{
			ObjectMeta: podMeta,
			Spec: corev1.PodSpec{
				NodeName: "cell-1", RestartPolicy: corev1.RestartPolicyAlways, Hostname: "dora-2",
				InitContainers: []corev1.Container{heavy("setup")},
				Containers:     []corev1.Container{heavy(k8s.AppContainerName)},
				Volumes:        []corev1.Volume{{Name: "tmp"}},
			},
			Status: *status.DeepCopy(),
		}
		kubeletOnly(&pod.Status.ContainerStatuses[0])
		kubeletOnly(&pod.Status.InitContainerStatuses[0])
		want := meta()
		want.ManagedFields, want.OwnerReferences, want.Generation = nil, nil, 0
		want.Labels[k8s.PodIndexLabel] = "2"
		wantStatus := *status.DeepCopy()
		wantStatus.PodIPs, wantStatus.HostIPs, wantStatus.QOSClass = nil, nil, ""

		obj, err := k8s.LeanAppObject(pod)
		Expect(err).NotTo(HaveOccurred())
		Expect(obj).NotTo(BeAssignableToTypeOf(&corev1.Pod{}), "a record smaller than a Pod")
		lean := k8s.CachedPod(obj)
		Expect(lean.ObjectMeta).To(Equal(want))
		Expect(lean.Spec).To(Equal(corev1.PodSpec{
			NodeName: "cell-1", RestartPolicy: corev1.RestartPolicyAlways,
			InitContainers: []corev1.Container{{Name: "setup"}},
			Containers:     []corev1.Container{{Name: k8s.AppContainerName, Ports: ports, Resources: resources}},
		}))
		Expect(lean.Status).To(Equal(wantStatus))

		copied := obj.(runtime.Object).DeepCopyObject()
		Expect(k8s.CachedPod(copied)).To(Equal(lean))
		Expect(&k8s.CachedPod(copied).Status.ContainerStatuses[0]).NotTo(BeIdenticalTo(&lean.Status.ContainerStatuses[0]), "a deep copy")

		inst, ok := k8s.ActualInstance(lean)
		Expect(ok).To(BeTrue())
		Expect(inst.Ports).To(Equal([]int32{8080}))
		Expect(inst.CellID).To(Equal("cell-1"))
		Expect(inst.CrashCount).To(Equal(int32(4)))
	})

	It("shares one copy of equal resource requirements among pods", func() {
		transform := k8s.NewLeanTransform(clocktesting.NewFakePassiveClock(time.Unix(0, 0)))
		a, err := transform(&corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: k8s.AppContainerName, Resources: *resources.DeepCopy()}}}})
		Expect(err).NotTo(HaveOccurred())
		b, err := transform(&corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: k8s.AppContainerName, Resources: *resources.DeepCopy()}}}})
		Expect(err).NotTo(HaveOccurred())
		limitsA, limitsB := k8s.CachedPod(a).Spec.Containers[0].Resources.Limits, k8s.CachedPod(b).Spec.Containers[0].Resources.Limits
		Expect(limitsB).To(Equal(resources.Limits))
		Expect(func() { limitsA["probe"] = resource.MustParse("1") }).NotTo(Panic())
		Expect(limitsB).To(HaveKey(corev1.ResourceName("probe")), "the same map")
		Expect(&k8s.CachedPod(b).Spec.Containers[0]).To(BeIdenticalTo(&k8s.CachedPod(a).Spec.Containers[0]), "pods with equal containers share them")
	})

	It("compacts an unchanged record once across a StatefulSet's watch events, and anew when the record or the replicas change", func() {
		lrp := bbstest.DockerLRP("6b1c7e36-5b7a-4a4e-9d55-1f4f2a1e9c01-0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", 2, "dora.example.com",
			bbstest.Space{AppName: "dora", SpaceGUID: "s", SpaceName: "dev", OrgGUID: "o", OrgName: "acme"})
		clock := clocktesting.NewFakePassiveClock(time.Unix(0, 0))
		transform := k8s.NewLeanTransform(clock)
		// Marshalled once per version, as the API server keeps it (the
		// metric tags map marshals in no fixed order).
		records := map[*bbsmodels.DesiredLRP][]byte{}
		event := func(l *bbsmodels.DesiredLRP, replicas int32) (*appsv1.StatefulSet, []byte) {
			record, ok := records[l]
			if !ok {
				var err error
				record, err = l.Marshal()
				Expect(err).NotTo(HaveOccurred())
				records[l] = record
			}
			obj, err := transform(&appsv1.StatefulSet{
				ObjectMeta: metav1.ObjectMeta{Name: "dora", Annotations: map[string]string{k8s.AnnotationBBSDesiredLRP: base64.StdEncoding.EncodeToString(record)}},
				Spec:       appsv1.StatefulSetSpec{Replicas: ptr.To(replicas)},
			})
			Expect(err).NotTo(HaveOccurred())
			return k8s.StatefulSetOf(obj), record
		}
		kept := func(sts *appsv1.StatefulSet) *byte {
			return unsafe.StringData(sts.Annotations[k8s.AnnotationBBSDesiredLRP])
		}
		instances := func(sts *appsv1.StatefulSet) int32 {
			encoded, ok := k8s.CachedSchedulingInfo(sts)
			Expect(ok).To(BeTrue())
			info := &bbsmodels.DesiredLRPSchedulingInfo{}
			Expect(info.Unmarshal(encoded)).To(Succeed())
			return info.Instances
		}

		first, record := event(lrp, 2)
		again, _ := event(lrp, 2)
		Expect(kept(again)).To(BeIdenticalTo(kept(first)), "a status update's unchanged record is not compacted again")
		raw, err := k8s.BBSDesiredLRPRecord(again)
		Expect(err).NotTo(HaveOccurred())
		Expect(raw).To(Equal(record))

		scaled, _ := event(lrp, 5)
		Expect(kept(scaled)).NotTo(BeIdenticalTo(kept(first)))
		Expect(instances(scaled)).To(Equal(int32(5)), "the scheduling info takes the StatefulSet's replicas")
		Expect(instances(first)).To(Equal(int32(2)))

		changed := *lrp
		changed.Annotation = "1764583299.0"
		updated, changedRecord := event(&changed, 2)
		raw, err = k8s.BBSDesiredLRPRecord(updated)
		Expect(err).NotTo(HaveOccurred())
		Expect(raw).To(Equal(changedRecord), "a changed record is compacted anew")

		clock.SetTime(clock.Now().Add(21 * time.Minute))
		unused := *lrp
		unused.Annotation = "turn the generations"
		event(&unused, 2)
		clock.SetTime(clock.Now().Add(21 * time.Minute))
		later, _ := event(lrp, 2)
		Expect(kept(later)).NotTo(BeIdenticalTo(kept(first)), "records unused for two generations are forgotten")
		raw, err = k8s.BBSDesiredLRPRecord(later)
		Expect(err).NotTo(HaveOccurred())
		Expect(raw).To(Equal(record))
	})

	It("keeps a BBS StatefulSet's LRP record compressed, read back as the API's base64 reads", func() {
		record := []byte("\x0a\x49" + strings.Repeat("guid-", 60))
		encoded := base64.StdEncoding.EncodeToString(record)
		fromAPI := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "dora", Annotations: map[string]string{k8s.AnnotationBBSDesiredLRP: encoded}}}
		raw, err := k8s.BBSDesiredLRPRecord(fromAPI)
		Expect(err).NotTo(HaveOccurred())
		Expect(raw).To(Equal(record))

		obj, err := k8s.LeanAppObject(fromAPI.DeepCopy())
		Expect(err).NotTo(HaveOccurred())
		cached := k8s.StatefulSetOf(obj)
		Expect(len(cached.Annotations[k8s.AnnotationBBSDesiredLRP])).To(BeNumerically("<", len(record)))
		raw, err = k8s.BBSDesiredLRPRecord(cached)
		Expect(err).NotTo(HaveOccurred())
		Expect(raw).To(Equal(record))

		_, err = k8s.BBSDesiredLRPRecord(&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "dora", Annotations: map[string]string{k8s.AnnotationBBSDesiredLRP: "%%%"}}})
		Expect(err).To(MatchError(ContainSubstring("decoding cloudfoundry.org/bbs_desired_lrp of /dora")))
	})

	It("keeps a DesiredLRP record with its scheduling info, the StatefulSet's replicas its instances, and reads both back", func() {
		routes := json.RawMessage(`[{"hostnames":["dora.example.com"],"port":8080}]`)
		lrp := &bbsmodels.DesiredLRP{
			ProcessGuid: "6b1c7e36-5b7a-4a4e-9d55-1f4f2a1e9c01-0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", Domain: "cf-apps",
			LogGuid: "6b1c7e36-5b7a-4a4e-9d55-1f4f2a1e9c01", Instances: 2, MemoryMb: 256, DiskMb: 1024, RootFs: "docker:///cloudfoundry/dora",
			Annotation: "1764583200.0", Routes: &bbsmodels.Routes{"cf-router": &routes}, PlacementTags: []string{"segment-a"},
			ModificationTag: &bbsmodels.ModificationTag{Epoch: "epoch", Index: 3},
			MetricTags:      map[string]*bbsmodels.MetricTagValue{"app_name": {Static: "dora"}},
			Action:          bbsmodels.WrapAction(&bbsmodels.RunAction{Path: "/tmp/lifecycle/launcher", User: "vcap"}),
		}
		record, err := lrp.Marshal()
		Expect(err).NotTo(HaveOccurred())
		fromAPI := &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: "dora", Annotations: map[string]string{k8s.AnnotationBBSDesiredLRP: base64.StdEncoding.EncodeToString(record)}},
			Spec:       appsv1.StatefulSetSpec{Replicas: ptr.To[int32](5)},
		}
		_, ok := k8s.CachedSchedulingInfo(fromAPI)
		Expect(ok).To(BeFalse(), "the API's form carries none")

		obj, err := k8s.LeanAppObject(fromAPI.DeepCopy())
		Expect(err).NotTo(HaveOccurred())
		cached := k8s.StatefulSetOf(obj)
		raw, err := k8s.BBSDesiredLRPRecord(cached)
		Expect(err).NotTo(HaveOccurred())
		Expect(raw).To(Equal(record))
		encoded, ok := k8s.CachedSchedulingInfo(cached)
		Expect(ok).To(BeTrue())
		info := &bbsmodels.DesiredLRPSchedulingInfo{}
		Expect(info.Unmarshal(encoded)).To(Succeed())
		scaled := *lrp
		scaled.Instances = 5
		want := scaled.DesiredLRPSchedulingInfo()
		Expect(info.Equal(&want)).To(BeTrue(), "%v", info)
		Expect(len(cached.Annotations[k8s.AnnotationBBSDesiredLRP])).To(BeNumerically("<", len(record)+len(encoded)), "the record is compressed against the info")

		Expect(cached.Annotations).NotTo(HaveKey(k8s.AnnotationRoutes), "none on the API's")

		// The routes annotation Iris writes beside the record is kept only
		// in the record, and read back as it was; one that is not the
		// record's (edited by hand) is kept as it is.
		routesAnnotation, err := workload.MarshalRoutes(workload.Routes{"cf-router": routes})
		Expect(err).NotTo(HaveOccurred())
		withRoutes := fromAPI.DeepCopy()
		withRoutes.Annotations[k8s.AnnotationRoutes] = routesAnnotation
		obj, err = k8s.LeanAppObject(withRoutes)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.RoutesFromRecord(obj)).To(BeTrue())
		Expect(k8s.StatefulSetOf(obj).Annotations).To(HaveKeyWithValue(k8s.AnnotationRoutes, routesAnnotation))
		read, ok := obj.(*k8s.CachedStatefulSet).Annotation(k8s.AnnotationRoutes)
		Expect(read).To(Equal(routesAnnotation))
		Expect(ok).To(BeTrue())
		edited := fromAPI.DeepCopy()
		edited.Annotations[k8s.AnnotationRoutes] = `{"cf-router":[]}`
		obj, err = k8s.LeanAppObject(edited)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.RoutesFromRecord(obj)).To(BeFalse())
		Expect(k8s.StatefulSetOf(obj).Annotations).To(HaveKeyWithValue(k8s.AnnotationRoutes, `{"cf-router":[]}`))

		corrupt := cached.DeepCopy()
		value := corrupt.Annotations[k8s.AnnotationBBSDesiredLRP]
		corrupt.Annotations[k8s.AnnotationBBSDesiredLRP] = value[:len(value)-5]
		_, err = k8s.BBSDesiredLRPRecord(corrupt)
		Expect(err).To(MatchError(ContainSubstring("decompressing cloudfoundry.org/bbs_desired_lrp of /dora")))
	})

	It("keeps of a pod's conditions Ready, PodScheduled and the newest other transition if it is newer", func() {
		t := func(s int64) metav1.Time { return metav1.NewTime(time.Unix(s, 0)) }
		pod := func(conditions ...corev1.PodCondition) *corev1.Pod {
			return &corev1.Pod{Status: corev1.PodStatus{Conditions: conditions}}
		}
		ready := corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse, LastTransitionTime: t(20)}
		scheduled := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: t(10)}
		initialized := corev1.PodCondition{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: t(15)}
		containersReady := corev1.PodCondition{Type: corev1.ContainersReady, Status: corev1.ConditionFalse, LastTransitionTime: t(20)}
		lean := func(p *corev1.Pod) []corev1.PodCondition {
			obj, err := k8s.LeanAppObject(p)
			Expect(err).NotTo(HaveOccurred())
			return k8s.CachedPod(obj).Status.Conditions
		}
		Expect(lean(pod(initialized, ready, containersReady, scheduled))).To(Equal([]corev1.PodCondition{ready, scheduled}))
		later := corev1.PodCondition{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: t(30)}
		Expect(lean(pod(later, ready, containersReady, scheduled))).To(Equal([]corev1.PodCondition{later, ready, scheduled}))
		Expect(lean(pod(initialized))).To(Equal([]corev1.PodCondition{initialized}))
		Expect(lean(pod())).To(BeEmpty())
	})

	It("keeps the app container's ports only in the ports annotation when it says the same, and drops the revision names", func() {
		sts := func(annotation string, ports ...corev1.ContainerPort) *appsv1.StatefulSet {
			m := meta()
			m.Annotations[k8s.AnnotationPorts] = annotation
			return &appsv1.StatefulSet{ObjectMeta: m,
				Spec: appsv1.StatefulSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
					Containers: []corev1.Container{{Name: k8s.AppContainerName, Image: "app:1", Ports: ports}},
				}}},
				Status: appsv1.StatefulSetStatus{Replicas: 1, CurrentRevision: "dora-1", UpdateRevision: "dora-2"},
			}
		}
		tcp := func(port int32) corev1.ContainerPort {
			return corev1.ContainerPort{ContainerPort: port, Protocol: corev1.ProtocolTCP}
		}
		for _, c := range []struct {
			sts  *appsv1.StatefulSet
			kept bool
		}{
			{sts("[8080,9090]", tcp(8080), tcp(9090)), false},
			{sts("[8080]", tcp(8080), tcp(9090)), true},
			{sts("[9090,8080]", tcp(8080), tcp(9090)), true},
			{sts("null", tcp(8080)), true}, // no ports desired: the builder's default
			{sts("[8080]", corev1.ContainerPort{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}), true},
			{sts("[8080]", corev1.ContainerPort{ContainerPort: 8080, Protocol: corev1.ProtocolUDP}), true},
			{sts("not json", tcp(8080)), true},
		} {
			want := k8s.ExposedPorts(c.sts)
			obj, err := k8s.LeanAppObject(c.sts.DeepCopy())
			Expect(err).NotTo(HaveOccurred())
			lean := k8s.StatefulSetOf(obj)
			Expect(k8s.ExposedPorts(lean)).To(Equal(want), c.sts.Annotations[k8s.AnnotationPorts])
			Expect(lean.Spec.Template.Spec.Containers).To(HaveLen(map[bool]int{true: 1, false: 0}[c.kept]), c.sts.Annotations[k8s.AnnotationPorts])
			Expect(lean.Status).To(Equal(appsv1.StatefulSetStatus{Replicas: 1}))
		}
	})

	It("names an owner reference with its object's name when they are equal, without a copy", func() {
		policy := &networkingv1.NetworkPolicy{ObjectMeta: meta()}
		policy.OwnerReferences[0].Name = strings.Clone(policy.Name)
		obj, err := k8s.LeanAppObject(policy)
		Expect(err).NotTo(HaveOccurred())
		lean := k8s.CachedOwnedObject(obj).(*networkingv1.NetworkPolicy)
		Expect(lean.OwnerReferences[0].Name).To(Equal(lean.Name))
		Expect(unsafe.StringData(lean.OwnerReferences[0].Name)).To(BeIdenticalTo(unsafe.StringData(lean.Name)))
	})

	It("shares equal labels among an LRP's objects (their guid and version selectors made from them) and equal annotations among its pods, for two generations", func() {
		clock := clocktesting.NewFakePassiveClock(time.Unix(0, 0))
		transform := k8s.NewLeanTransform(clock)
		labels := func() map[string]string { return map[string]string{k8s.LabelGUID: "guid", k8s.LabelVersion: "v1"} }
		annotations := func() map[string]string { return map[string]string{k8s.AnnotationProcessGUID: "guid-v1"} }
		sts := func() *appsv1.StatefulSet {
			return &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "dora", Labels: labels(), Annotations: annotations()},
				Spec: appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels()}}}
		}
		pod := func(index string) *corev1.Pod {
			l := labels()
			l[k8s.PodIndexLabel] = index
			return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "dora-" + index, Labels: l, Annotations: annotations()}}
		}
		tcp := corev1.ProtocolTCP
		egress := func() []networkingv1.NetworkPolicyEgressRule {
			return []networkingv1.NetworkPolicyEgressRule{{
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp}},
				To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"k": "v"}}}},
			}}
		}
		policyOf := func(name string) *networkingv1.NetworkPolicy {
			return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels()},
				Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: labels()}, Egress: egress(),
					PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}}}
		}
		policy := policyOf("dora")
		same := func(a, b map[string]string) bool {
			return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
		}
		lean := func(obj any) any {
			out, err := transform(obj)
			Expect(err).NotTo(HaveOccurred())
			return out
		}

		s := k8s.StatefulSetOf(lean(sts()))
		p := k8s.CachedOwnedObject(lean(policy)).(*networkingv1.NetworkPolicy)
		pod0, pod1 := k8s.CachedPod(lean(pod("0"))), k8s.CachedPod(lean(pod("1")))
		Expect(same(s.Labels, p.Labels)).To(BeTrue(), "StatefulSet and NetworkPolicy labels")
		// The LRP's selector (its guid and version labels) is made again
		// from the labels, not kept (the first spec keeps another).
		Expect(s.Spec.Selector).To(Equal(&metav1.LabelSelector{MatchLabels: labels()}))
		Expect(k8s.StatefulSetKeepsSelector(lean(sts()))).To(BeFalse())
		Expect(p.Spec.PodSelector).To(Equal(metav1.LabelSelector{MatchLabels: labels()}), "the pod selector, made from the labels")
		Expect(same(pod0.Annotations, pod1.Annotations)).To(BeTrue(), "the pods' annotations")
		other := k8s.CachedOwnedObject(lean(policyOf("other"))).(*networkingv1.NetworkPolicy)
		Expect(other.Spec.Egress).To(Equal(egress()))
		Expect(&other.Spec.Egress[0]).To(BeIdenticalTo(&p.Spec.Egress[0]), "equal egress rules")
		Expect(&other.Spec.PolicyTypes[0]).To(BeIdenticalTo(&p.Spec.PolicyTypes[0]), "equal policy types")
		different := policyOf("different")
		different.Spec.Egress[0].Ports = nil
		Expect(k8s.CachedOwnedObject(lean(different)).(*networkingv1.NetworkPolicy).Spec.Egress[0].Ports).To(BeNil())
		Expect(same(pod0.Labels, pod1.Labels)).To(BeFalse(), "pod labels hold the index")
		Expect(pod1.Labels).To(HaveKeyWithValue(k8s.PodIndexLabel, "1"))
		Expect(same(s.Annotations, pod0.Annotations)).To(BeFalse(), "StatefulSet annotations are its own")
		Expect(s.Annotations).To(Equal(annotations()))

		clock.SetTime(time.Unix(0, 0).Add(10 * time.Minute))
		Expect(same(k8s.StatefulSetOf(lean(sts())).Labels, s.Labels)).To(BeTrue(), "one generation on")
		clock.SetTime(time.Unix(0, 0).Add(20 * time.Minute))
		Expect(same(k8s.CachedPod(lean(pod("2"))).Annotations, pod0.Annotations)).To(BeFalse(), "two generations without use")
		Expect(same(k8s.StatefulSetOf(lean(sts())).Labels, s.Labels)).To(BeTrue(), "used in the last generation")
	})

	It("keeps a StatefulSet's annotation values in a list whose keys StatefulSets with the same keys share, in a record a fifth of a StatefulSet's size", func() {
		transform := k8s.NewLeanTransform(clocktesting.NewFakePassiveClock(time.Unix(0, 0)))
		sts := func(name string, annotations map[string]string) any {
			obj, err := transform(&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}})
			Expect(err).NotTo(HaveOccurred())
			return obj
		}
		a := sts("a", map[string]string{k8s.AnnotationProcessGUID: "a-v1", k8s.AnnotationRoutes: "{}", k8s.AnnotationLastUpdated: "1"})
		b := sts("b", map[string]string{k8s.AnnotationProcessGUID: "b-v1", k8s.AnnotationRoutes: "[]", k8s.AnnotationLastUpdated: ""})
		c := sts("c", map[string]string{k8s.AnnotationProcessGUID: "c-v1", k8s.AnnotationRoutes: "{}"})
		Expect(k8s.SameAnnotationKeys(a, b)).To(BeTrue())
		Expect(k8s.SameAnnotationKeys(a, c)).To(BeFalse())
		Expect(k8s.StatefulSetOf(a).Annotations).To(Equal(map[string]string{k8s.AnnotationProcessGUID: "a-v1", k8s.AnnotationRoutes: "{}", k8s.AnnotationLastUpdated: "1"}))
		Expect(k8s.StatefulSetOf(b).Annotations).To(Equal(map[string]string{k8s.AnnotationProcessGUID: "b-v1", k8s.AnnotationRoutes: "[]", k8s.AnnotationLastUpdated: ""}))
		Expect(k8s.StatefulSetOf(c).Annotations).To(Equal(map[string]string{k8s.AnnotationProcessGUID: "c-v1", k8s.AnnotationRoutes: "{}"}))
		value, ok := b.(*k8s.CachedStatefulSet).Annotation(k8s.AnnotationLastUpdated)
		Expect(value).To(BeEmpty())
		Expect(ok).To(BeTrue(), "an empty annotation is there")
		_, ok = c.(*k8s.CachedStatefulSet).Annotation(k8s.AnnotationLastUpdated)
		Expect(ok).To(BeFalse())
		Expect(k8s.StatefulSetOf(sts("none", nil)).Annotations).To(BeNil())
		Expect(int(k8s.CachedStatefulSetSize)).To(BeNumerically("<=", int(unsafe.Sizeof(appsv1.StatefulSet{}))/5))
	})

	It("keeps a StatefulSet's uid and resource version exactly, whether the API server's (a UUID, a number) or not", func() {
		for _, c := range []struct{ uid, version string }{
			{"9d55c7e3-1f4f-4a1e-9c01-6b1c7e365b7a", "7123456"},
			{"9D55C7E3-1F4F-4A1E-9C01-6B1C7E365B7A", "007"},
			{"uid-1", "18446744073709551615"},
			{"", ""},
		} {
			obj, err := k8s.LeanAppObject(&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "dora", UID: types.UID(c.uid), ResourceVersion: c.version}})
			Expect(err).NotTo(HaveOccurred())
			cached := obj.(*k8s.CachedStatefulSet)
			Expect(cached.GetUID()).To(BeEquivalentTo(c.uid))
			Expect(cached.GetResourceVersion()).To(Equal(c.version))
			Expect(k8s.StatefulSetOf(obj).ObjectMeta).To(Equal(metav1.ObjectMeta{Name: "dora", UID: types.UID(c.uid), ResourceVersion: c.version}))
		}
	})

	It("shares values whose hashes collide, each with its equals, for two generations", func() {
		clock := clocktesting.NewFakePassiveClock(time.Unix(0, 0))
		share := k8s.NewStringShareTable(clock)
		a, b, c := share(1, strings.Clone("a")), share(1, strings.Clone("b")), share(2, strings.Clone("c"))
		Expect(unsafe.StringData(share(1, strings.Clone("a")))).To(BeIdenticalTo(unsafe.StringData(a)))
		Expect(unsafe.StringData(share(1, strings.Clone("b")))).To(BeIdenticalTo(unsafe.StringData(b)))
		Expect(unsafe.StringData(share(2, strings.Clone("c")))).To(BeIdenticalTo(unsafe.StringData(c)))
		clock.SetTime(time.Unix(0, 0).Add(10 * time.Minute))
		Expect(unsafe.StringData(share(1, strings.Clone("b")))).To(BeIdenticalTo(unsafe.StringData(b)), "from the previous generation")
		clock.SetTime(time.Unix(0, 0).Add(20 * time.Minute))
		Expect(unsafe.StringData(share(1, strings.Clone("b")))).To(BeIdenticalTo(unsafe.StringData(b)), "used in the last generation")
		Expect(unsafe.StringData(share(1, strings.Clone("a")))).NotTo(BeIdenticalTo(unsafe.StringData(a)), "two generations without use")
	})

	It("strips managed fields from other objects and leaves them otherwise as they are", func() {
		secret := &corev1.Secret{ObjectMeta: meta(), Data: map[string][]byte{"k": []byte("v")}}
		obj, err := k8s.LeanAppObject(secret)
		Expect(err).NotTo(HaveOccurred())
		Expect(obj.(*corev1.Secret).ManagedFields).To(BeNil())
		Expect(obj.(*corev1.Secret).Data).To(HaveKey("k"))
	})
})
