package spaces_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"sort"
	"sync"
	"time"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/iris-cf/iris/backends/spaces"
)

// memSide is a backend kept in memory: desired LRPs and their instances,
// which the spec starts (RUNNING, routable) as cells or pods would.
type memSide struct {
	mu         sync.Mutex
	lrps       map[string]*models.DesiredLRP
	running    map[string]int32
	desires    int
	failDesire error
}

func newMemSide() *memSide {
	return &memSide{lrps: map[string]*models.DesiredLRP{}, running: map[string]int32{}}
}

func (s *memSide) DesireLRP(_ context.Context, _ lager.Logger, lrp *models.DesiredLRP) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failDesire != nil {
		return s.failDesire
	}
	if _, ok := s.lrps[lrp.ProcessGuid]; ok {
		return models.ErrResourceExists
	}
	s.desires++
	copied := *lrp
	s.lrps[lrp.ProcessGuid] = &copied
	return nil
}

func (s *memSide) UpdateDesiredLRP(_ context.Context, _ lager.Logger, guid string, update *models.DesiredLRPUpdate) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	lrp, ok := s.lrps[guid]
	if !ok {
		return models.ErrResourceNotFound
	}
	updated := *lrp
	if update.InstancesExists() {
		updated.Instances = update.GetInstances()
	}
	if update.AnnotationExists() {
		updated.Annotation = update.GetAnnotation()
	}
	if update.Routes != nil {
		updated.Routes = update.Routes
	}
	s.lrps[guid] = &updated
	return nil
}

func (s *memSide) RemoveDesiredLRP(_ context.Context, _ lager.Logger, guid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.lrps[guid]; !ok {
		return models.ErrResourceNotFound
	}
	delete(s.lrps, guid)
	delete(s.running, guid)
	return nil
}

func (s *memSide) DesiredLRPByProcessGuid(_ context.Context, _ lager.Logger, guid string) (*models.DesiredLRP, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lrp, ok := s.lrps[guid]
	if !ok {
		return nil, models.ErrResourceNotFound
	}
	copied := *lrp
	return &copied, nil
}

func (s *memSide) DesiredLRPs(_ context.Context, _ lager.Logger, _ models.DesiredLRPFilter) ([]*models.DesiredLRP, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*models.DesiredLRP
	for _, lrp := range s.lrps {
		copied := *lrp
		out = append(out, &copied)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ProcessGuid < out[j].ProcessGuid })
	return out, nil
}

func (s *memSide) DesiredLRPSchedulingInfos(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter) ([]*models.DesiredLRPSchedulingInfo, error) {
	lrps, _ := s.DesiredLRPs(ctx, logger, filter)
	var out []*models.DesiredLRPSchedulingInfo
	for _, lrp := range lrps {
		info := lrp.DesiredLRPSchedulingInfo()
		out = append(out, &info)
	}
	return out, nil
}

func (s *memSide) DesiredLRPRoutingInfos(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter) ([]*models.DesiredLRP, error) {
	return s.DesiredLRPs(ctx, logger, filter)
}

func (s *memSide) ActualLRPs(_ context.Context, _ lager.Logger, filter models.ActualLRPFilter) ([]*models.ActualLRP, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*models.ActualLRP
	for guid, lrp := range s.lrps {
		if filter.ProcessGuid != "" && filter.ProcessGuid != guid {
			continue
		}
		out = append(out, s.instances(lrp)...)
	}
	return out, nil
}

func (s *memSide) ActualLRPsByProcessGuids(_ context.Context, _ lager.Logger, filter models.ActualLRPsByProcessGuidsFilter) ([]*models.ActualLRP, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*models.ActualLRP
	for _, guid := range filter.ProcessGuids {
		if lrp, ok := s.lrps[guid]; ok {
			out = append(out, s.instances(lrp)...)
		}
	}
	return out, nil
}

func (s *memSide) RetireActualLRP(context.Context, lager.Logger, *models.ActualLRPKey) error {
	return nil
}

// instances: the first running[guid] indexes RUNNING and routable, the
// rest UNCLAIMED.
func (s *memSide) instances(lrp *models.DesiredLRP) []*models.ActualLRP {
	var out []*models.ActualLRP
	for i := int32(0); i < lrp.Instances; i++ {
		a := &models.ActualLRP{ActualLRPKey: models.NewActualLRPKey(lrp.ProcessGuid, i, lrp.Domain), State: models.ActualLRPStateUnclaimed}
		if i < s.running[lrp.ProcessGuid] {
			a.State = models.ActualLRPStateRunning
			a.SetRoutable(true)
		}
		out = append(out, a)
	}
	return out
}

