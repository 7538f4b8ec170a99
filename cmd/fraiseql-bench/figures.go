package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Table names.
const (
	tableTopologies = "topologies"
	tableCeilings   = "ceilings"
	colValue        = "value"
)

type figKey struct{ Table, Row, Col string }

// figures holds every measured value, one per run, by table, row and
// column, in the order first recorded.
type figures struct {
	rows map[string][]string // table -> rows in order
	cols map[string][]string // table -> columns in order
	vals map[figKey][]float64
	ints map[figKey]bool // counts: rendered without decimals
}

func newFigures() *figures {
	return &figures{rows: map[string][]string{}, cols: map[string][]string{}, vals: map[figKey][]float64{}, ints: map[figKey]bool{}}
}

// reserve places row in table's order without a value (its cells are
// "–" until one comes): rows that only some columns have stay together.
func (f *figures) reserve(table, row string) {
	if !slices.Contains(f.rows[table], row) {
		f.rows[table] = append(f.rows[table], row)
	}
}

func (f *figures) add(table, row, col string, v float64) {
	f.reserve(table, row)
	if !slices.Contains(f.cols[table], col) {
		f.cols[table] = append(f.cols[table], col)
	}
	k := figKey{table, row, col}
	f.vals[k] = append(f.vals[k], v)
}

// count records an integer figure.
func (f *figures) count(table, row, col string, n int) {
	f.add(table, row, col, float64(n))
	f.ints[figKey{table, row, col}] = true
}

// cell renders a cell: the value, or min–max over the runs, and with
// three runs or more their median (single runs of this machine vary by
// up to ±30% minutes apart: the median says where most of them fell).
func (f *figures) cell(k figKey) string {
	vs := f.vals[k]
	if len(vs) == 0 {
		return "–"
	}
	num := formatNumber
	if f.ints[k] {
		num = func(v float64) string { return fmt.Sprintf("%.0f", v) }
	}
	lo, hi := slices.Min(vs), slices.Max(vs)
	if num(lo) == num(hi) {
		return num(lo)
	}
	if len(vs) >= 3 {
		return num(lo) + "–" + num(hi) + " (median " + num(median(vs)) + ")"
	}
	return num(lo) + "–" + num(hi)
}

// formatNumber keeps three significant figures or so, no more.
func formatNumber(v float64) string {
	switch a := max(v, -v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// machine describes where the figures were measured.
type machine struct {
	CPUs       int    `json:"cpus"`
	CPUModel   string `json:"cpu_model"`
	GoVersion  string `json:"go_version"`
	PostgreSQL string `json:"postgresql"`
	LoadBefore string `json:"load_average_before"` // /proc/loadavg at the start
	LoadAfter  string `json:"load_average_after"`  // and at the end
}

// report is the harness's output.
type report struct {
	Machine machine
	Command string
	Runs    int
	Figures *figures
}

// markdown writes the report as two markdown tables.
func (r report) markdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %s, PostgreSQL %s. ", r.Machine.CPUs, r.Machine.CPUModel, r.Machine.GoVersion, r.Machine.PostgreSQL)
	if r.Machine.LoadBefore != "" {
		fmt.Fprintf(&b, "Load average %s at the start, %s at the end. ", r.Machine.LoadBefore, r.Machine.LoadAfter)
	}
	switch {
	case r.Runs >= 3:
		fmt.Fprintf(&b, "%d runs, min–max and median per cell.\n", r.Runs)
	case r.Runs > 1:
		fmt.Fprintf(&b, "%d runs, min–max per cell.\n", r.Runs)
	default:
		b.WriteString("1 run.\n")
	}
	fmt.Fprintf(&b, "Command: `%s`\n", r.Command)
	for _, t := range []struct{ name, head string }{{tableTopologies, "figure"}, {tableCeilings, "ceiling"}} {
		rows, cols := r.Figures.rows[t.name], r.Figures.cols[t.name]
		if len(rows) == 0 {
			continue
		}
		b.WriteString("\n| " + t.head + " |")
		for _, c := range cols {
			b.WriteString(" " + c + " |")
		}
		b.WriteString("\n|---|" + strings.Repeat("---|", len(cols)) + "\n")
		for _, row := range rows {
			b.WriteString("| " + row + " |")
			for _, c := range cols {
				b.WriteString(" " + r.Figures.cell(figKey{t.name, row, c}) + " |")
			}
			b.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// jsonFigure is one cell in the -json output.
type jsonFigure struct {
	Table  string    `json:"table"`
	Figure string    `json:"figure"`
	Column string    `json:"column"`
	Values []float64 `json:"values"` // one per run
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Median float64   `json:"median"`
}

// json writes the report as one JSON document.
func (r report) json(w io.Writer) error {
	out := struct {
		Machine machine      `json:"machine"`
		Command string       `json:"command"`
		Runs    int          `json:"runs"`
		Figures []jsonFigure `json:"figures"`
	}{Machine: r.Machine, Command: r.Command, Runs: r.Runs, Figures: []jsonFigure{}}
	for _, t := range []string{tableTopologies, tableCeilings} {
		for _, row := range r.Figures.rows[t] {
			for _, c := range r.Figures.cols[t] {
				vs := r.Figures.vals[figKey{t, row, c}]
				if len(vs) == 0 {
					continue
				}
				out.Figures = append(out.Figures, jsonFigure{Table: t, Figure: row, Column: c, Values: vs, Min: slices.Min(vs), Max: slices.Max(vs), Median: median(vs)})
			}
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}
