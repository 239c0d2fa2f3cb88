package sim

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteFiles writes the report into dir: report.html, metrics.json and
// timeseries.csv.
func (r *Result) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create report dir: %w", err)
	}
	metrics, err := r.MetricsJSON()
	if err != nil {
		return err
	}
	var csvBuf, html bytes.Buffer
	if err := r.WriteCSV(&csvBuf); err != nil {
		return err
	}
	if err := r.WriteHTML(&html); err != nil {
		return err
	}
	for name, b := range map[string][]byte{"metrics.json": metrics, "timeseries.csv": csvBuf.Bytes(), "report.html": html.Bytes()} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// MetricsJSON returns metrics.json: indented, keys in a fixed order, so
// that two runs of one seed compare byte for byte.
func (r *Result) MetricsJSON() ([]byte, error) {
	b, err := json.MarshalIndent(r.Metrics, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode metrics: %w", err)
	}
	return append(b, '\n'), nil
}

// WriteCSV writes the time series, one row per sample and intent type.
func (r *Result) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"t_seconds", "intent", "price_index_microcredits", "intents", "bids", "awards", "fills",
		"active_sellers", "volume_microcredits", "demand"})
	for _, s := range r.Series {
		cw.Write([]string{strconv.FormatFloat(s.T, 'f', -1, 64), s.Intent, strconv.FormatInt(s.PriceIndexMicrocredits, 10),
			strconv.Itoa(s.Intents), strconv.Itoa(s.Bids), strconv.Itoa(s.Awards), strconv.Itoa(s.Fills),
			strconv.Itoa(s.ActiveSellers), strconv.FormatInt(s.VolumeMicrocredits, 10), strconv.FormatFloat(s.Demand, 'f', -1, 64)})
	}
	cw.Flush()
	return cw.Error()
}

// credits formats microcredits as credits.
func credits(µ int64) string {
	return strconv.FormatFloat(float64(µ)/1e6, 'f', 2, 64)
}

