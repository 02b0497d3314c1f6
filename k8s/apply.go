package k8s

import (
	"context"
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// FieldManager is the field manager of every server-side apply Iris makes.
// One manager for Desire and the reconciler: both write the whole object, so
// fields either of them leaves out are removed again.
const FieldManager = "iris"

// Apply writes obj (a StatefulSet, Secret, NetworkPolicy or
// PodDisruptionBudget, complete as Iris wants it) with server-side apply,
// creating it if needed, and returns the object as stored. Ownership is forced: Iris is the only writer of
// these objects, so a field someone else took over is taken back.
func Apply(ctx context.Context, clientset kubernetes.Interface, obj metav1.Object) (metav1.Object, error) {
	var (
		apiVersion, kind string
		patch            func(name string, data []byte, opts metav1.PatchOptions) (metav1.Object, error)
	)
	ns := obj.GetNamespace()
	switch obj.(type) {
	case *appsv1.StatefulSet:
		apiVersion, kind = "apps/v1", "StatefulSet"
		patch = func(name string, data []byte, opts metav1.PatchOptions) (metav1.Object, error) {
			return clientset.AppsV1().StatefulSets(ns).Patch(ctx, name, types.ApplyPatchType, data, opts)
		}
	case *corev1.Secret:
		apiVersion, kind = "v1", "Secret"
		patch = func(name string, data []byte, opts metav1.PatchOptions) (metav1.Object, error) {
			return clientset.CoreV1().Secrets(ns).Patch(ctx, name, types.ApplyPatchType, data, opts)
		}
	case *networkingv1.NetworkPolicy:
		apiVersion, kind = "networking.k8s.io/v1", "NetworkPolicy"
		patch = func(name string, data []byte, opts metav1.PatchOptions) (metav1.Object, error) {
			return clientset.NetworkingV1().NetworkPolicies(ns).Patch(ctx, name, types.ApplyPatchType, data, opts)
		}
	case *policyv1.PodDisruptionBudget:
		apiVersion, kind = "policy/v1", "PodDisruptionBudget"
		patch = func(name string, data []byte, opts metav1.PatchOptions) (metav1.Object, error) {
			return clientset.PolicyV1().PodDisruptionBudgets(ns).Patch(ctx, name, types.ApplyPatchType, data, opts)
		}
	default:
		return nil, fmt.Errorf("apply: unsupported type %T", obj)
	}
	data, err := applyConfiguration(obj, apiVersion, kind)
	if err != nil {
		return nil, fmt.Errorf("encoding %s %s/%s: %w", kind, ns, obj.GetName(), err)
	}
	return patch(obj.GetName(), data, metav1.PatchOptions{FieldManager: FieldManager, Force: ptr.To(true)})
}

// applyConfiguration encodes obj as an apply configuration: the typed object
// with its kind, without status and the server-set metadata, which an apply
// must not claim.
func applyConfiguration(obj metav1.Object, apiVersion, kind string) ([]byte, error) {
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var fields map[string]any
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, err
	}
	fields["apiVersion"], fields["kind"] = apiVersion, kind
	delete(fields, "status")
	if meta, ok := fields["metadata"].(map[string]any); ok {
		for _, key := range []string{"creationTimestamp", "resourceVersion", "uid", "generation", "managedFields", "deletionTimestamp"} {
			delete(meta, key)
		}
	}
	return json.Marshal(fields)
}
