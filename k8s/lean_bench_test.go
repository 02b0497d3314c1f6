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
)

// BenchmarkLeanStatefulSet is the transform's CPU per StatefulSet watch
// event: a BBS StatefulSet (CC's docker LRP record, which the transform
// decodes and compresses against its scheduling info on every event,
// status-only updates included) against the same object without the
// record, measured side by side. Run with
//
//	go test ./k8s -run '^$' -bench LeanStatefulSet
func BenchmarkLeanStatefulSet(b *testing.B) {
	lrp := bbstest.DockerLRP("6b1c7e36-5b7a-4a4e-9d55-1f4f2a1e9c01-0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", 3, "dora.example.com",
		bbstest.Space{AppName: "dora", SpaceGUID: "s", SpaceName: "dev", OrgGUID: "o", OrgName: "acme"})
	record, err := lrp.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	withRecord := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "dora", Namespace: "cf-workloads", ResourceVersion: "7",
			Annotations: map[string]string{k8s.AnnotationBBSDesiredLRP: base64.StdEncoding.EncodeToString(record), k8s.AnnotationProcessGUID: lrp.ProcessGuid}},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](3)},
	}
	withoutRecord := withRecord.DeepCopy()
	delete(withoutRecord.Annotations, k8s.AnnotationBBSDesiredLRP)

	perEvent := map[string]time.Duration{}
	for _, c := range []struct {
		name string
		sts  *appsv1.StatefulSet
	}{{"without the record", withoutRecord}, {"BBS record", withRecord}} {
		b.Run(c.name, func(b *testing.B) {
			transform := k8s.NewLeanTransform(clocktesting.NewFakePassiveClock(time.Unix(0, 0)))
			events := make([]*appsv1.StatefulSet, b.N)
			for i := range events {
				events[i] = c.sts.DeepCopy() // as each watch event decodes a fresh object
			}
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
	if base := perEvent["without the record"]; base > 0 && perEvent["BBS record"] > 0 {
		fmt.Printf("StatefulSet transform per watch event: BBS record %s, without it %s (ratio %.1f; %d-byte record); load %s\n",
			perEvent["BBS record"], base, float64(perEvent["BBS record"])/float64(base), len(record), benchenv.LoadAverage())
	}
}