// WriteSummary writes the summary table a person reads at the end of a run.
func (r *Result) WriteSummary(w io.Writer) error {
	m := &r.Metrics
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "  %s\t%s\n", k, v) }
	fmt.Fprintf(tw, "scenario %s, seed %d, %d agents, %s of market time (%d steps)\n", m.Scenario, m.Seed, m.Agents,
		fmtSeconds(m.EndSeconds), m.Steps)
	row("contracts", fmt.Sprintf("%d awarded, %d settled: %d paid, %d partly, %d refunded; %d disputes, %d audits",
		m.Volume.Contracts, m.Volume.Settled, m.Volume.Paid, m.Volume.Partial, m.Volume.Refunded, m.Volume.Disputes, m.Volume.Audits))
	row("volume", fmt.Sprintf("%s credits paid to sellers, %s in fees", credits(m.Volume.VolumeMicrocredits), credits(m.Volume.FeesMicrocredits)))
	for _, p := range m.Prices {
		if p.Mean > 0 {
			row("price index "+p.Intent, fmt.Sprintf("first %s, mean %s, final %s credits", credits(p.First), credits(p.Mean), credits(p.Final)))
		}
	}
	row("welfare", fmt.Sprintf("%.1f%% of the optimum (%s of %s credits; %d of %d tasks done)", 100*m.Welfare.Ratio,
		credits(m.Welfare.WelfareMicrocredits), credits(m.Welfare.OptimumMicrocredits), m.Welfare.Done, m.Welfare.Tasks))
	if m.Reputation.Sellers >= 2 {
		row("reputation", fmt.Sprintf("Spearman ρ %.3f with true quality over %d honest sellers with %d+ contracts",
			m.Reputation.Spearman, m.Reputation.Sellers, m.Reputation.MinContracts))
	} else {
		row("reputation", fmt.Sprintf("ρ n/a: fewer than two honest sellers have %d+ contracts yet (a longer run ranks them)", m.Reputation.MinContracts))
	}
	if m.Reputation.FreeRiderBuyerScore > 0 {
		row("buyer scores", fmt.Sprintf("honest %.3f, free-riders %.3f", m.Reputation.HonestBuyerScore, m.Reputation.FreeRiderBuyerScore))
	}
	row("wealth", fmt.Sprintf("Gini %.3f", m.Wealth.Gini))
	row("latency", fmt.Sprintf("contract p50 %s, p99 %s; task (with retries) p50 %s, p99 %s",
		fmtMs(m.Latency.Contract.P50), fmtMs(m.Latency.Contract.P99), fmtMs(m.Latency.Task.P50), fmtMs(m.Latency.Task.P99)))
	if sp := m.Spike; sp != nil {
		for _, si := range sp.Intents {
			row("spike "+si.Intent, fmt.Sprintf("pre %s, peak %s (%+.0f%%), final %s (%+.1f%% of pre)", credits(si.Pre),
				credits(si.Peak), 100*si.Rise, credits(si.Final), 100*si.FinalGap))
		}
		row("entrants", strconv.Itoa(sp.Entrants))
	}
	if e := m.Enterprise; e != nil {
		row("enterprise", fmt.Sprintf("%d projects, %d paid (mean quality %.2f); %d subcontracts, %d passed", e.Projects, e.Paid,
			e.MeanQuality, e.Subcontracts, e.SubPassed))
	}
	if len(m.Attacks) > 0 {
		fmt.Fprintf(tw, "attacks\tattempts\tblocked\tgained (credits)\n")
		for _, a := range m.Attacks {
			if !a.Applicable {
				fmt.Fprintf(tw, "  %s\tn/a\tn/a\tn/a\n", a.Name)
				continue
			}
			extra := ""
			if a.ReputationGain != nil {
				extra = fmt.Sprintf("  (reputation %+.3f)", *a.ReputationGain)
				if a.RingClosed != nil && !*a.RingClosed {
					extra = fmt.Sprintf("  (reputation %+.3f; the ring never closed)", *a.ReputationGain)
				}
			}
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%s%s\n", a.Name, a.Attempts, a.Blocked, credits(a.GainedMicrocredits), extra)
		}
		row("stolen", credits(m.StolenMicrocredits)+" credits")
	}
	if r.Wall.Run > 0 {
		fmt.Fprintf(tw, "wall time %s (setup %s): %.0f settled contracts/s\n", r.Wall.Total.Round(1e6), r.Wall.Setup.Round(1e6), r.Wall.LifecyclesPerSecond)
	}
	return tw.Flush()
}

func fmtSeconds(s float64) string {
	if s >= 120 {
		return fmt.Sprintf("%.1f min", s/60)
	}
	return fmt.Sprintf("%.0f s", s)
}

func fmtMs(ms int64) string {
	if ms >= 10_000 {
		return fmt.Sprintf("%.0f s", float64(ms)/1000)
	}
	return fmt.Sprintf("%.1f s", float64(ms)/1000)
}

// palette colours the series of a chart.
var palette = []string{"#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"}

// series is one line of a chart.
type series struct {
	Name   string
	Colour string
	X, Y   []float64
}

// chart draws a line chart as inline SVG.
type chart struct {
	Title, XLabel, YLabel string
	Series                []series
	// Marks are vertical lines, such as the demand spike.
	Marks []float64
	// Scatter draws points instead of lines, with a diagonal y = x.
	Scatter  bool
	Diagonal bool
	YMin     *float64
}

