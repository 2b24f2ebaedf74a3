package adminui

import (
	"fmt"
	"html/template"
	"strings"
)

// point is one bar of a chart: a day and its value (a count, or micro-USD
// for money).
type point struct {
	Label string
	Value int64
}

// chart is a bar chart drawn on the server as SVG: no script, nothing to
// load, readable by screen readers through its title and each bar's.
type chart struct {
	Title  string
	Unit   string
	Money  bool // values are micro-USD
	Points []point
}

// Geometry of a chart, in SVG user units (scaled to the page's width).
const (
	chartW, chartH = 480, 170
	chartPadL      = 74 // room for the axis labels
	chartPadB      = 24
	chartPadT      = 8
)

func (c chart) format(v int64) string {
	if c.Money {
		return dollars(v)
	}
	return itoa(v)
}

// SVG renders the chart. Every text in it is escaped.
func (c chart) SVG() template.HTML {
	if len(c.Points) == 0 {
		return ""
	}
	var maxV int64
	for _, p := range c.Points {
		maxV = max(maxV, p.Value)
	}
	esc := template.HTMLEscapeString
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s">`, chartW, chartH, esc(c.Title))
	fmt.Fprintf(&b, `<title>%s</title>`, esc(c.Title))
	plotW, plotH := float64(chartW-chartPadL), float64(chartH-chartPadB-chartPadT)
	// Axis: the top value and zero.
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`, chartPadL, chartH-chartPadB, chartW, chartH-chartPadB)
	fmt.Fprintf(&b, `<text class="tick" x="%d" y="%d" text-anchor="end">%s</text>`, chartPadL-6, chartPadT+12, esc(c.format(maxV)))
	fmt.Fprintf(&b, `<text class="tick" x="%d" y="%d" text-anchor="end">0</text>`, chartPadL-6, chartH-chartPadB)
	step := plotW / float64(len(c.Points))
	for i, p := range c.Points {
		h := 0.0
		if maxV > 0 {
			h = plotH * float64(p.Value) / float64(maxV)
		}
		x := float64(chartPadL) + float64(i)*step + step*0.15
		fmt.Fprintf(&b, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s: %s</title></rect>`,
			x, float64(chartH-chartPadB)-h, step*0.7, h, esc(p.Label), esc(c.format(p.Value)))
	}
	first, last := c.Points[0].Label, c.Points[len(c.Points)-1].Label
	fmt.Fprintf(&b, `<text class="tick" x="%d" y="%d">%s</text>`, chartPadL, chartH-6, esc(first))
	if len(c.Points) > 1 {
		fmt.Fprintf(&b, `<text class="tick" x="%d" y="%d" text-anchor="end">%s</text>`, chartW, chartH-6, esc(last))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // built above from escaped text only
}
