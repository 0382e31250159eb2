package cpu

import (
	"testing"

	"github.com/gemmac/gemmac/codegen"
)

// TestLayoutsMatchCodegen checks the engine's copies of the mailbox and run
// table layouts against the generated kernels' (runtime/cpu does not import
// codegen, so that built binaries do not link the code generator).
func TestLayoutsMatchCodegen(t *testing.T) {
	for _, c := range []struct {
		name      string
		ours, gen int
	}{
		{"MailSeq", mailSeq, codegen.MailSeq}, {"MailFn", mailFn, codegen.MailFn},
		{"MailArgs", mailArgs, codegen.MailArgs}, {"MailLo", mailLo, codegen.MailLo},
		{"MailHi", mailHi, codegen.MailHi}, {"MailNext", mailNext, codegen.MailNext},
		{"MailChunk", mailChunk, codegen.MailChunk}, {"MailPosted", mailPosted, codegen.MailPosted},
		{"MailDone", mailDone, codegen.MailDone}, {"MailHold", mailHold, codegen.MailHold},
		{"MailWords", mailWords, codegen.MailWords},
		{"RunWorkers", runWorkers, codegen.RunWorkers}, {"RunCounter", runCounter, codegen.RunCounter},
		{"RunMail", runMail, codegen.RunMail}, {"RunStride", runStride, codegen.RunStride},
		{"RunHeader", runHeader, codegen.RunHeader}, {"RunStepWords", runStepWords, codegen.RunStepWords},
		{"RunStepFn", runStepFn, codegen.RunStepFn}, {"RunStepArgs", runStepArgs, codegen.RunStepArgs},
		{"RunStepItems", runStepItems, codegen.RunStepItems}, {"RunStepChunk", runStepChunk, codegen.RunStepChunk},
	} {
		if c.ours != c.gen {
			t.Errorf("%s: runtime/cpu has %d, codegen %d", c.name, c.ours, c.gen)
		}
	}
}
