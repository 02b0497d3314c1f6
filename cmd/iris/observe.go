package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/iris-cf/iris/logs"
	"github.com/iris-cf/iris/ops"
)

// counter adapts a uint64 accessor for a Prometheus CounterFunc.
func counter(fn func() uint64) func() float64 { return func() float64 { return float64(fn()) } }

// reportQueue is what the events reporters expose about their work queue.
type reportQueue interface {
	QueueDepth() int
	Retries() uint64
	Failures() uint64
}

// observeQueue exports a reporter's queue depth, retried and given-up
// callbacks to CC.
func observeQueue(s *ops.Server, reporter string, q reportQueue) {
	labels := prometheus.Labels{"reporter": reporter}
	s.GaugeFunc("reporter_queue_depth", "Objects waiting to be reported to Cloud Controller.", labels, func() float64 { return float64(q.QueueDepth()) })
	s.Registry().MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "iris", Name: "callbacks_retried_total",
			Help: "Callbacks to Cloud Controller retried after an error.", ConstLabels: labels}, counter(q.Retries)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "iris", Name: "callbacks_failed_total",
			Help: "Callbacks to Cloud Controller given up after the last retry.", ConstLabels: labels}, counter(q.Failures)),
	)
}

// observeSender exports what the Loggregator sender delivered and dropped.
func observeSender(s *ops.Server, sender *logs.Sender) {
	s.CounterFunc("loggregator_envelopes_sent_total", "Envelopes (log lines and metrics) Loggregator's stream accepted.", counter(sender.Sent))
	s.CounterFunc("loggregator_envelopes_dropped_total", "Envelopes dropped because Loggregator was too slow or down and the buffer was full.", counter(sender.Dropped))
	s.CounterFunc("loggregator_send_failures_total", "Batch sends to Loggregator that failed and were retried.", counter(sender.SendFailures))
}
