package spaces

import (
	"context"
	"fmt"
	"sort"

	"code.cloudfoundry.org/bbs/models"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// PlacementKey is the ConfigMap key for a scope: "space" or "org" with a
// guid, or "default" without one.
func PlacementKey(scope, guid string) (string, error) {
	switch {
	case scope == "default" && guid == "":
		return KeyDefault, nil
	case scope == "space" && guid != "":
		return KeySpacePrefix + guid, nil
	case scope == "org" && guid != "":
		return KeyOrgPrefix + guid, nil
	}
	return "", fmt.Errorf("want `space <guid>`, `org <guid>` or `default`, not %q %q", scope, guid)
}

// SetPlacement writes key (PlacementKey) into the placement ConfigMap,
// creating it when missing; a nil side removes the key. Every Iris replica
// applies it to the next desire.
func SetPlacement(ctx context.Context, clientset kubernetes.Interface, namespace, name, key string, side *Side) error {
	configMaps := clientset.CoreV1().ConfigMaps(namespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := configMaps.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			if side == nil {
				return nil
			}
			_, err = configMaps.Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
				Data:       map[string]string{key: string(*side)},
			}, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		if side == nil {
			delete(cm.Data, key)
		} else {
			cm.Data[key] = string(*side)
		}
		_, err = configMaps.Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
}

// SpaceState is what runs where for one space.
type SpaceState struct {
	SpaceGUID string
	// Placement is where new LRPs of the space go.
	Placement Side
	// LRPs and Instances (desired) on each side.
	KubernetesLRPs, KubernetesInstances int
	DiegoLRPs, DiegoInstances           int
	// Moving counts the space's LRPs being moved, by state.
	Moving MoveCounts
}

// State names where the space's LRPs are: "kubernetes" or "diego" when
// all run on the side it is placed on, "migrating" while some are being
// moved or still wait on the other side, "empty" without LRPs.
func (s SpaceState) State() string {
	onPlacement, onOther := s.KubernetesLRPs, s.DiegoLRPs
	if s.Placement == Diego {
		onPlacement, onOther = s.DiegoLRPs, s.KubernetesLRPs
	}
	switch {
	case onOther > 0 || s.Moving.Copying+s.Moving.Switched > 0:
		return "migrating"
	case onPlacement > 0:
		return string(s.Placement)
	}
	return "empty"
}

// Report counts the LRPs and desired instances of each space on both
// sides (kubernetes and diego as listed by their DesiredLRPs) and the
// placement of each, spaces named in the placement included, with the
// moves under way; sorted by space guid. An LRP being moved counts on
// both sides.
func Report(kubernetes, diego []*models.DesiredLRP, placement Placement, placedSpaces []string, moves Moves) []SpaceState {
	states := map[string]*SpaceState{}
	state := func(space string) *SpaceState {
		s := states[space]
		if s == nil {
			s = &SpaceState{SpaceGUID: space}
			states[space] = s
		}
		return s
	}
	orgs := map[string]string{}
	for _, lrp := range kubernetes {
		org, space := spaceOf(lrp)
		orgs[space] = org
		s := state(space)
		s.KubernetesLRPs++
		s.KubernetesInstances += int(lrp.Instances)
	}
	for _, lrp := range diego {
		org, space := spaceOf(lrp)
		orgs[space] = org
		s := state(space)
		s.DiegoLRPs++
		s.DiegoInstances += int(lrp.Instances)
	}
	for _, space := range placedSpaces {
		state(space)
	}
	for space, counts := range CountMoves(moves) {
		state(space).Moving = counts
	}
	out := make([]SpaceState, 0, len(states))
	for space, s := range states {
		s.Placement = placement.SideFor(orgs[space], space)
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SpaceGUID < out[j].SpaceGUID })
	return out
}
