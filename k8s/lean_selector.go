package k8s

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// An LRP's StatefulSet, NetworkPolicy and PodDisruptionBudget select its
// pods by its guid and version labels, which their own labels carry too.
// A map of two labels costs as much as one of eight (336 bytes: Go maps
// allocate eight slots at least), so the cached records keep such a
// selector as a mark (keptSelector) and make it again when read.

// keptSelector is what a cached record keeps of selector: nil and true
// when it is the guid and version labels of labels (lrpSelector makes it
// again), selector itself otherwise.
func keptSelector(selector *metav1.LabelSelector, labels map[string]string) (*metav1.LabelSelector, bool) {
	if selector == nil || len(selector.MatchExpressions) > 0 || len(selector.MatchLabels) != 2 {
		return selector, false
	}
	guid, version := labels[LabelGUID], labels[LabelVersion]
	if guid == "" || version == "" || selector.MatchLabels[LabelGUID] != guid || selector.MatchLabels[LabelVersion] != version {
		return selector, false
	}
	return nil, true
}

// lrpSelector is the selector of an LRP's objects labelled labels.
func lrpSelector(labels map[string]string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{LabelGUID: labels[LabelGUID], LabelVersion: labels[LabelVersion]}}
}