func (s *memSide) start(guid string, n int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running[guid] = n
}

func (s *memSide) has(guid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.lrps[guid]
	return ok
}

func (s *memSide) get(guid string) *models.DesiredLRP {
	s.mu.Lock()
	defer s.mu.Unlock()
	copied := *s.lrps[guid]
	return &copied
}

// memStore keeps the moves as the ConfigMap would, encoded.
type memStore struct {
	mu    sync.Mutex
	saved []byte
	saves int
}

func (s *memStore) Load(context.Context) (spaces.Moves, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	moves := spaces.Moves{}
	if s.saved != nil {
		Expect(json.Unmarshal(s.saved, &moves)).To(Succeed())
	}
	return moves, nil
}

func (s *memStore) Save(_ context.Context, moves spaces.Moves, _ map[string]spaces.Side) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	saved, err := json.Marshal(moves)
	Expect(err).NotTo(HaveOccurred())
	s.saved = saved
	s.saves++
	return nil
}

// Owner reads the moves as every replica's MoveWatch would.
func (s *memStore) Owner(guid string) (spaces.Side, bool) {
	moves, _ := s.Load(context.Background())
	m, ok := moves[guid]
	if !ok {
		return "", false
	}
	return m.Owner(), true
}

func (s *memStore) moves() spaces.Moves {
	moves, _ := s.Load(context.Background())
	return moves
}

type mapPlacement struct {
	mu    sync.Mutex
	sides map[string]spaces.Side
}

func (p *mapPlacement) SideFor(_, space string) spaces.Side {
	p.mu.Lock()
	defer p.mu.Unlock()
	if side, ok := p.sides[space]; ok {
		return side
	}
	return spaces.Diego
}

func (p *mapPlacement) set(space string, side spaces.Side) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sides[space] = side
}

func appLRP(guid, space string, instances int32) *models.DesiredLRP {
	routes := models.Routes{"cf-router": rawJSON(`[{"hostnames":["` + guid + `.example.com"],"port":8080}]`)}
	return &models.DesiredLRP{
		ProcessGuid: guid, Domain: "cf-apps", LogGuid: "app-" + guid, Instances: instances, Annotation: "v1",
		Routes:     &routes,
		MetricTags: map[string]*models.MetricTagValue{"space_id": {Static: space}, "organization_id": {Static: "org"}},
	}
}

func rawJSON(s string) *json.RawMessage {
	raw := json.RawMessage(s)
	return &raw
}

