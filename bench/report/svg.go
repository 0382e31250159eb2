package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// Chart geometry and colours.
const (
	svgWidth      = 960
	plotLeft      = 84
	plotRight     = svgWidth - 24
	plotHeight    = 250
	sectionGap    = 40
	colorCompiled = "#2f6db5"
	colorInterp   = "#f0a04b"
	colorTarget   = "#d62728"
	colorGrid     = "#e4e4e4"
	colorText     = "#222222"
	fontFamily    = "DejaVu Sans, Helvetica, Arial, sans-serif"
)

// section is one half of a panel: a metric, with a compiled and an
// interpreter value per model.
type section struct {
	Name   string
	Target float64      // draws a target line at this value when non-zero
	Values [][2]float64 // per model: compiled, interpreter
}

// axis maps values to heights above the plot's bottom.
type axis interface {
	height(v float64) float64 // 0..plotHeight
	ticks() []tick
}

type tick struct {
	v     float64
	label string // "" for a minor grid line
}

type logAxis struct{ lo, hi float64 }

func newLogAxis(vals []float64) logAxis {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		if v > 0 && !math.IsInf(v, 0) {
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	if math.IsInf(lo, 1) {
		return logAxis{1, 10}
	}
	a := logAxis{math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi*1.6)))}
	if lo < 1.5*a.lo { // leave the smallest bar some height
		a.lo /= 10
	}
	return a
}

func (a logAxis) height(v float64) float64 {
	if v <= a.lo {
		return 0
	}
	return plotHeight * math.Log10(v/a.lo) / math.Log10(a.hi/a.lo)
}

func (a logAxis) ticks() []tick {
	var ts []tick
	for d := a.lo; d <= a.hi*1.0001; d *= 10 {
		ts = append(ts, tick{d, fmtTick(d)})
		for _, m := range []float64{2, 5} {
			if d*m < a.hi {
				ts = append(ts, tick{d * m, ""})
			}
		}
	}
	return ts
}

func fmtTick(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gk", v/1e3)
	}
	return fmt.Sprintf("%g", v)
}

type pctAxis struct{ hi float64 }

func newPctAxis(vals []float64) pctAxis {
	hi := 100.0
	for _, v := range vals {
		if !math.IsInf(v, 0) && v*1.1 > hi {
			hi = math.Ceil(v*1.1/20) * 20
		}
	}
	return pctAxis{hi}
}

func (a pctAxis) height(v float64) float64 { return plotHeight * max(0, min(v, a.hi)) / a.hi }

func (a pctAxis) ticks() []tick {
	var ts []tick
	for v := 0.0; v <= a.hi+1e-9; v += 20 {
		ts = append(ts, tick{v, fmt.Sprintf("%.0f%%", v)})
	}
	return ts
}

// SVG is chart.svg: tokens/s on a log axis, then the fractions of the
// machine's ceilings with their targets, compiled against interpreted.
func (r *Report) SVG() string {
	var tput, frac [2]section
	tput[0] = section{Name: "decode tok/s"}
	tput[1] = section{Name: "prefill tok/s"}
	frac[0] = section{Name: "decode: % of bandwidth roofline", Target: 90}
	frac[1] = section{Name: "prefill: % of FMA peak", Target: 60}
	var names []string
	var tvals, fvals []float64
	for _, m := range r.Models {
		names = append(names, m.Name)
		c, i := m.Compiled, m.Interp
		tput[0].Values = append(tput[0].Values, [2]float64{c.DecodeTokS, i.DecodeTokS})
		tput[1].Values = append(tput[1].Values, [2]float64{c.PrefillTokS, i.PrefillTokS})
		frac[0].Values = append(frac[0].Values, [2]float64{100 * c.DecodeRooflineFraction, 100 * i.DecodeRooflineFraction})
		frac[1].Values = append(frac[1].Values, [2]float64{100 * c.PrefillPeakFraction, 100 * i.PrefillPeakFraction})
		tvals = append(tvals, c.DecodeTokS, i.DecodeTokS, c.PrefillTokS, i.PrefillTokS)
		fvals = append(fvals, 100*c.DecodeRooflineFraction, 100*i.DecodeRooflineFraction, 100*c.PrefillPeakFraction, 100*i.PrefillPeakFraction)
	}

	const (
		panel1Top = 140
		panelStep = plotHeight + 130
		panel2Top = panel1Top + panelStep
		height    = panel2Top + plotHeight + 70
	)
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="%s" fill="%s">`+"\n",
		svgWidth, height, svgWidth, height, fontFamily, colorText)
	fmt.Fprintf(&b, `<rect class="background" x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`+"\n", svgWidth, height)

	read, fma := r.ceilings()
	text(&b, svgWidth/2, 30, "middle", 18, "bold", "gemmac bench: compiled engine vs interpreter")
	text(&b, svgWidth/2, 52, "middle", 13, "", r.machineLine())
	text(&b, svgWidth/2, 72, "middle", 12, "",
		fmt.Sprintf("prompt %d tokens, %d generated · measured read %s GB/s, FMA %s GFLOP/s · %s",
			r.PromptTokens, r.GenTokens, read, fma, r.Date.Format("2006-01-02 15:04 MST")))
	legend(&b, svgWidth/2, 98)

	panel(&b, panel1Top, "Throughput (tokens/s, log scale; higher is better)", "tokens/s (log scale)",
		newLogAxis(tvals), tput, names, fmtNum)
	panel(&b, panel2Top, "Fraction of the machine's measured ceiling (dashed: target)", "% of ceiling",
		newPctAxis(fvals), frac, names, fmtPct)
	b.WriteString("</svg>\n")
	return b.String()
}

// legend draws the compiled, interpreter and target keys centred on cx.
func legend(b *strings.Builder, cx, y int) {
	items := []struct{ label, kind string }{
		{"compiled", colorCompiled}, {"interpreter", colorInterp}, {"target", "target"},
	}
	const itemW = 120
	x := cx - len(items)*itemW/2
	fmt.Fprintf(b, `<g class="legend">`+"\n")
	for _, it := range items {
		if it.kind == "target" {
			fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2" stroke-dasharray="6 4"/>`+"\n",
				x, y, x+22, y, colorTarget)
		} else {
			fmt.Fprintf(b, `<rect x="%d" y="%d" width="22" height="12" fill="%s"/>`+"\n", x, y-6, it.kind)
		}
		text(b, x+28, y+4, "start", 12, "", it.label)
		x += itemW
	}
	b.WriteString("</g>\n")
}

