package server

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"fhirdeid/pipeline"
)

// riskBar is one bar of a run page's class-size histogram, in SVG units.
type riskBar struct {
	Size             string
	Classes, Records int64
	Y, Width         int
	LabelY           int
}

// riskChart lays out the class-size histogram of a run's risk report as
// horizontal bars (patients per class size), drawn as SVG because the
// dashboard's content security policy forbids inline styles.
type riskChart struct {
	Width, Height, Left, BarWidth int
	Bars                          []riskBar
}

func newRiskChart(r *pipeline.RiskReport) *riskChart {
	if r == nil || r.Records == 0 {
		return nil
	}
	const left, barArea, rowH = 60, 420, 22
	c := &riskChart{Width: left + barArea + 140, Left: left, BarWidth: barArea}
	var most int64
	for _, b := range r.Histogram {
		most = max(most, b.Records)
	}
	for i, b := range r.Histogram {
		w := 0
		if most > 0 {
			w = int(float64(barArea) * float64(b.Records) / float64(most))
		}
		if b.Records > 0 && w < 1 {
			w = 1
		}
		y := 6 + i*rowH
		c.Bars = append(c.Bars, riskBar{Size: b.Size, Classes: b.Classes, Records: b.Records, Y: y, Width: w, LabelY: y + 12})
	}
	c.Height = 12 + len(c.Bars)*rowH
	return c
}

// percent formats a share in [0, 1] as a percentage.
func percent(f float64) string { return fmt.Sprintf("%.1f %%", 100*f) }

func riskOf(r *pipeline.Report) *riskChart {
	if r == nil {
		return nil
	}
	return newRiskChart(r.Risk)
}

// assuranceMetrics count what the privacy checks of runs found.
type assuranceMetrics struct {
	leaks *prometheus.CounterVec
	minK  *prometheus.GaugeVec
}

func newAssuranceMetrics(reg *prometheus.Registry, names []string) *assuranceMetrics {
	a := &assuranceMetrics{
		leaks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fhirdeid_audit_leaks_total",
			Help: "Identifiers of the input found in the de-identified output by the leak audit of runs (counts only)."}, []string{"pipeline"}),
		minK: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fhirdeid_risk_min_k",
			Help: "Smallest equivalence class of the patients of the pipeline's last analysed run (k-anonymity)."}, []string{"pipeline"}),
	}
	reg.MustRegister(a.leaks, a.minK)
	for _, n := range names {
		a.leaks.WithLabelValues(n)
	}
	return a
}

// observe records the checks of a run that ended with rep or err (a run
// stopped by its checks carries its report in a pipeline.AssuranceError).
func (a *assuranceMetrics) observe(name string, rep *pipeline.Report, err error) {
	var ae *pipeline.AssuranceError
	if rep == nil && errors.As(err, &ae) {
		rep = ae.Report
	}
	if rep == nil {
		return
	}
	if rep.Audit != nil && rep.Audit.Leaks > 0 {
		a.leaks.WithLabelValues(name).Add(float64(rep.Audit.Leaks))
	}
	if rep.Risk != nil && rep.Risk.Records > 0 {
		a.minK.WithLabelValues(name).Set(float64(rep.Risk.MinK))
	}
}