var _ = Describe("Migrator", func() {
	var (
		kube, diego *memSide
		store       *memStore
		placement   *mapPlacement
		clock       *clocktesting.FakeClock
		migrator    *spaces.Migrator
		router      *spaces.Router
		ctx         context.Context
		logger      *lagertest.TestLogger
		opts        spaces.MigratorOptions
	)

	newMigrator := func() *spaces.Migrator {
		return spaces.NewMigrator(logger, kube, diego, placement, store, clock, opts)
	}
	pass := func() {
		GinkgoHelper()
		Expect(migrator.Pass(ctx)).To(Succeed())
	}
	// syncOnce is CC's sync: every process exactly once.
	syncOnce := func() map[string]string {
		GinkgoHelper()
		infos, err := router.DesiredLRPSchedulingInfos(ctx, logger, models.DesiredLRPFilter{})
		Expect(err).NotTo(HaveOccurred())
		out := map[string]string{}
		for _, info := range infos {
			Expect(out).NotTo(HaveKey(info.ProcessGuid), "listed twice")
			out[info.ProcessGuid] = info.Annotation
		}
		return out
	}

	BeforeEach(func() {
		kube, diego, store = newMemSide(), newMemSide(), &memStore{}
		placement = &mapPlacement{sides: map[string]spaces.Side{}}
		clock = clocktesting.NewFakeClock(time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC))
		ctx = context.Background()
		logger = lagertest.NewTestLogger("migrator")
		opts = spaces.DefaultMigratorOptions()
		migrator = newMigrator()
		router = spaces.NewRouter(kube, nil, diego, nil, placement)
		router.FollowMoves(store)
	})

	It("moves a space's LRP to Kubernetes: copy, wait for routable instances, switch, remove the source, with the process listed once throughout", func() {
		Expect(diego.DesireLRP(ctx, logger, appLRP("a", "s", 2))).To(Succeed())
		diego.start("a", 2)
		pass()
		Expect(kube.has("a")).To(BeFalse(), "placed on diego: nothing moves")
		Expect(store.moves()).To(BeEmpty())

		placement.set("s", spaces.Kubernetes)
		pass()
		Expect(store.moves()).To(HaveKeyWithValue("a", HaveField("Move.State", spaces.Copying)))
		Expect(kube.get("a")).To(Equal(diego.get("a")), "the full LRP, same guid, annotation and routes")
		Expect(syncOnce()).To(Equal(map[string]string{"a": "v1"}))
		owner, _ := store.Owner("a")
		Expect(owner).To(Equal(spaces.Diego))

		By("waiting while the copy's instances are not all running and routable")
		kube.start("a", 1)
		pass()
		pass()
		Expect(store.moves()["a"].State).To(Equal(spaces.Copying))
		Expect(diego.has("a")).To(BeTrue())

		kube.start("a", 2)
		pass()
		Expect(store.moves()["a"].State).To(Equal(spaces.Switched))
		Expect(diego.has("a")).To(BeTrue(), "the switch is recorded before the source goes")
		owner, _ = store.Owner("a")
		Expect(owner).To(Equal(spaces.Kubernetes))
		Expect(syncOnce()).To(Equal(map[string]string{"a": "v1"}))
		actual, err := router.ActualLRPsByProcessGuids(ctx, logger, models.ActualLRPsByProcessGuidsFilter{ProcessGuids: []string{"a"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(actual).To(HaveLen(2), "the owner's instances only")

		pass()
		Expect(diego.has("a")).To(BeFalse())
		Expect(store.moves()).To(HaveKey("a"), "forgotten once the source no longer lists it")
		pass()
		Expect(store.moves()).To(BeEmpty())
		Expect(syncOnce()).To(Equal(map[string]string{"a": "v1"}))
		Expect(kube.desires).To(Equal(1))
	})

	It("sends CC's updates mid-move to both copies, and catches the copy up with an update that reached only the source", func() {
		Expect(diego.DesireLRP(ctx, logger, appLRP("a", "s", 1))).To(Succeed())
		placement.set("s", spaces.Kubernetes)
		pass()
		update := &models.DesiredLRPUpdate{}
		update.SetInstances(3)
		update.SetAnnotation("v2")
		Expect(router.UpdateDesiredLRP(ctx, logger, "a", update)).To(Succeed())
		Expect(diego.get("a").Instances).To(BeEquivalentTo(3))
		Expect(kube.get("a").Instances).To(BeEquivalentTo(3))
		Expect(kube.get("a").Annotation).To(Equal("v2"))

		By("an update that raced the copy (source only) is applied to the copy on the next pass")
		routes := models.Routes{"cf-router": rawJSON(`[{"hostnames":["new.example.com"],"port":8080}]`)}
		Expect(diego.UpdateDesiredLRP(ctx, logger, "a", &models.DesiredLRPUpdate{Routes: &routes})).To(Succeed())
		pass()
		Expect(kube.get("a").Routes).To(Equal(&routes))
		Expect(kube.get("a").Annotation).To(Equal("v2"))

		By("reads go to the owner")
		got, err := router.DesiredLRPByProcessGuid(ctx, logger, "a")
		Expect(err).NotTo(HaveOccurred())
		Expect(got.Routes).To(Equal(&routes))
	})

	It("rolls back a space set back before the copies took over: the copies go, the source stays", func() {
		for _, guid := range []string{"a", "b"} {
			Expect(diego.DesireLRP(ctx, logger, appLRP(guid, "s", 1))).To(Succeed())
			diego.start(guid, 1)
		}
		placement.set("s", spaces.Kubernetes)
		pass()
		kube.start("a", 1)
		pass()
		Expect(store.moves()["a"].State).To(Equal(spaces.Switched))
		Expect(store.moves()["b"].State).To(Equal(spaces.Copying))

		placement.set("s", spaces.Diego)
		pass()
		Expect(kube.has("b")).To(BeFalse(), "b's copy removed")
		Expect(diego.has("b")).To(BeTrue())
		Expect(store.moves()).NotTo(HaveKey("b"))
		Expect(store.moves()["a"]).To(And(HaveField("Move.From", spaces.Kubernetes), HaveField("Move.To", spaces.Diego), HaveField("Move.State", spaces.Switched)),
			"a had switched: it moves back the same way, and Diego's copy, still running, takes over at once")
		Expect(kube.has("a")).To(BeTrue(), "removed only once Diego owns it again")
		Expect(syncOnce()).To(HaveLen(2))
		pass()
		pass()
		Expect(store.moves()).To(BeEmpty())
		Expect(kube.has("a")).To(BeFalse())
		Expect(diego.has("a")).To(BeTrue())
		Expect(syncOnce()).To(Equal(map[string]string{"a": "v1", "b": "v1"}))
	})

	It("moves back to Diego after the source is gone, and survives a restart (a new leader carries on from the store)", func() {
		Expect(diego.DesireLRP(ctx, logger, appLRP("a", "s", 2))).To(Succeed())
		placement.set("s", spaces.Kubernetes)
		pass()
		kube.start("a", 2)
		pass()
		pass()
		pass()
		Expect(store.moves()).To(BeEmpty())
		Expect(diego.has("a")).To(BeFalse())

		placement.set("s", spaces.Diego)
		pass()
		Expect(diego.get("a").Instances).To(BeEquivalentTo(2))
		Expect(store.moves()["a"].State).To(Equal(spaces.Copying))

		By("restarting: a new migrator reads the moves from the store")
		migrator = newMigrator()
		diego.start("a", 2)
		pass()
		Expect(store.moves()["a"].State).To(Equal(spaces.Switched))
		migrator = newMigrator()
		pass()
		pass()
		Expect(kube.has("a")).To(BeFalse())
		Expect(store.moves()).To(BeEmpty())
		Expect(diego.desires).To(Equal(2), "desired on diego twice in all: the original and the move back")
	})

	It("forgets a move when CC removes the process mid-move, and makes no copy again", func() {
		Expect(diego.DesireLRP(ctx, logger, appLRP("a", "s", 1))).To(Succeed())
		placement.set("s", spaces.Kubernetes)
		pass()
		Expect(router.RemoveDesiredLRP(ctx, logger, "a")).To(Succeed())
		Expect(kube.has("a") || diego.has("a")).To(BeFalse())
		pass()
		Expect(store.moves()).To(BeEmpty())
		Expect(bbsType(router.RemoveDesiredLRP(ctx, logger, "a"))).To(Equal(models.Error_ResourceNotFound))

		By("the source removed alone (the copy not yet seen by the router): the copy goes too")
		Expect(diego.DesireLRP(ctx, logger, appLRP("b", "s", 1))).To(Succeed())
		pass()
		Expect(kube.has("b")).To(BeTrue())
		Expect(diego.RemoveDesiredLRP(ctx, logger, "b")).To(Succeed())
		pass()
		Expect(kube.has("b")).To(BeFalse())
		pass()
		Expect(store.moves()).To(BeEmpty())
	})

	It("retries a failing step with backoff on the injected clock, showing the error in the move", func() {
		Expect(diego.DesireLRP(ctx, logger, appLRP("a", "s", 1))).To(Succeed())
		kube.failDesire = errors.New("api server unavailable")
		placement.set("s", spaces.Kubernetes)
		pass()
		Expect(store.moves()["a"].Error).To(ContainSubstring("api server unavailable"))
		kube.mu.Lock()
		kube.failDesire = nil
		kube.mu.Unlock()
		pass()
		Expect(kube.has("a")).To(BeFalse(), "not retried before the backoff ran out")
		clock.Step(opts.RetryBase)
		pass()
		Expect(kube.has("a")).To(BeTrue())
		Expect(store.moves()["a"].Error).To(BeEmpty())
	})

	It("moves at most MaxInFlight LRPs at once", func() {
		opts.MaxInFlight = 2
		migrator = newMigrator()
		for _, guid := range []string{"a", "b", "c"} {
			Expect(diego.DesireLRP(ctx, logger, appLRP(guid, "s", 0))).To(Succeed())
		}
		placement.set("s", spaces.Kubernetes)
		pass()
		Expect(store.moves()).To(HaveLen(2))
		Expect(kube.has("c")).To(BeFalse())
		for i := 0; i < 8; i++ {
			pass()
		}
		Expect(store.moves()).To(BeEmpty())
		Expect(kube.has("a") && kube.has("b") && kube.has("c")).To(BeTrue())
		Expect(diego.has("a") || diego.has("b") || diego.has("c")).To(BeFalse())
	})

	It("runs a pass every interval of its clock until signalled", func() {
		Expect(diego.DesireLRP(ctx, logger, appLRP("a", "s", 0))).To(Succeed())
		process := make(chan error, 1)
		signals := make(chan os.Signal, 1)
		ready := make(chan struct{})
		go func() { process <- migrator.Run(signals, ready) }()
		Eventually(ready).Should(BeClosed())
		placement.set("s", spaces.Kubernetes)
		Consistently(func(g Gomega) {
			g.Expect(kube.has("a")).To(BeFalse(), "the first pass ran before the placement changed")
		}).Should(Succeed())
		clock.Step(opts.Interval)
		Eventually(func(g Gomega) { g.Expect(kube.has("a")).To(BeTrue()) }).Should(Succeed())
		signals <- os.Interrupt
		Eventually(process).Should(Receive(BeNil()))
	})
})

var _ = Describe("ConfigMapMoveStore", func() {
	It("keeps the moves per space in the ConfigMap and drops spaces whose moves are over", func() {
		clientset := fake.NewClientset()
		store := spaces.NewConfigMapMoveStore(clientset, "iris", "iris-space-backends-migrations")
		ctx := context.Background()
		moves, err := store.Load(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(moves).To(BeEmpty())
		since := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
		moves = spaces.Moves{
			"a": {Space: "s1", Move: spaces.Move{From: spaces.Diego, To: spaces.Kubernetes, State: spaces.Copying, Since: since}},
			"b": {Space: "s2", Move: spaces.Move{From: spaces.Kubernetes, To: spaces.Diego, State: spaces.Switched, Since: since, Error: "boom"}},
		}
		Expect(store.Save(ctx, moves, map[string]spaces.Side{"s1": spaces.Kubernetes, "s2": spaces.Diego})).To(Succeed())
		cm, err := clientset.CoreV1().ConfigMaps("iris").Get(ctx, "iris-space-backends-migrations", metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(cm.Data).To(HaveKey("space.s1"))
		Expect(cm.Data["space.s2"]).To(MatchJSON(`{"target":"diego","lrps":{"b":{"from":"kubernetes","to":"diego","state":"switched","since":"2026-12-02T00:00:00Z","error":"boom"}}}`))
		loaded, err := store.Load(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(loaded).To(Equal(moves))

		delete(moves, "a")
		Expect(store.Save(ctx, moves, map[string]spaces.Side{"s2": spaces.Diego})).To(Succeed())
		cm, err = clientset.CoreV1().ConfigMaps("iris").Get(ctx, "iris-space-backends-migrations", metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(cm.Data).To(HaveLen(1))
	})
})

func bbsType(err error) models.Error_Type {
	Expect(err).To(HaveOccurred())
	return models.ConvertError(err).Type
}

var _ = Describe("MoveWatch", func() {
	It("serves every replica the owner of each LRP being moved, from the ConfigMap the leader writes", func() {
		clientset := fake.NewClientset()
		ctx := context.Background()
		store := spaces.NewConfigMapMoveStore(clientset, "iris", "moves")
		watch, err := spaces.NewMoveWatch(lagertest.NewTestLogger("watch"), clientset, "iris", "moves")
		Expect(err).NotTo(HaveOccurred())
		signals, ready := make(chan os.Signal, 1), make(chan struct{})
		done := make(chan error, 1)
		go func() { done <- watch.Run(signals, ready) }()
		DeferCleanup(func() { signals <- os.Interrupt; Eventually(done).Should(Receive(BeNil())) })
		Eventually(ready).Should(BeClosed())
		_, moving := watch.Owner("a")
		Expect(moving).To(BeFalse())

		Expect(store.Save(ctx, spaces.Moves{
			"a": {Space: "s", Move: spaces.Move{From: spaces.Diego, To: spaces.Kubernetes, State: spaces.Copying}},
			"b": {Space: "s", Move: spaces.Move{From: spaces.Diego, To: spaces.Kubernetes, State: spaces.Switched, Error: "boom"}},
		}, map[string]spaces.Side{"s": spaces.Kubernetes})).To(Succeed())
		Eventually(func(g Gomega) {
			owner, moving := watch.Owner("a")
			g.Expect(moving).To(BeTrue())
			g.Expect(owner).To(Equal(spaces.Diego), "the source owns a copying LRP")
			owner, _ = watch.Owner("b")
			g.Expect(owner).To(Equal(spaces.Kubernetes), "the target owns a switched one")
		}).Should(Succeed())
		Expect(watch.Count(spaces.Copying, false)).To(Equal(1))
		Expect(watch.Count("", true)).To(Equal(1))

		Expect(store.Save(ctx, spaces.Moves{}, nil)).To(Succeed())
		Eventually(func(g Gomega) { g.Expect(watch.Count("", false)).To(BeZero()) }).Should(Succeed())
	})
})