func (c chart) SVG() template.HTML {
	const w, left, right, bottom = 560.0, 64.0, 16.0, 40.0
	// The legend runs in rows under the title, so it never covers a line.
	type entry struct {
		x, y   float64
		name   string
		colour string
	}
	var legend []entry
	lx, ly := left, 38.0
	for i, s := range c.Series {
		colour := s.Colour
		if colour == "" {
			colour = palette[i%len(palette)]
		}
		width := 26 + 6.8*float64(len(s.Name))
		if lx+width > w-right && lx > left {
			lx, ly = left, ly+15
		}
		legend = append(legend, entry{lx, ly, s.Name, colour})
		lx += width
	}
	top := ly + 12
	h := top + 200 + bottom
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		for i := range s.X {
			xmin, xmax = math.Min(xmin, s.X[i]), math.Max(xmax, s.X[i])
			ymin, ymax = math.Min(ymin, s.Y[i]), math.Max(ymax, s.Y[i])
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img">`, w, h, w, h)
	fmt.Fprintf(&b, `<text x="%.0f" y="18" class="t">%s</text>`, left, template.HTMLEscapeString(c.Title))
	for _, e := range legend {
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="10" height="10" fill="%s"/><text x="%.1f" y="%.1f" class="l">%s</text>`,
			e.x, e.y-9, e.colour, e.x+14, e.y, template.HTMLEscapeString(e.name))
	}
	if math.IsInf(xmin, 1) {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="l">no data</text></svg>`, w/2-20, h/2)
		return template.HTML(b.String())
	}
	if c.YMin != nil {
		ymin = *c.YMin
	} else if !c.Scatter {
		ymin = math.Min(0, ymin)
	}
	if c.Diagonal {
		lo, hi := math.Min(xmin, ymin), math.Max(xmax, ymax)
		xmin, ymin, xmax, ymax = lo, lo, hi, hi
	}
	if xmax == xmin {
		xmax = xmin + 1
	}
	if ymax == ymin {
		ymax = ymin + 1
	}
	ymax += (ymax - ymin) * 0.05
	px := func(x float64) float64 { return left + (x-xmin)/(xmax-xmin)*(w-left-right) }
	py := func(y float64) float64 { return h - bottom - (y-ymin)/(ymax-ymin)*(h-top-bottom) }
	// Axes and ticks.
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="a"/>`, left, h-bottom, w-right, h-bottom)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="a"/>`, left, top, left, h-bottom)
	for i := 0; i <= 4; i++ {
		y := ymin + (ymax-ymin)*float64(i)/4
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="g"/><text x="%.1f" y="%.1f" class="l" text-anchor="end">%s</text>`,
			left, py(y), w-right, py(y), left-4, py(y)+4, tick(y))
		x := xmin + (xmax-xmin)*float64(i)/4
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="l" text-anchor="middle">%s</text>`, px(x), h-bottom+14, tick(x))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="l" text-anchor="middle">%s</text>`, (left+w-right)/2, h-6, template.HTMLEscapeString(c.XLabel))
	fmt.Fprintf(&b, `<text x="12" y="%.1f" class="l" transform="rotate(-90 12 %.1f)" text-anchor="middle">%s</text>`, (top+h-bottom)/2, (top+h-bottom)/2, template.HTMLEscapeString(c.YLabel))
	for _, m := range c.Marks {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="m"/>`, px(m), top, px(m), h-bottom)
	}
	if c.Diagonal {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="m"/>`, px(xmin), py(xmin), px(xmax), py(xmax))
	}
	for i, s := range c.Series {
		colour := s.Colour
		if colour == "" {
			colour = palette[i%len(palette)]
		}
		if c.Scatter {
			for j := range s.X {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s" fill-opacity="0.8"/>`, px(s.X[j]), py(s.Y[j]), colour)
			}
		} else if len(s.X) > 0 {
			b.WriteString(`<polyline fill="none" stroke-width="1.8" stroke="` + colour + `" points="`)
			for j := range s.X {
				fmt.Fprintf(&b, "%.1f,%.1f ", px(s.X[j]), py(s.Y[j]))
			}
			b.WriteString(`"/>`)
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func tick(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// bars draws a horizontal bar chart as inline SVG.
func bars(title string, labels []string, values []float64, format func(float64) string) template.HTML {
	const w, rowH, left = 560.0, 22.0, 170.0
	h := 30 + rowH*float64(len(labels))
	maxV := 0.0
	for _, v := range values {
		maxV = math.Max(maxV, math.Abs(v))
	}
	if maxV == 0 {
		maxV = 1
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img">`, w, h, w, h)
	fmt.Fprintf(&b, `<text x="8" y="18" class="t">%s</text>`, template.HTMLEscapeString(title))
	for i, l := range labels {
		y := 28 + rowH*float64(i)
		bw := math.Abs(values[i]) / maxV * (w - left - 90)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" class="l" text-anchor="end">%s</text>`, left-6, y+14, template.HTMLEscapeString(l))
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.1f" width="%.1f" height="16" fill="%s"/>`, left, y+2, bw, palette[i%len(palette)])
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="l">%s</text>`, left+bw+6, y+14, template.HTMLEscapeString(format(values[i])))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// WriteHTML writes the self-contained report: inline CSS and SVG, no
// scripts, nothing fetched, so it opens offline.
func (r *Result) WriteHTML(w io.Writer) error {
	m := &r.Metrics
	var intents []string
	for _, k := range m.Prices {
		intents = append(intents, k.Intent)
	}
	byIntent := map[string]*series{}
	volume := map[string]*series{}
	for i, in := range intents {
		byIntent[in] = &series{Name: in, Colour: palette[i%len(palette)]}
		volume[in] = &series{Name: in, Colour: palette[i%len(palette)]}
	}
	for _, s := range r.Series {
		if p := byIntent[s.Intent]; p != nil && s.PriceIndexMicrocredits > 0 {
			p.X, p.Y = append(p.X, s.T), append(p.Y, float64(s.PriceIndexMicrocredits)/1e6)
		}
		if v := volume[s.Intent]; v != nil {
			v.X, v.Y = append(v.X, s.T), append(v.Y, float64(s.Fills))
		}
	}
	var marks []float64
	if m.Spike != nil {
		marks = []float64{m.Spike.AtSeconds}
		for _, e := range m.Spike.Entries {
			marks = append(marks, e.T)
		}
	}
	price := chart{Title: "Price index by intent (Service.Stats, sliding window)", XLabel: "market time (s)", YLabel: "credits", Marks: marks}
	fills := chart{Title: "Contracts settled with payment in the window", XLabel: "market time (s)", YLabel: "fills", Marks: marks}
	for _, in := range intents {
		price.Series = append(price.Series, *byIntent[in])
		fills.Series = append(fills.Series, *volume[in])
	}
	classes := map[string]*series{}
	var classNames []string
	for _, p := range m.Reputation.Points {
		if classes[p.Class] == nil {
			classes[p.Class] = &series{Name: p.Class}
			classNames = append(classNames, p.Class)
		}
		s := classes[p.Class]
		s.X, s.Y = append(s.X, p.TrueQuality), append(s.Y, p.Score)
	}
	zero := 0.0
	rep := chart{Title: fmt.Sprintf("Reputation score against true quality (ρ = %.3f)", m.Reputation.Spearman),
		XLabel: "true quality", YLabel: "reputation score", Scatter: true, Diagonal: true, YMin: &zero}
	for _, c := range classNames {
		rep.Series = append(rep.Series, *classes[c])
	}
	lor := series{Name: "Lorenz curve", X: []float64{0}, Y: []float64{0}}
	for i, v := range m.Wealth.Lorenz {
		lor.X, lor.Y = append(lor.X, float64(i+1)/float64(len(m.Wealth.Lorenz))), append(lor.Y, v)
	}
	wealth := chart{Title: fmt.Sprintf("Wealth distribution (Gini %.3f)", m.Wealth.Gini), XLabel: "share of agents, poorest first",
		YLabel: "share of wealth", Series: []series{lor}, Diagonal: true, YMin: &zero}
	welfare := bars("Welfare (credits)", []string{"optimum", "realised"},
		[]float64{float64(m.Welfare.OptimumMicrocredits) / 1e6, float64(m.Welfare.WelfareMicrocredits) / 1e6},
		func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) })
	lat := m.Latency.Contract
	latency := bars("Contract latency, award to settlement (s)", []string{"p50", "p90", "p99", "max"},
		[]float64{float64(lat.P50) / 1000, float64(lat.P90) / 1000, float64(lat.P99) / 1000, float64(lat.Max) / 1000},
		func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) + " s" })
	var classLabels []string
	var classValues []float64
	for c := range m.Wealth.MeanByClass {
		classLabels = append(classLabels, c)
	}
	sort.Strings(classLabels)
	for _, c := range classLabels {
		classValues = append(classValues, float64(m.Wealth.MeanByClass[c])/1e6)
	}
	byClass := bars("Mean holdings by class (credits)", classLabels, classValues,
		func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) })
	var summary bytes.Buffer
	r.WriteSummary(&summary)
	metrics, err := r.MetricsJSON()
	if err != nil {
		return err
	}
	data := map[string]any{
		"M": m, "Summary": summary.String(), "Price": price.SVG(), "Fills": fills.SVG(), "Rep": rep.SVG(),
		"Wealth": wealth.SVG(), "Welfare": welfare, "Latency": latency, "ByClass": byClass,
		"Credits": credits, "Pct": func(f float64) string { return strconv.FormatFloat(100*f, 'f', 1, 64) + "%" },
		"JSON": string(metrics),
	}
	return reportTemplate.Execute(w, data)
}

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"credits": credits,
	"deref":   func(f *float64) float64 { return *f },
	"mulf":    func(f float64) float64 { return 100 * f },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>agentmarket simulation: {{.M.Scenario}}, seed {{.M.Seed}}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1180px;color:#111;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:12px}
.card{border:1px solid #e5e7eb;border-radius:6px;padding:8px;background:#fff}
table{border-collapse:collapse;font-size:13px}td,th{border-bottom:1px solid #eee;padding:4px 10px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f8fafc}
.ok{color:#15803d;font-weight:600}.bad{color:#b91c1c;font-weight:600}.muted{color:#6b7280}
pre{background:#f8fafc;border:1px solid #e5e7eb;padding:10px;overflow:auto;font-size:12px}
svg .t{font:600 13px system-ui,sans-serif}svg .l{font:11px system-ui,sans-serif;fill:#374151}
svg .a{stroke:#9ca3af}svg .g{stroke:#f1f5f9}svg .m{stroke:#9ca3af;stroke-dasharray:4 3}
</style></head><body>
<h1>agentmarket simulation: {{.M.Scenario}}</h1>
<p class="muted">seed {{.M.Seed}} · {{.M.Agents}} agents · {{.M.DurationSeconds}} s of posting, {{.M.EndSeconds}} s of market time in {{.M.Steps}} steps ·
{{if .M.Deterministic}}deterministic: the same seed gives the same metrics.json{{else}}not deterministic ({{.M.Workers}} workers){{end}}</p>
<h2>Summary</h2>
<pre>{{.Summary}}</pre>
<h2>Prices and volume</h2>
<div class="grid"><div class="card">{{.Price}}</div><div class="card">{{.Fills}}</div></div>
<table><tr><th>intent</th><th>intents</th><th>contracts</th><th>paid</th><th>refunded</th><th>volume (credits)</th><th>mean price (credits)</th></tr>
{{range .M.Volume.ByIntent}}<tr><td>{{.Intent}}</td><td>{{.Intents}}</td><td>{{.Contracts}}</td><td>{{.Paid}}</td><td>{{.Refunded}}</td><td>{{credits .VolumeMicrocredits}}</td><td>{{credits .MeanPrice}}</td></tr>{{end}}
</table>
{{with .M.Spike}}<h2>Demand spike</h2>
<p>Demand is multiplied by {{.Factor}} at {{.AtSeconds}} s (the first dashed line); the other dashed lines are entrants joining. {{.Entrants}} entrants joined.</p>
<table><tr><th>intent</th><th>pre-spike index</th><th>peak</th><th>rise</th><th>final</th><th>final vs pre</th></tr>
{{range .Intents}}<tr><td>{{.Intent}}</td><td>{{credits .Pre}}</td><td>{{credits .Peak}} at {{.PeakAt}} s</td><td class="{{if .Rose}}ok{{else}}bad{{end}}">{{printf "%+.1f%%" (mulf .Rise)}}</td><td>{{credits .Final}}</td><td class="{{if .Settled}}ok{{else}}bad{{end}}">{{printf "%+.1f%%" (mulf .FinalGap)}}</td></tr>{{end}}
</table>{{end}}
<h2>Welfare</h2>
<div class="grid"><div class="card">{{.Welfare}}</div><div class="card"><p><b>{{call .Pct .M.Welfare.Ratio}}</b> of the optimum.
{{.M.Welfare.Done}} of {{.M.Welfare.Tasks}} tasks done; value realised {{credits .M.Welfare.RealisedMicrocredits}}, true cost {{credits .M.Welfare.CostMicrocredits}} credits.</p>
<p class="muted">{{.M.Welfare.Definition}}</p></div></div>
<h2>Reputation</h2>
<div class="grid"><div class="card">{{.Rep}}</div><div class="card">
<p>Spearman ρ between true quality and the market's reputation score: <b>{{printf "%.3f" .M.Reputation.Spearman}}</b> over {{.M.Reputation.Sellers}} honest sellers with at least {{.M.Reputation.MinContracts}} settled contracts ({{printf "%.3f" .M.Reputation.SpearmanAll}} with every seller).
Honest buyers' buyer score {{printf "%.3f" .M.Reputation.HonestBuyerScore}}{{if .M.Reputation.FreeRiderBuyerScore}}; free-riders' {{printf "%.3f" .M.Reputation.FreeRiderBuyerScore}}{{end}}.</p>
<table><tr><th>seller</th><th>class</th><th>true quality</th><th>score</th><th>lower bound</th><th>contracts</th><th>evidence</th></tr>
{{range .M.Reputation.Points}}<tr><td>{{.Agent}}</td><td>{{.Class}}</td><td>{{printf "%.3f" .TrueQuality}}</td><td>{{printf "%.3f" .Score}}</td><td>{{printf "%.3f" .LowerBound}}</td><td>{{.Contracts}}</td><td>{{printf "%.1f" .Evidence}}</td></tr>{{end}}
</table></div></div>
{{if .M.Attacks}}<h2>Attacks</h2>
<table><tr><th>attack</th><th>attempts</th><th>blocked</th><th>credits gained</th><th>reputation gain</th><th>note</th></tr>
{{range .M.Attacks}}<tr><td>{{.Name}}</td>{{if .Applicable}}<td>{{.Attempts}}</td><td>{{.Blocked}}</td><td class="{{if gt .GainedMicrocredits 0}}bad{{else}}ok{{end}}">{{credits .GainedMicrocredits}}</td><td>{{with .ReputationGain}}{{printf "%+.3f" (deref .)}}{{end}}</td>{{else}}<td>n/a</td><td>n/a</td><td>n/a</td><td></td>{{end}}<td style="text-align:left" class="muted">{{.Note}}</td></tr>{{end}}
</table>
<p>Credits stolen by all attacks: <b class="{{if gt .M.StolenMicrocredits 0}}bad{{else}}ok{{end}}">{{credits .M.StolenMicrocredits}}</b>.</p>{{end}}
{{with .M.Enterprise}}<h2>Autonomous enterprise</h2>
<p>{{.Projects}} projects awarded to orchestrators, {{.Paid}} paid (mean quality {{printf "%.2f" .MeanQuality}}); {{.Subcontracts}} subcontracts under their escrow, {{.SubPassed}} passed their checks and were paid.
Orchestrators' margin: {{credits .OrchestratorMarginMicrocredits}} credits.</p>{{end}}
<h2>Wealth and latency</h2>
<div class="grid"><div class="card">{{.Wealth}}</div><div class="card">{{.ByClass}}</div><div class="card">{{.Latency}}</div></div>
<h2>metrics.json</h2>
<details><summary>show</summary><pre>{{.JSON}}</pre></details>
</body></html>
`))