// panel draws one chart: a title, a y axis with grid lines, and per section
// a cluster of two bars per model.
func panel(b *strings.Builder, top int, title, yLabel string, ax axis, secs [2]section, models []string, format func(float64) string) {
	bottom := float64(top + plotHeight)
	y := func(v float64) float64 { return bottom - ax.height(v) }
	fmt.Fprintf(b, `<g class="panel">`+"\n")
	text(b, plotLeft, top-16, "start", 14, "bold", title)

	// Grid and y axis.
	for _, t := range ax.ticks() {
		yy := y(t.v)
		stroke := colorGrid
		if t.label == "" {
			stroke = "#f3f3f3"
		}
		fmt.Fprintf(b, `<line class="grid" x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`+"\n",
			plotLeft, yy, plotRight, yy, stroke)
		if t.label != "" {
			text(b, plotLeft-6, int(math.Round(yy))+4, "end", 11, "", t.label)
		}
	}
	fmt.Fprintf(b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%.1f" stroke="#888888"/>`+"\n", plotLeft, top, plotLeft, bottom)
	fmt.Fprintf(b, `<line class="axis" x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#888888"/>`+"\n", plotLeft, bottom, plotRight, bottom)
	ly := top + plotHeight/2
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle" font-size="12" transform="rotate(-90 %d %d)">%s</text>`+"\n",
		plotLeft-52, ly, plotLeft-52, ly, esc(yLabel))

	secW := float64(plotRight-plotLeft-sectionGap) / 2
	for si, sec := range secs {
		x0 := float64(plotLeft) + float64(si)*(secW+sectionGap)
		if si > 0 {
			sx := x0 - sectionGap/2
			fmt.Fprintf(b, `<line class="separator" x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="#cccccc" stroke-dasharray="2 3"/>`+"\n",
				sx, top, sx, bottom)
		}
		n := max(len(sec.Values), 1)
		clusterW := secW / float64(n)
		barW := min(56, clusterW*0.34)
		for mi, vals := range sec.Values {
			cx := x0 + clusterW*(float64(mi)+0.5)
			for ei, v := range vals {
				bx := cx - barW - 2
				color, engine := colorCompiled, "compiled"
				if ei == 1 {
					bx, color, engine = cx+2, colorInterp, "interpreter"
				}
				tip := fmt.Sprintf("%s, %s, %s: %s", models[mi], engine, sec.Name, format(v))
				if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
					text(b, int(bx+barW/2), int(bottom)-4, "middle", 10, "", "n/a")
					continue
				}
				barTop := y(v)
				fmt.Fprintf(b, `<rect class="bar %s" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`+"\n",
					engine, bx, barTop, barW, bottom-barTop, color, esc(tip))
				// A white halo keeps the label readable across a target line.
				fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10" stroke="#ffffff" stroke-width="3" stroke-linejoin="round" paint-order="stroke">%s</text>`+"\n",
					bx+barW/2, barTop-4, esc(format(v)))
			}
			text(b, int(math.Round(cx)), int(bottom)+16, "middle", 12, "", models[mi])
		}
		text(b, int(math.Round(x0+secW/2)), int(bottom)+36, "middle", 12, "bold", sec.Name)
		if sec.Target > 0 {
			ty := y(sec.Target)
			fmt.Fprintf(b, `<line class="target" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2" stroke-dasharray="6 4"><title>target %g%%</title></line>`+"\n",
				x0, ty, x0+secW, ty, colorTarget, sec.Target)
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" font-size="11" fill="%s">target %g%%</text>`+"\n",
				x0+secW-2, ty-5, colorTarget, sec.Target)
		}
	}
	b.WriteString("</g>\n")
}

func text(b *strings.Builder, x, y int, anchor string, size int, weight, s string) {
	w := ""
	if weight != "" {
		w = fmt.Sprintf(` font-weight="%s"`, weight)
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="%s" font-size="%d"%s>%s</text>`+"\n", x, y, anchor, size, w, esc(s))
}

// esc escapes text for XML.
func esc(s string) string { return html.EscapeString(s) }
