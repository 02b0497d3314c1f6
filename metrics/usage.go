package metrics

import (
	"context"
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/iris-cf/iris/k8s"
)

// KubeUsage reads usage through the API server: metrics.k8s.io (served by
// metrics-server) and, when enabled, each node's kubelet stats summary via
// the node proxy.
type KubeUsage struct {
	clientset    kubernetes.Interface
	metrics      metricsclient.Interface
	statsSummary bool
}

// NewKubeUsage returns a Usage backed by the API server. diskFromStatsSummary
// (metrics.disk_from_stats_summary) allows reading the kubelets' stats
// summaries, which needs get on nodes/proxy: that reaches the whole kubelet
// API of every node, so it is an operator's explicit choice.
func NewKubeUsage(clientset kubernetes.Interface, metrics metricsclient.Interface, diskFromStatsSummary bool) *KubeUsage {
	return &KubeUsage{clientset: clientset, metrics: metrics, statsSummary: diskFromStatsSummary}
}

// PodMetrics lists the app pods' metrics of one namespace in one request.
func (u *KubeUsage) PodMetrics(ctx context.Context, namespace string) ([]metricsv1beta1.PodMetrics, error) {
	selector := labels.SelectorFromSet(labels.Set{k8s.LabelSourceType: k8s.SourceTypeApp}).String()
	list, err := u.metrics.MetricsV1beta1().PodMetricses(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("listing pod metrics in %s: %w", namespace, err)
	}
	return list.Items, nil
}

// StatsSummary reads a node's kubelet stats summary through the node proxy.
// When that is not enabled it asks nothing and returns an empty summary, so
// no pod's disk usage is known and disk is reported as 0.
func (u *KubeUsage) StatsSummary(ctx context.Context, node string) (*statsv1alpha1.Summary, error) {
	if !u.statsSummary {
		return &statsv1alpha1.Summary{}, nil
	}
	raw, err := u.clientset.CoreV1().RESTClient().Get().
		Resource("nodes").Name(node).SubResource("proxy").Suffix("stats", "summary").
		DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading stats summary of node %s: %w", node, err)
	}
	var summary statsv1alpha1.Summary
	if err := json.Unmarshal(raw, &summary); err != nil {
		return nil, fmt.Errorf("decoding stats summary of node %s: %w", node, err)
	}
	return &summary, nil
}
