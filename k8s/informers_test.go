package k8s_test

import (
	"context"
	"sync"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	ginkgomon_v2 "github.com/tedsuo/ifrit/ginkgomon_v2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/k8s"
)

var _ = Describe("the app pod and StatefulSet caches", func() {
	const ns = "cf-workloads"
	var (
		ctx       context.Context
		clientset *fake.Clientset
		caches    *k8s.Caches
		log       *eventLog
	)
	recorded := func() ([]string, []any) { return log.recorded() }
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { log.record("add", obj) },
		UpdateFunc: func(oldObj, newObj any) { log.record("update", oldObj, newObj) },
		DeleteFunc: func(obj any) { log.record("delete", obj) },
	}

	BeforeEach(func() {
		ctx = context.Background()
		clientset = fake.NewClientset()
		log = &eventLog{}
		var err error
		caches, err = k8s.NewCaches(clientset, []string{ns})
		Expect(err).NotTo(HaveOccurred())
		Expect(caches.AddEventHandlers(handler, handler)).To(Succeed())
		process := ifrit.Invoke(ifrit.RunFunc(caches.Run(lagertest.NewTestLogger("caches"))))
		DeferCleanup(func() { ginkgomon_v2.Interrupt(process) })
	})

	It("hands readers and handlers *corev1.Pod with what the pod had", func() {
		at := metav1.Now().Rfc3339Copy()
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: "dora-0", Namespace: ns, UID: "uid-0",
				Labels:      map[string]string{k8s.LabelSourceType: k8s.SourceTypeApp, k8s.PodIndexLabel: "0"},
				Annotations: map[string]string{k8s.AnnotationProcessGUID: "guid-v1"},
			},
			Spec: corev1.PodSpec{NodeName: "cell-1", RestartPolicy: corev1.RestartPolicyAlways, Containers: []corev1.Container{{
				Name: k8s.AppContainerName, Image: "dora", Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
			}}},
			Status: corev1.PodStatus{Phase: corev1.PodPending, PodIP: "10.0.0.7", StartTime: &at},
		}
		_, err := clientset.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())

		expectDora := func(g Gomega, p *corev1.Pod, phase corev1.PodPhase) {
			g.Expect(p).NotTo(BeNil())
			g.Expect(p.ObjectMeta).To(Equal(metav1.ObjectMeta{Name: "dora-0", Namespace: ns, UID: "uid-0", ResourceVersion: p.ResourceVersion,
				Labels: pod.Labels, Annotations: pod.Annotations}))
			g.Expect(p.Spec).To(Equal(corev1.PodSpec{NodeName: "cell-1", RestartPolicy: corev1.RestartPolicyAlways,
				Containers: []corev1.Container{{Name: k8s.AppContainerName, Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}}))
			g.Expect(p.Status).To(Equal(corev1.PodStatus{Phase: phase, PodIP: "10.0.0.7", StartTime: &at}))
		}
		Eventually(func(g Gomega) {
			expectDora(g, caches.Pod(ns, "dora-0"), corev1.PodPending)
			byGUID := caches.PodsByProcessGUID("guid-v1")
			g.Expect(byGUID).To(HaveLen(1))
			expectDora(g, byGUID[0], corev1.PodPending)
			var all []*corev1.Pod
			caches.EachAppPod(func(p *corev1.Pod) { all = append(all, p) })
			g.Expect(all).To(HaveLen(1))
			expectDora(g, all[0], corev1.PodPending)
		}).Should(Succeed())
		Expect(caches.Pod(ns, "other")).To(BeNil())
		Expect(caches.PodsByProcessGUID("other")).To(BeEmpty())

		pod.Status.Phase = corev1.PodRunning
		_, err = clientset.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(clientset.CoreV1().Pods(ns).Delete(ctx, "dora-0", metav1.DeleteOptions{})).To(Succeed())

		Eventually(func(g Gomega) {
			events, objs := recorded()
			g.Expect(events).To(Equal([]string{"add", "update", "delete"}))
			phases := []corev1.PodPhase{corev1.PodPending, corev1.PodPending, corev1.PodRunning, corev1.PodRunning}
			for i, obj := range objs {
				p, ok := obj.(*corev1.Pod)
				g.Expect(ok).To(BeTrue(), "a *corev1.Pod, not %T", obj)
				expectDora(g, p, phases[i])
			}
		}).Should(Succeed())
		Expect(caches.Pod(ns, "dora-0")).To(BeNil())
	})

	It("hands readers and handlers *appsv1.StatefulSet with what the StatefulSet had, and the sync lists its record", func() {
		sts := &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{
				Name: "dora-dev-0123456789", Namespace: ns, UID: "uid-0", Generation: 3,
				Labels: map[string]string{k8s.LabelSourceType: k8s.SourceTypeApp, k8s.LabelAppGUID: "app", k8s.LabelGUID: "app", k8s.LabelVersion: "v1"},
				Annotations: map[string]string{k8s.AnnotationProcessGUID: "app-v1", k8s.AnnotationIsolationSegment: "iso",
					k8s.AnnotationLastUpdated: "12.5", k8s.AnnotationRoutes: `{"cf-router":[]}`},
			},
			Spec: appsv1.StatefulSetSpec{
				Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{k8s.LabelGUID: "app", k8s.LabelVersion: "v1"}},
				PodManagementPolicy: appsv1.ParallelPodManagement,
			},
			Status: appsv1.StatefulSetStatus{Replicas: 2, ReadyReplicas: 1, ObservedGeneration: 3, CollisionCount: ptr.To[int32](0)},
		}
		_, err := clientset.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())

		expectDora := func(g Gomega, s *appsv1.StatefulSet, ready int32) {
			g.Expect(s).NotTo(BeNil())
			g.Expect(s.ObjectMeta).To(Equal(metav1.ObjectMeta{Name: sts.Name, Namespace: ns, UID: "uid-0", Generation: 3, ResourceVersion: s.ResourceVersion,
				Labels: sts.Labels, Annotations: sts.Annotations}))
			g.Expect(s.Spec).To(Equal(sts.Spec))
			want := sts.Status.DeepCopy()
			want.ReadyReplicas = ready
			g.Expect(s.Status).To(Equal(*want))
		}
		Eventually(func(g Gomega) {
			expectDora(g, caches.StatefulSet(ns, sts.Name), 1)
			byGUID := caches.StatefulSetsByProcessGUID("app-v1")
			g.Expect(byGUID).To(HaveLen(1))
			expectDora(g, byGUID[0], 1)
			isolated := caches.IsolatedStatefulSetsByAppGUID("app")
			g.Expect(isolated).To(HaveLen(1))
			expectDora(g, isolated[0], 1)
			var all []*appsv1.StatefulSet
			caches.EachCachedStatefulSet(func(s *k8s.CachedStatefulSet) { all = append(all, s.StatefulSet()) })
			g.Expect(all).To(HaveLen(1))
			expectDora(g, all[0], 1)
		}).Should(Succeed())
		Expect(caches.StatefulSet(ns, "other")).To(BeNil())
		Expect(caches.StatefulSetsByProcessGUID("other")).To(BeEmpty())
		Expect(caches.IsolatedStatefulSetsByAppGUID("other")).To(BeEmpty())

		var keys []string
		caches.EachStatefulSetKey(func(key string) { keys = append(keys, key) })
		Expect(keys).To(Equal([]string{ns + "/" + sts.Name}))

		var records []*k8s.CachedStatefulSet
		caches.EachCachedStatefulSet(func(c *k8s.CachedStatefulSet) { records = append(records, c) })
		Expect(records).To(HaveLen(1))
		Expect(records[0].GetName()).To(Equal(sts.Name))
		lastUpdated, has := records[0].Annotation(k8s.AnnotationLastUpdated)
		Expect(lastUpdated).To(Equal("12.5"))
		Expect(has).To(BeTrue())
		_, has = records[0].Annotation(k8s.AnnotationBBSDesiredLRP)
		Expect(has).To(BeFalse())
		Expect(records[0].Label(k8s.LabelVersion)).To(Equal("v1"))
		Expect(records[0].Label("none")).To(BeEmpty())
		_, ok := records[0].SchedulingInfo()
		Expect(ok).To(BeFalse(), "no BBS record")
		Expect(records[0].DeepCopyObject().(*k8s.CachedStatefulSet).StatefulSet()).To(Equal(records[0].StatefulSet()))

		sts.Status.ReadyReplicas = 2
		_, err = clientset.AppsV1().StatefulSets(ns).UpdateStatus(ctx, sts, metav1.UpdateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(clientset.AppsV1().StatefulSets(ns).Delete(ctx, sts.Name, metav1.DeleteOptions{})).To(Succeed())

		Eventually(func(g Gomega) {
			events, objs := recorded()
			g.Expect(events).To(Equal([]string{"add", "update", "delete"}))
			ready := []int32{1, 1, 2, 2}
			for i, obj := range objs {
				s, ok := obj.(*appsv1.StatefulSet)
				g.Expect(ok).To(BeTrue(), "a *appsv1.StatefulSet, not %T", obj)
				expectDora(g, s, ready[i])
			}
		}).Should(Succeed())
		Expect(caches.StatefulSet(ns, sts.Name)).To(BeNil())
	})

	It("hands a key handler the key of each StatefulSet added, updated and deleted", func() {
		keys := &eventLog{}
		other, err := k8s.NewCaches(clientset, []string{ns})
		Expect(err).NotTo(HaveOccurred())
		Expect(other.AddStatefulSetKeyHandler(func(key string) { keys.record(key) })).To(Succeed())
		process := ifrit.Invoke(ifrit.RunFunc(other.Run(lagertest.NewTestLogger("keys"))))
		DeferCleanup(func() { ginkgomon_v2.Interrupt(process) })
		sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "dora", Namespace: ns, Labels: map[string]string{k8s.LabelSourceType: k8s.SourceTypeApp}}}
		_, err = clientset.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		sts.Status.Replicas = 1
		_, err = clientset.AppsV1().StatefulSets(ns).UpdateStatus(ctx, sts, metav1.UpdateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(clientset.AppsV1().StatefulSets(ns).Delete(ctx, "dora", metav1.DeleteOptions{})).To(Succeed())
		Eventually(func(g Gomega) {
			seen, _ := keys.recorded()
			g.Expect(seen).To(Equal([]string{ns + "/dora", ns + "/dora", ns + "/dora"}))
		}).Should(Succeed())
	})

	It("hands a handler the StatefulSet of a tombstone", func() {
		obj, err := k8s.LeanAppObject(&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "dora", Namespace: ns, UID: "uid-1"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(obj).To(BeAssignableToTypeOf(&k8s.CachedStatefulSet{}))
		k8s.StatefulSetHandler(handler).OnDelete(cache.DeletedFinalStateUnknown{Key: ns + "/dora", Obj: obj})
		_, objs := recorded()
		Expect(objs).To(HaveLen(1))
		tombstone, ok := objs[0].(cache.DeletedFinalStateUnknown)
		Expect(ok).To(BeTrue())
		Expect(tombstone.Obj).To(Equal(&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "dora", Namespace: ns, UID: "uid-1"}}))
	})
})

