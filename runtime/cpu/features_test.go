package cpu

import (
	"strings"
	"testing"
)

func TestCheckFeatures(t *testing.T) {
	for name, has := range hostFeatures {
		err := checkFeatures("cpu test", "+"+name)
		if has != (err == nil) {
			t.Errorf("+%s: host has it: %v, error: %v", name, has, err)
		}
		if err != nil && !strings.Contains(err.Error(), name) {
			t.Errorf("+%s: error does not name it: %v", name, err)
		}
	}
	if err := checkFeatures("cpu test", "+some-future-feature,"); err != nil {
		t.Errorf("unknown features are not checkable and must pass: %v", err)
	}
}
