package spaces

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// MoveState is where one LRP's move between the sides stands.
type MoveState string

const (
	// Copying: the LRP runs on From, which owns it (CC's calls and lists
	// go there); a copy with the same process guid is desired on To and
	// its instances are awaited.
	Copying MoveState = "copying"
	// Switched: the copy on To runs every instance, routable; To owns the
	// LRP and the copy on From is being removed.
	Switched MoveState = "switched"
)

// Move is one LRP on its way from one side to the other.
type Move struct {
	From  Side      `json:"from"`
	To    Side      `json:"to"`
	State MoveState `json:"state"`
	// Since is when the move entered State.
	Since time.Time `json:"since"`
	// Error is the last failure of a step, retried with backoff.
	Error string `json:"error,omitempty"`
	// Org is the LRP's org, kept so the placement of the space can be
	// read even once the LRP is gone from both sides.
	Org string `json:"org,omitempty"`
}

// Owner is the side whose copy is the LRP for CC: From until the copy on
// To took over.
func (m Move) Owner() Side {
	if m.State == Switched {
		return m.To
	}
	return m.From
}

// SpaceMigration is the migration record of one space, as kept in the
// migrations ConfigMap under "space.<guid>": the side the space moves to
// and each LRP still on its way.
type SpaceMigration struct {
	Target Side             `json:"target"`
	LRPs   map[string]*Move `json:"lrps"`
}

// Moves are the LRPs being moved, by process guid, and the space of each.
type Moves map[string]SpaceMove

// SpaceMove is a Move with its space.
type SpaceMove struct {
	Space string
	Move
}

// encodeMoves is the ConfigMap data for moves: one key per space.
func encodeMoves(moves Moves, targets map[string]Side) (map[string]string, error) {
	bySpace := map[string]*SpaceMigration{}
	for guid, m := range moves {
		s := bySpace[m.Space]
		if s == nil {
			s = &SpaceMigration{Target: targets[m.Space], LRPs: map[string]*Move{}}
			bySpace[m.Space] = s
		}
		move := m.Move
		s.LRPs[guid] = &move
	}
	data := make(map[string]string, len(bySpace))
	for space, s := range bySpace {
		encoded, err := json.Marshal(s)
		if err != nil {
			return nil, fmt.Errorf("encoding the migration of space %q: %w", space, err)
		}
		data[KeySpacePrefix+space] = string(encoded)
	}
	return data, nil
}

// decodeMoves reads the ConfigMap data; a key it cannot read is reported
// and skipped, so one bad entry does not stop every other migration.
func decodeMoves(data map[string]string) (Moves, map[string]Side, map[string]error) {
	moves, targets, bad := Moves{}, map[string]Side{}, map[string]error{}
	for key, value := range data {
		space, ok := strings.CutPrefix(key, KeySpacePrefix)
		if !ok {
			bad[key] = fmt.Errorf("not a space key")
			continue
		}
		var s SpaceMigration
		if err := json.Unmarshal([]byte(value), &s); err != nil {
			bad[key] = err
			continue
		}
		targets[space] = s.Target
		for guid, m := range s.LRPs {
			if m == nil {
				continue
			}
			moves[guid] = SpaceMove{Space: space, Move: *m}
		}
	}
	return moves, targets, bad
}

// MigrationsConfigMap names the ConfigMap the migrations are kept in,
// beside the placement ConfigMap.
func MigrationsConfigMap(placementConfigMap string) string {
	return placementConfigMap + "-migrations"
}

// MoveWatch is every replica's view of the moves, from the migrations
// ConfigMap the leader's Migrator writes: the router asks it which side
// owns an LRP being moved.
type MoveWatch struct {
	logger   lager.Logger
	name     string
	informer cache.SharedIndexInformer
	factory  informers.SharedInformerFactory

	mu    sync.RWMutex
	moves Moves
}

// NewMoveWatch watches ConfigMap name in namespace.
func NewMoveWatch(logger lager.Logger, clientset kubernetes.Interface, namespace, name string) (*MoveWatch, error) {
	w := &MoveWatch{logger: logger.Session("space-moves", lager.Data{"configmap": namespace + "/" + name}), name: name, moves: Moves{}}
	w.factory = informers.NewSharedInformerFactoryWithOptions(clientset, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}))
	w.informer = w.factory.Core().V1().ConfigMaps().Informer()
	_, err := w.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    w.load,
		UpdateFunc: func(_, obj any) { w.load(obj) },
		DeleteFunc: func(any) { w.set(Moves{}) },
	})
	if err != nil {
		return nil, fmt.Errorf("watching the migrations ConfigMap: %w", err)
	}
	return w, nil
}

func (w *MoveWatch) load(obj any) {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok || cm.Name != w.name {
		return
	}
	moves, _, bad := decodeMoves(cm.Data)
	for key, err := range bad {
		w.logger.Error("ignoring-migration", err, lager.Data{"key": key})
	}
	w.set(moves)
}

func (w *MoveWatch) set(moves Moves) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.moves = moves
}

// Owner is the side owning processGUID while it is being moved; ok is
// false when it is not being moved.
func (w *MoveWatch) Owner(processGUID string) (Side, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	m, ok := w.moves[processGUID]
	if !ok {
		return "", false
	}
	return m.Owner(), true
}

// Snapshot is a copy of the moves.
func (w *MoveWatch) Snapshot() Moves {
	w.mu.RLock()
	defer w.mu.RUnlock()
	out := make(Moves, len(w.moves))
	for k, v := range w.moves {
		out[k] = v
	}
	return out
}

// Count is the number of moves in state (any state if empty), only the
// failing ones if failing.
func (w *MoveWatch) Count(state MoveState, failing bool) int {
	w.mu.RLock()
	defer w.mu.RUnlock()
	n := 0
	for _, m := range w.moves {
		if (state == "" || m.State == state) && (!failing || m.Error != "") {
			n++
		}
	}
	return n
}

// Run watches until signalled; ready once the ConfigMap was read, so no
// call is routed before the moves under way are known.
func (w *MoveWatch) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	stop := make(chan struct{})
	defer close(stop)
	w.factory.Start(stop)
	synced := make(chan bool, 1)
	go func() { synced <- cache.WaitForCacheSync(stop, w.informer.HasSynced) }()
	select {
	case <-signals:
		return nil
	case ok := <-synced:
		if !ok {
			return fmt.Errorf("migrations ConfigMap did not sync")
		}
	}
	close(ready)
	<-signals
	return nil
}

// MoveCounts counts moves of one space by state.
type MoveCounts struct {
	Copying, Switched, Failing int
}

// CountMoves counts the moves of each space.
func CountMoves(moves Moves) map[string]MoveCounts {
	out := map[string]MoveCounts{}
	for _, m := range moves {
		c := out[m.Space]
		switch m.State {
		case Copying:
			c.Copying++
		case Switched:
			c.Switched++
		}
		if m.Error != "" {
			c.Failing++
		}
		out[m.Space] = c
	}
	return out
}

// sortedGUIDs is the guids of moves, sorted.
func sortedGUIDs[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
