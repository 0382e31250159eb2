package cli

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"

	"github.com/gemmac/gemmac/runtime/chat"
	"github.com/gemmac/gemmac/runtime/model"
)

func runCommand() Command {
	return Command{
		Name:    "run",
		Usage:   "--model DIR [--interp] [--system S] --prompt S [sampling flags]",
		Summary: "generate a reply to one prompt, streaming it",
		Run:     runRun,
	}
}

func runRun(env *Env, args []string) error {
	fs := newFlags(env, "run")
	var mf modelFlags
	var sf samplingFlags
	mf.register(fs)
	sf.register(fs)
	prompt := fs.String("prompt", "", "the user's message")
	system := fs.String("system", "", "system prompt (needs a template that supports one: systemgemma2, gemma3)")
	raw := fs.Bool("raw", false, "complete the prompt as plain text (BOS + prompt), without the chat template")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "prompt"); err != nil {
		return err
	}
	if *raw && fs.Changed("system") {
		return usageError("--system needs the chat template; drop --raw")
	}
	opts, err := sf.options()
	if err != nil {
		return err
	}
	m, err := mf.load(fs, env)
	if err != nil {
		return err
	}
	defer m.Close()
	tok, err := m.NeedTokenizer()
	if err != nil {
		return err
	}
	var ids []int
	if *raw {
		ids = tok.Encode(*prompt, true)
	} else {
		var msgs []chat.Message
		if *system != "" {
			msgs = append(msgs, chat.Message{Role: "system", Content: *system})
		}
		msgs = append(msgs, chat.Message{Role: "user", Content: *prompt})
		if ids, err = m.ChatPrompt(msgs); err != nil {
			return err
		}
	}
	sess, err := m.NewSession()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := streamReply(ctx, env, sess, ids, opts); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout)
	printStats(env, m, sess.Last())
	return nil
}

// streamReply writes the generated text as it arrives and returns it whole.
func streamReply(ctx context.Context, env *Env, sess *model.Session, ids []int, opts model.GenerateOptions) (string, error) {
	var reply strings.Builder
	for text, err := range sess.Generate(ctx, ids, opts) {
		if err != nil {
			return reply.String(), err
		}
		reply.WriteString(text)
		fmt.Fprint(env.Stdout, text)
		if f, ok := env.Stdout.(interface{ Sync() error }); ok {
			f.Sync()
		}
	}
	return reply.String(), nil
}

func printStats(env *Env, m *model.Model, r *model.Result) {
	if r == nil {
		return
	}
	fmt.Fprintf(env.Stderr, "[%s, %d threads] prompt %d tokens in %.2fs (%s tok/s); generated %d tokens in %.2fs (%s tok/s); finish: %s\n",
		m.Engine.Name(), m.Engine.Threads(),
		r.PromptTokens, r.Prefill.Seconds(), tokensPerSecond(r.PromptTokens, r.Prefill.Seconds()),
		r.GeneratedTokens, r.Decode.Seconds(), tokensPerSecond(max(r.GeneratedTokens-1, 0), r.Decode.Seconds()),
		r.FinishReason)
}

func chatCommand() Command {
	return Command{
		Name:    "chat",
		Usage:   "--model DIR [--interp] [--system S] [sampling flags]",
		Summary: "talk with the model, one line per turn (/reset starts over)",
		Run:     runChat,
	}
}

func runChat(env *Env, args []string) error {
	fs := newFlags(env, "chat")
	var mf modelFlags
	var sf samplingFlags
	mf.register(fs)
	sf.register(fs)
	system := fs.String("system", "", "system prompt")
	if err := parse(fs, args); err != nil {
		return err
	}
	opts, err := sf.options()
	if err != nil {
		return err
	}
	m, err := mf.load(fs, env)
	if err != nil {
		return err
	}
	defer m.Close()
	sess, err := m.NewSession()
	if err != nil {
		return err
	}
	start := func() []chat.Message {
		if *system == "" {
			return nil
		}
		return []chat.Message{{Role: "system", Content: *system}}
	}
	msgs := start()
	in := bufio.NewScanner(env.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	fmt.Fprintf(env.Stderr, "chat with %s (template %s); /reset starts over, end of input quits\n", m.Engine.Name(), m.Template)
	for {
		fmt.Fprint(env.Stderr, "> ")
		if !in.Scan() {
			return in.Err()
		}
		line := strings.TrimSpace(in.Text())
		switch line {
		case "":
			continue
		case "/reset":
			msgs = start()
			sess.Reset()
			continue
		}
		turn := append(msgs, chat.Message{Role: "user", Content: line})
		ids, err := m.ChatPrompt(turn)
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		reply, err := streamReply(ctx, env, sess, ids, opts)
		stop()
		fmt.Fprintln(env.Stdout)
		if err != nil {
			if _, tooLong := err.(*model.ContextError); tooLong {
				fmt.Fprintf(env.Stderr, "%v; /reset to start over\n", err)
				continue
			}
			return err
		}
		msgs = append(turn, chat.Message{Role: "assistant", Content: reply})
	}
}
