package spaces

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sync"
	"time"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
)

// MoveStore keeps the moves where they survive a restart of Iris and are
// read by every replica's router.
type MoveStore interface {
	Load(ctx context.Context) (Moves, error)
	// Save replaces the moves; targets names the side each space moves to.
	Save(ctx context.Context, moves Moves, targets map[string]Side) error
}

// MigratorOptions tune the migration loop.
type MigratorOptions struct {
	// Interval between two passes; each pass is level-triggered (it
	// compares where every LRP is with where its space is placed), so a
	// missed change is found on the next one.
	Interval time.Duration
	// MaxInFlight bounds the LRPs being moved at once, over all spaces:
	// each runs twice while it moves (memory on both sides), and changing
	// the default placement must not start every LRP of a foundation at once.
	MaxInFlight int
	// Workers carry out the steps of one pass in parallel.
	Workers int
	// RetryBase and RetryMax bound the per-LRP exponential backoff after a
	// failed step.
	RetryBase, RetryMax time.Duration
}

// DefaultMigratorOptions are the options Iris runs with unless configured.
func DefaultMigratorOptions() MigratorOptions {
	return MigratorOptions{Interval: 5 * time.Second, MaxInFlight: 100, Workers: 8, RetryBase: time.Second, RetryMax: 5 * time.Minute}
}

// Migrator moves the LRPs of each space to the side the placement names
// for it, one LRP at a time per step and without CC noticing:
//
//  1. copying: the LRP (the full DesiredLRP, read from the source) is
//     desired on the target with the same process guid; the source still
//     owns it. CC's updates reach both copies (the router), and the
//     migrator brings the target's instances, routes and annotation in line
//     with the source's on every pass, so an update racing the copy is not
//     lost.
//  2. switched: once every desired instance on the target is RUNNING and
//     routable, the target owns the LRP (recorded before anything is
//     removed).
//  3. the source's copy is removed; once the source no longer lists it the
//     move is over and forgotten.
//
// Setting a space back at any point rolls it back: a copying LRP's copy on
// the target is removed; a switched one is moved back the same way.
//
// Only the leader runs a Migrator (cmd/iris wraps it in leader.Runner);
// the moves are kept in Kubernetes (MoveStore), so a new leader carries on
// where the old one stopped: every step is idempotent.
type Migrator struct {
	logger    lager.Logger
	sides     map[Side]Backend
	placement Placement
	store     MoveStore
	clock     clock.WithTicker
	opts      MigratorOptions
	limiter   workqueue.TypedRateLimiter[string]

	// moves and retryAt belong to the Run goroutine.
	moves   Moves
	retryAt map[string]time.Time
	passes  int
}

// NewMigrator moves LRPs between the kubernetes and diego backends.
func NewMigrator(logger lager.Logger, kubernetes, diego Backend, placement Placement, store MoveStore, clk clock.WithTicker, opts MigratorOptions) *Migrator {
	return &Migrator{
		logger:    logger.Session("space-migrator"),
		sides:     map[Side]Backend{Kubernetes: kubernetes, Diego: diego},
		placement: placement,
		store:     store,
		clock:     clk,
		opts:      opts,
		limiter:   workqueue.NewTypedItemExponentialFailureRateLimiter[string](opts.RetryBase, opts.RetryMax),
		retryAt:   map[string]time.Time{},
	}
}

// Run passes every Interval until signalled. The moves are read from the
// store first: a new leader continues the old one's moves.
func (m *Migrator) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-signals
		cancel()
	}()
	close(ready)
	ticker := m.clock.NewTicker(m.opts.Interval)
	defer ticker.Stop()
	for {
		if err := m.Pass(ctx); err != nil && ctx.Err() == nil {
			m.logger.Error("pass-failed", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C():
		}
	}
}

