package serve

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the server's Prometheus metrics, in its own registry.
type metrics struct {
	reg              *prometheus.Registry
	requests         *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	promptTokens     prometheus.Counter
	completionTokens prometheus.Counter
	ttft             prometheus.Histogram
	queueWait        prometheus.Histogram
	tokensPerSecond  prometheus.Histogram
	queueDepth       prometheus.Gauge
	activeSessions   prometheus.Gauge
	slots            prometheus.Gauge
	loaded           prometheus.Gauge
	batchRows        prometheus.Histogram
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gemmac_http_requests_total",
			Help: "HTTP requests by endpoint and status code (499: the client went away first).",
		}, []string{"endpoint", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gemmac_http_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its response.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 16),
		}, []string{"endpoint"}),
		promptTokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gemmac_prompt_tokens_total",
			Help: "Prompt tokens of the generations run.",
		}),
		completionTokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gemmac_completion_tokens_total",
			Help: "Tokens generated.",
		}),
		ttft: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gemmac_time_to_first_token_seconds",
			Help:    "Time from a request's arrival (queueing included) to its first generated token.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gemmac_queue_wait_seconds",
			Help:    "Time a request waited for a slot.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 22),
		}),
		tokensPerSecond: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gemmac_decode_tokens_per_second",
			Help:    "Decode speed of each generation of two tokens or more (tokens after the first / time after the first).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gemmac_queue_depth",
			Help: "Requests waiting for a slot.",
		}),
		activeSessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gemmac_active_sessions",
			Help: "Slots (sessions) running a generation.",
		}),
		slots: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gemmac_slots",
			Help: "Slots (sessions) the server runs at most at once.",
		}),
		loaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gemmac_model_loaded",
			Help: "1 once the model is loaded and requests are served.",
		}),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gemmac_decode_batch_rows",
			Help:    "Generations in each batched decode step (engines with a batched step, more than one slot).",
			Buckets: prometheus.LinearBuckets(1, 1, 8),
		}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.promptTokens, m.completionTokens, m.ttft, m.queueWait,
		m.tokensPerSecond, m.queueDepth, m.activeSessions, m.slots, m.loaded, m.batchRows,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
