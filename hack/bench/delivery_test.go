package main

import (
	"errors"
	"testing"
)

// TestSteadyMeasuresAgainUnderSteal checks which window steady keeps.
func TestSteadyMeasuresAgainUnderSteal(t *testing.T) {
	for _, c := range []struct {
		name      string
		maxSteal  float64
		steal     []float64 // of each try, 0 to 1
		wantTries int
	}{
		{"quiet", 5, []float64{0.01}, 1},
		{"at the bound", 5, []float64{0.05}, 1},
		{"stolen once", 5, []float64{0.2, 0.03}, 2},
		{"stolen throughout: the last repeat is kept", 5, []float64{0.2, 0.3, 0.4, 0.01}, 3},
		{"off", 100, []float64{0.9}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			rep := &report{}
			tries := 0
			res, err := timing{maxSteal: c.maxSteal}.steady(rep, "w", func() (*loadResult, error) {
				tries++
				return &loadResult{MachineSteal: c.steal[tries-1]}, nil
			})
			if err != nil || tries != c.wantTries || res.MachineSteal != c.steal[c.wantTries-1] {
				t.Fatalf("tries %d, kept steal %v, err %v; want %d tries, steal %v", tries, res.MachineSteal, err, c.wantTries, c.steal[c.wantTries-1])
			}
			if len(rep.Notes) != c.wantTries-1 {
				t.Errorf("notes %q: want one per repeat", rep.Notes)
			}
		})
	}
	tries := 0
	boom := errors.New("boom")
	if _, err := (timing{maxSteal: 5}).steady(&report{}, "w", func() (*loadResult, error) { tries++; return nil, boom }); err != boom || tries != 1 {
		t.Errorf("an error: tries %d, err %v; want it returned at once", tries, err)
	}
}
