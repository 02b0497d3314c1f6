package spaces

import (
	"fmt"
	"os"
	"sync"

	"code.cloudfoundry.org/lager/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Keys of the placement ConfigMap: "default", "org.<org guid>" and
// "space.<space guid>", each "diego" or "kubernetes". A space's own
// setting wins over its org's, which wins over the default.
const (
	KeyDefault     = "default"
	KeyOrgPrefix   = "org."
	KeySpacePrefix = "space."
)

// ConfigMapPlacement reads the backend of each space from one ConfigMap,
// kept in Kubernetes so that every Iris replica and every restart sees the
// same placement, and an operator's change applies to the next desire.
type ConfigMapPlacement struct {
	logger   lager.Logger
	name     string
	fallback Side
	informer cache.SharedIndexInformer
	factory  informers.SharedInformerFactory

	mu    sync.RWMutex
	sides map[string]Side
}

// NewConfigMapPlacement watches ConfigMap name in namespace; without the
// ConfigMap (or a key that applies) every space goes to fallback.
func NewConfigMapPlacement(logger lager.Logger, clientset kubernetes.Interface, namespace, name string, fallback Side) (*ConfigMapPlacement, error) {
	p := &ConfigMapPlacement{logger: logger.Session("space-placement", lager.Data{"configmap": namespace + "/" + name}), name: name, fallback: fallback}
	p.factory = informers.NewSharedInformerFactoryWithOptions(clientset, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}))
	p.informer = p.factory.Core().V1().ConfigMaps().Informer()
	_, err := p.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { p.load(obj) },
		UpdateFunc: func(_, obj any) { p.load(obj) },
		DeleteFunc: func(obj any) {
			if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tombstone.Obj
			}
			if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Name == p.name {
				p.set(nil)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("watching the placement ConfigMap: %w", err)
	}
	return p, nil
}

// Run watches until signalled; it is ready once the ConfigMap was read, so
// no desire is placed before the operator's placement is known.
func (p *ConfigMapPlacement) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	stop := make(chan struct{})
	defer close(stop)
	p.factory.Start(stop)
	synced := make(chan bool, 1)
	go func() { synced <- cache.WaitForCacheSync(stop, p.informer.HasSynced) }()
	select {
	case <-signals:
		return nil
	case ok := <-synced:
		if !ok {
			return fmt.Errorf("placement ConfigMap did not sync")
		}
	}
	close(ready)
	<-signals
	return nil
}

func (p *ConfigMapPlacement) load(obj any) {
	// The field selector already watches only this ConfigMap; checking
	// the name as well keeps any other out, whatever the watch delivers.
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok || cm.Name != p.name {
		return
	}
	sides := StaticPlacement{Sides: map[string]Side{}, Fallback: p.fallback}
	for key, value := range cm.Data {
		side, err := ParseSide(value)
		if err != nil {
			// One bad line must not move every other space: skip it, loudly.
			p.logger.Error("ignoring-placement", err, lager.Data{"key": key})
			continue
		}
		sides.Sides[key] = side
	}
	p.set(sides.Sides)
}

// StaticPlacement is a placement read once: the ConfigMap's valid entries
// and the fallback.
type StaticPlacement struct {
	Sides    map[string]Side
	Fallback Side
}

// SideFor is the space's own setting, its org's, the default, or the fallback.
func (s StaticPlacement) SideFor(orgGUID, spaceGUID string) Side {
	var keys []string
	if spaceGUID != "" {
		keys = append(keys, KeySpacePrefix+spaceGUID)
	}
	if orgGUID != "" {
		keys = append(keys, KeyOrgPrefix+orgGUID)
	}
	for _, key := range append(keys, KeyDefault) {
		if side, ok := s.Sides[key]; ok {
			return side
		}
	}
	return s.Fallback
}

func (p *ConfigMapPlacement) set(sides map[string]Side) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sides = sides
	p.logger.Info("loaded", lager.Data{"entries": len(sides)})
}

// SideFor is the space's backend: its own setting, its org's, the
// ConfigMap's default, or the configured fallback.
func (p *ConfigMapPlacement) SideFor(orgGUID, spaceGUID string) Side {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return StaticPlacement{Sides: p.sides, Fallback: p.fallback}.SideFor(orgGUID, spaceGUID)
}
