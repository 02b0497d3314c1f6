package spaces_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/iris-cf/iris/backends/spaces"
)

type placedMap struct{ *mapPlacement }

func (p placedMap) PlacedSpaces() []string { return []string{"placed-only"} }

type fixedMoves spaces.Moves

func (m fixedMoves) Snapshot() spaces.Moves { return spaces.Moves(m) }

var _ = Describe("AdminHandler", func() {
	var (
		clientset *fake.Clientset
		handler   *spaces.AdminHandler
		kube      *memSide
		diego     *memSide
	)

	BeforeEach(func() {
		clientset = fake.NewClientset()
		kube, diego = newMemSide(), newMemSide()
		ctx := context.Background()
		logger := lagertest.NewTestLogger("admin")
		Expect(kube.DesireLRP(ctx, logger, appLRP("k1", "moving", 2))).To(Succeed())
		Expect(diego.DesireLRP(ctx, logger, appLRP("k1", "moving", 2))).To(Succeed())
		Expect(diego.DesireLRP(ctx, logger, appLRP("d1", "moving", 3))).To(Succeed())
		Expect(diego.DesireLRP(ctx, logger, appLRP("d2", "still", 1))).To(Succeed())
		placement := &mapPlacement{sides: map[string]spaces.Side{"moving": spaces.Kubernetes}}
		moves := fixedMoves{"k1": {Space: "moving", Move: spaces.Move{From: spaces.Diego, To: spaces.Kubernetes, State: spaces.Copying, Error: "slow"}}}
		handler = spaces.NewAdminHandler(logger, spaces.Status{Kubernetes: kube, Diego: diego, Placement: placedMap{placement}, Moves: moves},
			clientset, "iris", "iris-space-backends")
	})

	serve := func(method, path, body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		return rec
	}

	It("lists each space's placement, state, counts on both sides and moves", func() {
		rec := serve(http.MethodGet, "/admin/spaces", "")
		Expect(rec.Code).To(Equal(http.StatusOK))
		var states []spaces.SpaceStateJSON
		Expect(json.Unmarshal(rec.Body.Bytes(), &states)).To(Succeed())
		Expect(states).To(Equal([]spaces.SpaceStateJSON{
			{Space: "moving", Placement: spaces.Kubernetes, State: "migrating", KubernetesLRPs: 1, KubernetesInstances: 2, DiegoLRPs: 2, DiegoInstances: 5, Copying: 1, Failing: 1},
			{Space: "placed-only", Placement: spaces.Diego, State: "empty"},
			{Space: "still", Placement: spaces.Diego, State: "diego", DiegoLRPs: 1, DiegoInstances: 1},
		}))
	})

	It("sets and removes placement, and refuses bad input with a 400 writing nothing", func() {
		for _, body := range []string{`{`, `{"scope":"space","backend":"kubernetes"}`, `{"scope":"space","guid":"a/b","backend":"kubernetes"}`,
			`{"scope":"space","guid":"s","backend":"mesos"}`, `{"scope":"space","guid":"s","backend":"diego","extra":1}`} {
			rec := serve(http.MethodPut, "/admin/placement", body)
			Expect(rec.Code).To(Equal(http.StatusBadRequest), body)
			Expect(rec.Body.String()).NotTo(BeEmpty())
		}
		_, err := clientset.CoreV1().ConfigMaps("iris").Get(context.Background(), "iris-space-backends", metav1.GetOptions{})
		Expect(err).To(HaveOccurred(), "nothing half-created")

		Expect(serve(http.MethodPut, "/admin/placement", `{"scope":"space","guid":"s","backend":"kubernetes"}`).Code).To(Equal(http.StatusNoContent))
		Expect(serve(http.MethodPut, "/admin/placement", `{"scope":"default","backend":"diego"}`).Code).To(Equal(http.StatusNoContent))
		cm, err := clientset.CoreV1().ConfigMaps("iris").Get(context.Background(), "iris-space-backends", metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(cm.Data).To(Equal(map[string]string{"space.s": "kubernetes", "default": "diego"}))
		Expect(serve(http.MethodPut, "/admin/placement", `{"scope":"space","guid":"s"}`).Code).To(Equal(http.StatusNoContent))
		cm, err = clientset.CoreV1().ConfigMaps("iris").Get(context.Background(), "iris-space-backends", metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(cm.Data).To(Equal(map[string]string{"default": "diego"}))
	})
})
