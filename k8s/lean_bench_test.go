package k8s_test

import (
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/bifrost/bbs/bbstest"
	"github.com/iris-cf/iris/internal/benchenv"
	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/workload"
)

// BenchmarkLeanStatefulSet is the transform's CPU per StatefulSet watch
// event: with CC's docker LRP record, first seen (a desire or an update:
// the transform decodes it and compresses it against its scheduling info)
// and unchanged (a status update: remembered, compactedRecords), against
// the same object without the record, measured side by side. Run with
//
//	go test ./k8s -run '^$' -bench LeanStatefulSet
func BenchmarkLeanStatefulSet(b *testing.B) {
	lrp := bbstest.DockerLRP("6b1c7e36-5b7a-4a4e-9d55-1f4f2a1e9c01-0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", 3, "dora.example.com",
		bbstest.Space{AppName: "dora", SpaceGUID: "s", SpaceName: "dev", OrgGUID: "o", OrgName: "acme"})
	statefulSet := func(record []byte) *appsv1.StatefulSet {
		return &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: "dora", Namespace: "cf-workloads", ResourceVersion: "7",
				Annotations: map[string]string{k8s.AnnotationBBSDesiredLRP: base64.StdEncoding.EncodeToString(record), k8s.AnnotationProcessGUID: lrp.ProcessGuid}},
			Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](3)},
		}
	}
	record, err := lrp.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	withoutRecord := statefulSet(record)
	delete(withoutRecord.Annotations, k8s.AnnotationBBSDesiredLRP)

	cases := []struct {
		name   string
		events func(n int) []*appsv1.StatefulSet
	}{
		{"without the record", func(n int) []*appsv1.StatefulSet { return copies(withoutRecord, n) }},
		{"a record first seen", func(n int) []*appsv1.StatefulSet {
			events := make([]*appsv1.StatefulSet, n)
			for i := range events {
				changed := *lrp
				changed.Annotation = fmt.Sprintf("%d.0", 1764583200+i)
				r, err := changed.Marshal()
				if err != nil {
					b.Fatal(err)
				}
				events[i] = statefulSet(r)
			}
			return events
		}},
		{"an unchanged record", func(n int) []*appsv1.StatefulSet { return copies(statefulSet(record), n) }},
	}
	perEvent := map[string]time.Duration{}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			transform := k8s.NewLeanTransform(clocktesting.NewFakePassiveClock(time.Unix(0, 0)))
			events := c.events(b.N)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if _, err := transform(events[i]); err != nil {
					b.Fatal(err)
				}
			}
			perEvent[c.name] = time.Since(start) / time.Duration(b.N)
		})
	}
	fmt.Printf("StatefulSet transform per watch event: a BBS record first seen %s, unchanged %s, without a record %s (%d-byte record); load %s\n",
		perEvent["a record first seen"], perEvent["an unchanged record"], perEvent["without the record"], len(record), benchenv.LoadAverage())
}

// copies are n copies of sts, as each watch event decodes a fresh object.
func copies(sts *appsv1.StatefulSet, n int) []*appsv1.StatefulSet {
	out := make([]*appsv1.StatefulSet, n)
	for i := range out {
		out[i] = sts.DeepCopy()
	}
	return out
}

// BenchmarkCachedStatefulSetRead is what handing out a cached BBS
// StatefulSet costs (every StatefulSet event, once per handler; lookups by
// key or process guid): building the *appsv1.StatefulSet from its record,
// with the routes annotation made again from the record, against one whose
// routes annotation is kept (edited, so not the record's). Run with
//
//	go test ./k8s -run '^$' -bench CachedStatefulSetRead
func BenchmarkCachedStatefulSetRead(b *testing.B) {
	lrp := bbstest.DockerLRP("6b1c7e36-5b7a-4a4e-9d55-1f4f2a1e9c01-0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", 3, "dora.example.com",
		bbstest.Space{AppName: "dora", SpaceGUID: "s", SpaceName: "dev", OrgGUID: "o", OrgName: "acme"})
	record, err := lrp.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	routes := workload.Routes{}
	for router, entries := range *lrp.Routes {
		routes[router] = *entries
	}
	routesAnnotation, err := workload.MarshalRoutes(routes)
	if err != nil {
		b.Fatal(err)
	}
	perRead := map[string]time.Duration{}
	for _, c := range []struct{ name, routes string }{{"routes from the record", routesAnnotation}, {"routes kept", routesAnnotation + " "}} {
		b.Run(c.name, func(b *testing.B) {
			obj, err := k8s.LeanAppObject(&appsv1.StatefulSet{
				ObjectMeta: metav1.ObjectMeta{Name: "dora", Namespace: "cf-workloads", ResourceVersion: "7", UID: "9d55c7e3-1f4f-4a1e-9c01-6b1c7e365b7a",
					Annotations: map[string]string{k8s.AnnotationBBSDesiredLRP: base64.StdEncoding.EncodeToString(record),
						k8s.AnnotationProcessGUID: lrp.ProcessGuid, k8s.AnnotationRoutes: c.routes}},
				Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](3)},
			})
			if err != nil {
				b.Fatal(err)
			}
			if got := k8s.StatefulSetOf(obj).Annotations[k8s.AnnotationRoutes]; got != c.routes {
				b.Fatalf("routes read back as %q", got)
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				_ = k8s.StatefulSetOf(obj)
			}
			perRead[c.name] = time.Since(start) / time.Duration(b.N)
		})
	}
	fmt.Printf("cached StatefulSet handed out: routes from the record %s, routes kept %s per read; load %s\n",
		perRead["routes from the record"], perRead["routes kept"], benchenv.LoadAverage())
}