// Pass compares where each LRP is with its space's placement once and
// takes the next step of every move.
func (m *Migrator) Pass(ctx context.Context) error {
	if m.moves == nil {
		moves, err := m.store.Load(ctx)
		if err != nil {
			return fmt.Errorf("loading the moves under way: %w", err)
		}
		m.moves = moves
		m.logger.Info("loaded", lager.Data{"moves": len(moves)})
	}
	m.passes++
	lists := map[Side]map[string]*models.DesiredLRP{}
	for _, side := range order {
		lrps, err := m.sides[side].DesiredLRPRoutingInfos(ctx, m.logger, models.DesiredLRPFilter{})
		if err != nil {
			return fmt.Errorf("listing LRPs on %s: %w", side, err)
		}
		byGUID := make(map[string]*models.DesiredLRP, len(lrps))
		for _, lrp := range lrps {
			byGUID[lrp.ProcessGuid] = lrp
		}
		lists[side] = byGUID
	}
	placed, targets, changed := m.decide(lists)
	if changed {
		if err := m.store.Save(ctx, m.moves, targets); err != nil {
			return fmt.Errorf("saving the moves: %w", err)
		}
	}
	actual, err := m.readiness(ctx)
	if err != nil {
		return err
	}
	if m.act(ctx, lists, placed, actual) {
		if err := m.store.Save(ctx, m.moves, targets); err != nil {
			return fmt.Errorf("saving the moves: %w", err)
		}
	}
	return nil
}

// decide starts the moves the placement asks for, turns switched moves
// whose space was set back into moves back, and forgets moves of LRPs gone
// from both sides. It returns the placement of every LRP being moved and
// the target of every space with a move.
func (m *Migrator) decide(lists map[Side]map[string]*models.DesiredLRP) (map[string]Side, map[string]Side, bool) {
	changed := false
	now := m.clock.Now()
	placed := map[string]Side{}
	targets := map[string]Side{}
	for _, guid := range sortedGUIDs(m.moves) {
		mv := m.moves[guid]
		lrp := lists[Kubernetes][guid]
		if lrp == nil {
			lrp = lists[Diego][guid]
		}
		if lrp == nil {
			// CC removed it from both sides (the router removes both copies).
			delete(m.moves, guid)
			m.forget(guid)
			changed = true
			continue
		}
		org, space := spaceOf(lrp)
		if org == "" {
			org = mv.Org
		}
		target := m.placement.SideFor(org, space)
		placed[guid] = target
		targets[space] = target
		if mv.State == Switched && mv.To != target {
			// Set back after the target took over: move it back the same
			// way, so the space never lacks running instances.
			m.logger.Info("moving-back", lager.Data{"process_guid": guid, "to": target})
			m.moves[guid] = SpaceMove{Space: space, Move: Move{From: mv.To, To: target, State: Copying, Since: now, Org: org}}
			m.forget(guid)
			changed = true
		}
	}
	for _, guid := range sortedGUIDs(union2(lists[Kubernetes], lists[Diego])) {
		if _, moving := m.moves[guid]; moving {
			continue
		}
		onK, onD := lists[Kubernetes][guid], lists[Diego][guid]
		lrp, from := onK, Kubernetes
		if lrp == nil {
			lrp, from = onD, Diego
		}
		org, space := spaceOf(lrp)
		target := m.placement.SideFor(org, space)
		if onK != nil && onD != nil {
			// On both sides without a move (a move whose record was lost):
			// finish it towards the placement.
			from = other(target)
		} else if from == target {
			continue
		}
		if len(m.moves) >= m.opts.MaxInFlight {
			continue
		}
		m.logger.Info("moving", lager.Data{"process_guid": guid, "space": space, "from": from, "to": target})
		m.moves[guid] = SpaceMove{Space: space, Move: Move{From: from, To: target, State: Copying, Since: now, Org: org}}
		placed[guid] = target
		targets[space] = target
		changed = true
	}
	return placed, targets, changed
}

// readiness lists the instances of every copying LRP on its target.
func (m *Migrator) readiness(ctx context.Context) (map[string][]*models.ActualLRP, error) {
	guids := map[Side][]string{}
	for guid, mv := range m.moves {
		if mv.State == Copying {
			guids[mv.To] = append(guids[mv.To], guid)
		}
	}
	out := map[string][]*models.ActualLRP{}
	for side, list := range guids {
		actual, err := m.sides[side].ActualLRPsByProcessGuids(ctx, m.logger, models.ActualLRPsByProcessGuidsFilter{ProcessGuids: list})
		if err != nil {
			return nil, fmt.Errorf("listing the instances of the copies on %s: %w", side, err)
		}
		for _, a := range actual {
			out[a.ProcessGuid] = append(out[a.ProcessGuid], a)
		}
	}
	return out, nil
}

