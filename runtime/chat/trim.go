package chat

import (
	"strings"
	"unicode"
)

// trimSpace implements the Jinja trim filter as @huggingface/jinja does,
// which delegates to JavaScript's String.prototype.trim. Its whitespace
// set is ECMAScript WhiteSpace plus LineTerminator: Unicode Zs, TAB, VT,
// FF, LF, CR, U+2028, U+2029 and U+FEFF.
//
// That differs from Go's unicode.IsSpace in two runes: JavaScript strips
// the byte-order mark U+FEFF but not NEL U+0085. Python's str.strip
// (jinja2) differs again (it strips U+001C..U+001F and U+0085 but not
// U+FEFF); the reference outputs follow JavaScript.
func trimSpace(s string) string {
	return strings.TrimFunc(s, isJSSpace)
}

func isJSSpace(r rune) bool {
	switch r {
	case '\uFEFF':
		return true
	case '\u0085':
		return false
	}
	return unicode.IsSpace(r)
}
