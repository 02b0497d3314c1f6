package k8s

import (
	"encoding/json"
	"hash/maphash"
	"maps"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/utils/clock"
)

// shareGeneration is how long a value the table has not handed out again
// stays in it: past that, it only stops being shared with objects that
// arrive later (those already cached keep theirs).
const shareGeneration = 10 * time.Minute

// shareTable hands out one copy of equal values, so that the cached objects
// holding them share it: the pods of an LRP have equal annotations, an LRP's
// StatefulSet and NetworkPolicy equal labels and selectors. Values are
// found by a hash and confirmed by equal. It keeps two generations and
// drops the older at each turn, so the values of deleted objects are
// released within two generations instead of living as long as Iris.
// Values handed out are shared with other objects and must not be modified
// (no reader of the cache modifies what it reads). Not safe for concurrent
// use: the leaner locks around it.
type shareTable[T any] struct {
	clock             clock.PassiveClock
	equal             func(a, b T) bool
	turned            time.Time
	current, previous *shareGenerationOf[T]
}

// shareGenerationOf holds the values of one generation by hash: most hashes
// have one value (an LRP's labels are unique to it), kept in first without
// a slice of their own; the rare others collide into more. A slice per
// hash cost 50 bytes per LRP and map.
type shareGenerationOf[T any] struct {
	first map[uint64]T
	more  map[uint64][]T
}

func newShareGeneration[T any]() *shareGenerationOf[T] {
	return &shareGenerationOf[T]{first: map[uint64]T{}}
}

// find returns the generation's value equal to v, if any.
func (g *shareGenerationOf[T]) find(hash uint64, v T, equal func(a, b T) bool) (T, bool) {
	if g == nil {
		return v, false
	}
	if s, ok := g.first[hash]; ok && equal(s, v) {
		return s, true
	}
	for _, s := range g.more[hash] {
		if equal(s, v) {
			return s, true
		}
	}
	return v, false
}

func (g *shareGenerationOf[T]) add(hash uint64, v T) {
	if _, taken := g.first[hash]; !taken {
		g.first[hash] = v
		return
	}
	if g.more == nil {
		g.more = map[uint64][]T{}
	}
	g.more[hash] = append(g.more[hash], v)
}

func newShareTable[T any](clock clock.PassiveClock, equal func(a, b T) bool) *shareTable[T] {
	return &shareTable[T]{clock: clock, equal: equal, turned: clock.Now(), current: newShareGeneration[T]()}
}

// share returns the table's copy of v (hash is v's), adding v if it has none.
func (t *shareTable[T]) share(hash uint64, v T) T {
	if now := t.clock.Now(); now.Sub(t.turned) >= shareGeneration {
		t.previous, t.current, t.turned = t.current, newShareGeneration[T](), now
	}
	if s, ok := t.current.find(hash, v, t.equal); ok {
		return s
	}
	if s, ok := t.previous.find(hash, v, t.equal); ok {
		t.current.add(hash, s)
		return s
	}
	t.current.add(hash, v)
	return v
}

// sharedStringMaps shares label and annotation maps.
type sharedStringMaps struct {
	seed  maphash.Seed
	table *shareTable[map[string]string]
}

func newSharedStringMaps(clock clock.PassiveClock) *sharedStringMaps {
	return &sharedStringMaps{seed: maphash.MakeSeed(), table: newShareTable(clock, maps.Equal[map[string]string])}
}

// share returns the shared copy of m (nil and empty maps as they are).
func (s *sharedStringMaps) share(m map[string]string) map[string]string {
	if len(m) == 0 {
		return m
	}
	// Order-independent: the sum of each entry's hash.
	var sum uint64
	var h maphash.Hash
	h.SetSeed(s.seed)
	for k, v := range m {
		h.Reset()
		h.WriteString(k)
		h.WriteByte(0)
		h.WriteString(v)
		sum += h.Sum64()
	}
	return s.table.share(sum, m)
}

// egressRules are a NetworkPolicy's egress rules and policy types.
type egressRules struct {
	rules []networkingv1.NetworkPolicyEgressRule
	types []networkingv1.PolicyType
}

// sharedEgress shares NetworkPolicies' egress rules.
type sharedEgress struct {
	seed  maphash.Seed
	table *shareTable[*egressRules]
}

func newSharedEgress(clock clock.PassiveClock) *sharedEgress {
	return &sharedEgress{seed: maphash.MakeSeed(), table: newShareTable(clock, func(a, b *egressRules) bool {
		return equality.Semantic.DeepEqual(a.rules, b.rules) && equality.Semantic.DeepEqual(a.types, b.types)
	})}
}

// share returns the shared copy of rules and types (a copy of their own
// if they cannot be hashed, which encoding them as JSON never fails to).
// One pointer to them is 40 bytes less per policy than their two slices.
func (s *sharedEgress) share(rules []networkingv1.NetworkPolicyEgressRule, types []networkingv1.PolicyType) *egressRules {
	data, err := json.Marshal(egressKey{rules, types})
	if err != nil {
		return &egressRules{rules, types}
	}
	return s.table.share(maphash.Bytes(s.seed, data), &egressRules{rules, types})
}

type egressKey struct {
	Rules []networkingv1.NetworkPolicyEgressRule `json:"r"`
	Types []networkingv1.PolicyType              `json:"t"`
}