// act takes the next step of every move not waiting for a retry, in
// parallel; it reports whether a move changed.
func (m *Migrator) act(ctx context.Context, lists map[Side]map[string]*models.DesiredLRP, placed map[string]Side, actual map[string][]*models.ActualLRP) bool {
	type result struct {
		guid string
		next *SpaceMove
		err  error
	}
	now := m.clock.Now()
	var guids []string
	for _, guid := range sortedGUIDs(m.moves) {
		if at, ok := m.retryAt[guid]; ok && now.Before(at) {
			continue
		}
		guids = append(guids, guid)
	}
	results := make([]result, len(guids))
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < max(1, m.opts.Workers); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				guid := guids[i]
				mv := m.moves[guid]
				present := map[Side]bool{Kubernetes: lists[Kubernetes][guid] != nil, Diego: lists[Diego][guid] != nil}
				next, err := m.step(ctx, guid, mv, placed[guid], present, actual[guid])
				results[i] = result{guid: guid, next: next, err: err}
			}
		}()
	}
	for i := range guids {
		work <- i
	}
	close(work)
	wg.Wait()

	changed := false
	for _, r := range results {
		old := m.moves[r.guid]
		logger := m.logger.WithData(lager.Data{"process_guid": r.guid, "space": old.Space, "from": old.From, "to": old.To})
		if r.err != nil {
			delay := m.limiter.When(r.guid)
			m.retryAt[r.guid] = now.Add(delay)
			logger.Error("step-failed", r.err, lager.Data{"state": old.State, "retry_in": delay.String()})
			if old.Error != r.err.Error() {
				old.Error = r.err.Error()
				m.moves[r.guid] = old
				changed = true
			}
			continue
		}
		m.forget(r.guid)
		switch {
		case r.next == nil:
			logger.Info("move-finished", lager.Data{"state": old.State})
			delete(m.moves, r.guid)
			changed = true
		case *r.next != old:
			if r.next.State != old.State {
				logger.Info("move-state", lager.Data{"state": r.next.State})
			}
			m.moves[r.guid] = *r.next
			changed = true
		}
	}
	return changed
}

func (m *Migrator) forget(guid string) {
	m.limiter.Forget(guid)
	delete(m.retryAt, guid)
}

// step is the next step of one move, given where the LRP is listed and
// its copy's instances; next nil ends the move.
func (m *Migrator) step(ctx context.Context, guid string, mv SpaceMove, target Side, present map[Side]bool, instances []*models.ActualLRP) (*SpaceMove, error) {
	logger := m.logger.Session("step", lager.Data{"process_guid": guid, "from": mv.From, "to": mv.To, "state": mv.State})
	next := mv
	next.Error = ""
	switch mv.State {
	case Copying:
		if mv.To != target || !present[mv.From] {
			// Set back before the copy took over, or CC removed the LRP
			// mid-move: the copy goes, the source (if any) stays as it is.
			if err := m.remove(ctx, logger, mv.To, guid); err != nil {
				return &mv, err
			}
			return nil, nil
		}
		source, err := m.sides[mv.From].DesiredLRPByProcessGuid(ctx, logger, guid)
		if isNotFound(err) {
			return &next, nil // removed since the list: the next pass removes the copy
		}
		if err != nil {
			return &mv, fmt.Errorf("reading the LRP on %s: %w", mv.From, err)
		}
		copied, err := m.sides[mv.To].DesiredLRPByProcessGuid(ctx, logger, guid)
		if isNotFound(err) {
			logger.Info("desiring-copy", lager.Data{"instances": source.Instances})
			err := m.sides[mv.To].DesireLRP(ctx, logger, source)
			if err != nil && !isResourceExists(err) {
				return &mv, fmt.Errorf("desiring the copy on %s: %w", mv.To, err)
			}
			return &next, nil
		}
		if err != nil {
			return &mv, fmt.Errorf("reading the copy on %s: %w", mv.To, err)
		}
		if update := catchUp(source, copied); update != nil {
			logger.Info("updating-copy")
			if err := m.sides[mv.To].UpdateDesiredLRP(ctx, logger, guid, update); err != nil {
				return &mv, fmt.Errorf("updating the copy on %s: %w", mv.To, err)
			}
			return &next, nil
		}
		if readyInstances(instances) < int(source.Instances) {
			return &next, nil
		}
		next.State, next.Since = Switched, m.clock.Now()
		return &next, nil
	case Switched:
		if present[mv.From] {
			if err := m.remove(ctx, logger, mv.From, guid); err != nil {
				return &mv, err
			}
			// Forgotten once the source no longer lists it, so the router
			// keeps routing to the target while the removal settles.
			return &next, nil
		}
		return nil, nil
	}
	return &mv, fmt.Errorf("unknown move state %q", mv.State)
}

