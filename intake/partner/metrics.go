package partner

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Freshness exports, per partner, when its data last arrived and how often
// an operator expects it (partner set --expect-ingest-every), read at
// scrape time: the FlatfilerPartnerIngestOverdue alert compares the two.
type Freshness struct {
	Partners *Registry
	// LastDelivered is, per partner, when its last file, batch or harvest
	// was applied (warehouse.Store.LastDelivered).
	LastDelivered func(context.Context) (map[string]time.Time, error)
	// Owns, if set, says which partners this warehouse holds (a cluster's
	// shard): the others' deliveries are another shard's to report.
	Owns func(id string) bool

	last, expected *prometheus.Desc
}

// NewFreshness makes the collector; register it.
func NewFreshness(partners *Registry, lastDelivered func(context.Context) (map[string]time.Time, error)) *Freshness {
	return &Freshness{
		Partners: partners, LastDelivered: lastDelivered,
		last: prometheus.NewDesc("flatfiler_partner_last_ingest_timestamp_seconds",
			"When the partner's last file, push batch or pull harvest was applied; for a partner with an expectation that never sent one, when it was added.",
			[]string{"partner"}, nil),
		expected: prometheus.NewDesc("flatfiler_partner_expected_ingest_interval_seconds",
			"The longest an operator expects between two deliveries of the partner applied (partner set --expect-ingest-every); absent: no expectation.",
			[]string{"partner"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (f *Freshness) Describe(ch chan<- *prometheus.Desc) {
	ch <- f.last
	ch <- f.expected
}

// Collect implements prometheus.Collector. A failed read of the warehouse
// is reported as the scrape's error, not as partners gone quiet.
func (f *Freshness) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	last, err := f.LastDelivered(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(f.last, err)
		return
	}
	for _, id := range f.Partners.IDs() {
		if f.Owns != nil && !f.Owns(id) {
			continue
		}
		p, ok := f.Partners.Get(id)
		if !ok {
			continue
		}
		at, delivered := last[id]
		if p.ExpectIngestEvery > 0 {
			ch <- prometheus.MustNewConstMetric(f.expected, prometheus.GaugeValue, time.Duration(p.ExpectIngestEvery).Seconds(), id)
			if !delivered {
				at, delivered = p.CreatedAt, true
			}
		}
		if delivered {
			ch <- prometheus.MustNewConstMetric(f.last, prometheus.GaugeValue, float64(at.UnixNano())/1e9, id)
		}
	}
}
