package sample

import (
	"math"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	valid := []Options{
		{},
		{Temperature: 0.7, TopK: 64, TopP: 0.95, MinP: 0.05, RepetitionPenalty: 1.1, Seed: 7},
		{Temperature: 1, TopP: 1, MinP: 1, RepetitionPenalty: 0},
	}
	for _, o := range valid {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: unexpected error %v", o, err)
		}
	}
	invalid := []struct {
		o    Options
		want string
	}{
		{Options{Temperature: -0.1}, "Temperature is -0.1; want >= 0"},
		{Options{Temperature: nan}, "Temperature is NaN; want a finite number"},
		{Options{Temperature: inf}, "Temperature is +Inf; want a finite number"},
		{Options{TopP: 1.5}, "TopP is 1.5; want a value in [0, 1]"},
		{Options{TopP: -0.5}, "TopP is -0.5; want a value in [0, 1]"},
		{Options{TopP: nan}, "TopP is NaN"},
		{Options{MinP: 2}, "MinP is 2; want a value in [0, 1]"},
		{Options{MinP: -0.01}, "MinP is -0.01"},
		{Options{MinP: nan}, "MinP is NaN"},
		{Options{TopK: -1}, "TopK is -1; want >= 0"},
		{Options{RepetitionPenalty: -1}, "RepetitionPenalty is -1; want >= 0"},
		{Options{RepetitionPenalty: nan}, "RepetitionPenalty is NaN"},
	}
	for _, tt := range invalid {
		err := tt.o.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: err = %v; want it to contain %q", tt.o, err, tt.want)
		}
		if _, nerr := New(tt.o); nerr == nil {
			t.Errorf("New(%+v) accepted invalid options", tt.o)
		}
	}
}