func (m *Migrator) remove(ctx context.Context, logger lager.Logger, side Side, guid string) error {
	logger.Info("removing", lager.Data{"side": side})
	err := m.sides[side].RemoveDesiredLRP(ctx, logger, guid)
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("removing the LRP from %s: %w", side, err)
	}
	return nil
}

// readyInstances counts the distinct indexes RUNNING and routable (an
// instance that never reported routability, as Diego's before readiness
// checks, counts when running).
func readyInstances(instances []*models.ActualLRP) int {
	ready := map[int32]bool{}
	for _, a := range instances {
		if a.State == models.ActualLRPStateRunning && (!a.RoutableExists() || a.GetRoutable()) {
			ready[a.Index] = true
		}
	}
	return len(ready)
}

// catchUp is the update that makes the copy what CC last asked of the
// source (an update may have reached the source before the copy existed),
// or nil when they agree.
func catchUp(source, copied *models.DesiredLRP) *models.DesiredLRPUpdate {
	var update models.DesiredLRPUpdate
	differs := false
	if source.Instances != copied.Instances {
		update.SetInstances(source.Instances)
		differs = true
	}
	if source.Annotation != copied.Annotation {
		update.SetAnnotation(source.Annotation)
		differs = true
	}
	if !routesEqual(source.Routes, copied.Routes) {
		routes := models.Routes{}
		if source.Routes != nil {
			routes = *source.Routes
		}
		update.Routes = &routes
		differs = true
	}
	if !differs {
		return nil
	}
	return &update
}

func isResourceExists(err error) bool {
	var bbsErr *models.Error
	return errors.As(err, &bbsErr) && bbsErr.Type == models.Error_ResourceExists
}

// routesEqual compares routes as JSON values: the sides may keep the same
// routes in differently spaced bytes, and an update for nothing would roll
// the copy's instances.
func routesEqual(a, b *models.Routes) bool {
	decode := func(r *models.Routes) map[string]any {
		out := map[string]any{}
		if r == nil {
			return out
		}
		for k, v := range *r {
			var value any
			if v != nil {
				_ = json.Unmarshal(*v, &value)
			}
			out[k] = value
		}
		return out
	}
	return reflect.DeepEqual(decode(a), decode(b))
}

func union2[V any](a, b map[string]V) map[string]bool {
	out := make(map[string]bool, len(a)+len(b))
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// ConfigMapMoveStore keeps the moves in one ConfigMap, a key per space,
// written by server-side apply (field manager iris) by the leader only.
type ConfigMapMoveStore struct {
	clientset kubernetes.Interface
	namespace string
	name      string
}

// NewConfigMapMoveStore keeps the moves in ConfigMap namespace/name.
func NewConfigMapMoveStore(clientset kubernetes.Interface, namespace, name string) *ConfigMapMoveStore {
	return &ConfigMapMoveStore{clientset: clientset, namespace: namespace, name: name}
}

// Load reads the moves; a missing ConfigMap is no moves.
func (s *ConfigMapMoveStore) Load(ctx context.Context) (Moves, error) {
	cm, err := s.clientset.CoreV1().ConfigMaps(s.namespace).Get(ctx, s.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Moves{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading ConfigMap %s/%s: %w", s.namespace, s.name, err)
	}
	moves, _, bad := decodeMoves(cm.Data)
	if len(bad) > 0 {
		// Dropping a move could leave a copy running twice for good:
		// refuse to go on until an operator repaired the entry.
		return nil, fmt.Errorf("unreadable migration entries in ConfigMap %s/%s: %v", s.namespace, s.name, bad)
	}
	return moves, nil
}

// Save applies the moves as the ConfigMap's whole data: keys of spaces
// whose moves are over drop out.
func (s *ConfigMapMoveStore) Save(ctx context.Context, moves Moves, targets map[string]Side) error {
	data, err := encodeMoves(moves, targets)
	if err != nil {
		return err
	}
	cm := corev1ac.ConfigMap(s.name, s.namespace).WithData(data)
	_, err = s.clientset.CoreV1().ConfigMaps(s.namespace).Apply(ctx, cm, metav1.ApplyOptions{FieldManager: "iris", Force: true})
	if err != nil {
		return fmt.Errorf("applying ConfigMap %s/%s: %w", s.namespace, s.name, err)
	}
	return nil
}