var _ = Describe("the LRP-owned object caches", func() {
	const ns = "cf-workloads"
	var (
		ctx       context.Context
		clientset *fake.Clientset
		caches    *k8s.Caches
		log       *eventLog
	)
	recorded := func() []any {
		_, objs := log.recorded()
		return objs
	}

	BeforeEach(func() {
		ctx = context.Background()
		clientset = fake.NewClientset()
		log = &eventLog{}
		var err error
		caches, err = k8s.NewCaches(clientset, []string{ns})
		Expect(err).NotTo(HaveOccurred())
		caches.WatchLRPOwnedObjects()
		Expect(caches.AddLRPOwnedObjectEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { log.record("add", obj) },
			UpdateFunc: func(_, newObj any) { log.record("update", newObj) },
			DeleteFunc: func(obj any) { log.record("delete", obj) },
		})).To(Succeed())
		process := ifrit.Invoke(ifrit.RunFunc(caches.Run(lagertest.NewTestLogger("caches"))))
		DeferCleanup(func() { ginkgomon_v2.Interrupt(process) })
		// What follows arrives through the watch, one event each.
		Expect(caches.WaitForSync(ctx)).To(BeTrue())
	})

	It("hands readers and handlers the NetworkPolicy and PDB as they were, the PDB without its status", func() {
		sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "dora", Namespace: ns, UID: "sts-uid"}}
		labels := map[string]string{k8s.LabelSourceType: k8s.SourceTypeApp, k8s.LabelGUID: "guid"}
		meta := metav1.ObjectMeta{Name: "dora", Namespace: ns, UID: "uid", Labels: labels, OwnerReferences: []metav1.OwnerReference{k8s.OwnerReference(sts)}}
		policy := &networkingv1.NetworkPolicy{ObjectMeta: meta, Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: labels}, PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}}}}},
		}}
		pdb := &policyv1.PodDisruptionBudget{ObjectMeta: meta, Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: ptr.To(intstr.FromInt32(1)), Selector: &metav1.LabelSelector{MatchLabels: labels},
		}}
		_, err := clientset.NetworkingV1().NetworkPolicies(ns).Create(ctx, policy, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, err = clientset.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, pdb, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		withStatus := pdb.DeepCopy()
		withStatus.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: 1, DisruptionsAllowed: 1, ExpectedPods: 2}
		_, err = clientset.PolicyV1().PodDisruptionBudgets(ns).UpdateStatus(ctx, withStatus, metav1.UpdateOptions{})
		Expect(err).NotTo(HaveOccurred())

		expect := func(g Gomega, obj any) {
			g.Expect(obj).NotTo(BeNil())
			switch o := obj.(type) {
			case *networkingv1.NetworkPolicy:
				want := policy.DeepCopy()
				want.ResourceVersion = o.ResourceVersion
				g.Expect(o).To(Equal(want))
			case *policyv1.PodDisruptionBudget:
				want := pdb.DeepCopy()
				want.ResourceVersion = o.ResourceVersion
				g.Expect(o).To(Equal(want))
			default:
				g.Expect(obj).To(BeAssignableToTypeOf(policy), "a NetworkPolicy or PDB, not %T", obj)
			}
		}
		Eventually(func(g Gomega) {
			expect(g, caches.NetworkPolicy(ns, "dora"))
			expect(g, caches.PodDisruptionBudget(ns, "dora"))
			var all []metav1.Object
			caches.EachLRPOwnedObject(func(o metav1.Object) { all = append(all, o) })
			g.Expect(all).To(HaveLen(2))
			for _, o := range all {
				expect(g, o)
			}
			g.Expect(recorded()).To(HaveLen(3), "two adds, the PDB's status update")
		}).Should(Succeed())
		Expect(caches.NetworkPolicy(ns, "other")).To(BeNil())
		Expect(caches.PodDisruptionBudget(ns, "other")).To(BeNil())

		Expect(clientset.NetworkingV1().NetworkPolicies(ns).Delete(ctx, "dora", metav1.DeleteOptions{})).To(Succeed())
		Expect(clientset.PolicyV1().PodDisruptionBudgets(ns).Delete(ctx, "dora", metav1.DeleteOptions{})).To(Succeed())
		Eventually(func(g Gomega) {
			objs := recorded()
			g.Expect(objs).To(HaveLen(5))
			for _, o := range objs {
				expect(g, o)
			}
		}).Should(Succeed())
		Expect(caches.NetworkPolicy(ns, "dora")).To(BeNil())
		Expect(caches.PodDisruptionBudget(ns, "dora")).To(BeNil())
	})
})

// eventLog records what handlers are handed, in order.
type eventLog struct {
	mu     sync.Mutex
	events []string
	objs   []any
}

func (l *eventLog) record(event string, objs ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, event)
	l.objs = append(l.objs, objs...)
}

// recorded are copies of the events and objects so far.
func (l *eventLog) recorded() ([]string, []any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...), append([]any(nil), l.objs...)
}
