package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// figure is one measured quantity, with one value per run.
type figure struct {
	Section string    `json:"section"`
	Name    string    `json:"name"`
	Unit    string    `json:"unit"`
	Values  []float64 `json:"values"`
	Median  float64   `json:"median"`
	// Target is the goal for this figure, if it has one.
	Target string `json:"target,omitempty"`
}

// report collects figures in the order they are first measured.
type report struct {
	Machine  machine            `json:"machine"`
	Started  time.Time          `json:"started"`
	Runs     int                `json:"runs"`
	Settings map[string]string  `json:"settings"`
	Figures  []*figure          `json:"figures"`
	Notes    []string           `json:"notes,omitempty"`
	index    map[string]*figure `json:"-"`
	// run is the run being measured (from 1), which prefixes notes when
	// there are several.
	run int
}

type machine struct {
	CPUs   int    `json:"cpus"`
	Model  string `json:"model"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
	MemMiB int64  `json:"memMiB"`
}

func newReport() *report {
	return &report{Started: time.Now(), Settings: map[string]string{}, index: map[string]*figure{}}
}

// add records one run's value of a figure.
func (r *report) add(section, name, unit, target string, v float64) {
	key := section + "\x00" + name
	f := r.index[key]
	if f == nil {
		f = &figure{Section: section, Name: name, Unit: unit, Target: target}
		r.index[key] = f
		r.Figures = append(r.Figures, f)
	}
	f.Values = append(f.Values, v)
	f.Median = median(f.Values)
}

func (r *report) note(format string, args ...any) {
	n := fmt.Sprintf(format, args...)
	if r.Runs > 1 && r.run > 0 {
		n = fmt.Sprintf("run %d: %s", r.run, n)
	}
	r.Notes = append(r.Notes, n)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// print writes the table: one line per figure, its median, every run's
// value when there were several, and the target.
func (r *report) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "section\tfigure\tmedian\tunit\truns\ttarget\n")
	section := ""
	for _, f := range r.Figures {
		if f.Section != section && section != "" {
			fmt.Fprintf(tw, "\t\t\t\t\t\n")
		}
		section = f.Section
		runs := ""
		if len(f.Values) > 1 {
			parts := make([]string, len(f.Values))
			for i, v := range f.Values {
				parts[i] = format(v)
			}
			runs = strings.Join(parts, " ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.Section, f.Name, format(f.Median), f.Unit, runs, f.Target)
	}
	_ = tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

func format(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 1000 || v <= -1000:
		return fmt.Sprintf("%.0f", v)
	case v >= 100 || v <= -100:
		return fmt.Sprintf("%.1f", v)
	case v >= 1 || v <= -1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func (r *report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
