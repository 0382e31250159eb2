// Package passes rewrites gemmac graphs. Each pass does one thing and keeps
// the graph's meaning (the tests run the interpreter before and after each
// one); the pipeline lists them in the order they run. No pass knows about
// a target.
package passes

import (
	"fmt"

	"github.com/gemmac/gemmac/ir"
)

// Pass is one rewrite of a graph, in place.
type Pass struct {
	Name string
	Run  func(g *ir.Graph) error
}

// Pipeline is every pass, in order.
var Pipeline = []Pass{
	{"verify", ir.Verify},
	{"fold", Fold},
	{"fuse", Fuse},
	{"kvcache", KVCache},
	{"memplan", MemPlan},
	{"verify", ir.Verify},
}

// Options control a pipeline run.
type Options struct {
	// Check runs the verifier after every pass, not only at the ends.
	Check bool
	// After, when set, sees the graph after each pass (gemmac inspect
	// prints it).
	After func(pass string, g *ir.Graph)
}

// Run applies the pipeline to g.
func Run(g *ir.Graph, opts Options) error {
	for _, p := range Pipeline {
		if err := p.Run(g); err != nil {
			return fmt.Errorf("pass %s: %w", p.Name, err)
		}
		if opts.Check && p.Name != "verify" {
			if err := ir.Verify(g); err != nil {
				return fmt.Errorf("after pass %s: %w", p.Name, err)
			}
		}
		if opts.After != nil {
			opts.After(p.Name, g)
		}
	}
	return nil
}
