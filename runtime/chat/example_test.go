package chat_test

import (
	"fmt"

	"github.com/gemmac/gemmac/runtime/chat"
)

func ExampleRender() {
	msgs := []chat.Message{
		{Role: "system", Content: "Answer in one word."},
		{Role: "user", Content: "  Capital of France?\n"},
	}
	for _, name := range []string{"systemgemma2", "gemma3"} {
		prompt, err := chat.Render(name, msgs, true)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%s: %q\n", name, prompt)
	}
	_, err := chat.Render("gemma2", msgs, true)
	fmt.Println(err)
	// Output:
	// systemgemma2: "<bos>Answer in one word.\n<start_of_turn>user\nCapital of France?<end_of_turn>\n<start_of_turn>model\n"
	// gemma3: "<bos><start_of_turn>user\nAnswer in one word.\n\nCapital of France?<end_of_turn>\n<start_of_turn>model\n"
	// chat: gemma2 template: message 0 (role "system"): system role not supported (use the "systemgemma2" or "gemma3" template)
}
