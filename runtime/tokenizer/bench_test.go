package tokenizer

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// proseWords are common English words; englishProse strings them into
// sentences and paragraphs.
var proseWords = strings.Fields(`
the of and to in is was that for it with as his on be at by had are but from
or have an they which one you were her all she there would their we him been
has when who will more no if out so said what up its about into than them can
only other new some could time these two may then do first any my now such
like our over man me even most made after also did many before must through
back years where much your way well down should because each just those people
how too little state good very make world still own see men work long get here
between both life being under never day same another know while last might us
great old year off come since against go came right used take three states
himself few house use during without again place American around however home
small found thought went say part once general high upon school every never
does got united left number course war until always away something fact though
water less public put think almost hand enough far took head yet government
system better set told nothing night end why called didn't eyes find going look
asked later knew point next program city business give group toward young days
let room president side social given present several order national possible
rather second face per among form important often things looked early white
case John become large big need four within felt along children saw best
church ever least power development light thing seemed family interest want
members mind country area others done turned although open problem really`)

// englishProse returns about n bytes of deterministic English-like prose:
// capitalised sentences of common words with commas, periods and question
// marks, in paragraphs separated by blank lines.
func englishProse(n int) string {
	rng := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	b.Grow(n + 200)
	for b.Len() < n {
		sentences := 3 + rng.IntN(6)
		for s := 0; s < sentences; s++ {
			words := 5 + rng.IntN(16)
			for w := 0; w < words; w++ {
				word := proseWords[rng.IntN(len(proseWords))]
				if w == 0 {
					word = strings.ToUpper(word[:1]) + word[1:]
				} else {
					b.WriteByte(' ')
				}
				b.WriteString(word)
				if w > 1 && w < words-2 && rng.IntN(9) == 0 {
					b.WriteByte(',')
				}
			}
			if rng.IntN(6) == 0 {
				b.WriteString("? ")
			} else {
				b.WriteString(". ")
			}
		}
		b.WriteString("\n\n")
	}
	return b.String()
}

// BenchmarkEncodeEnglish measures Encode on 4 MB of English prose with the
// Gemma-3 tokenizer, in one call (the throughput target is 5 MB/s).
func BenchmarkEncodeEnglish(b *testing.B) {
	tok := gemmaTokenizer(b)
	text := englishProse(4 << 20)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	var n int
	for b.Loop() {
		n = len(tok.Encode(text, true))
	}
	b.ReportMetric(float64(len(text))/float64(n), "bytes/token")
}

// BenchmarkEncodeEnglishOneWord is the worst case for the merge loop: the
// gocoder tokenizer has no "\n" added token, so the whole 1 MB text is a
// single BPE word.
func BenchmarkEncodeEnglishOneWord(b *testing.B) {
	tok := gocoderTokenizer(b)
	text := englishProse(1 << 20)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		tok.Encode(text, false)
	}
}

func BenchmarkDecodeEnglish(b *testing.B) {
	tok := gemmaTokenizer(b)
	text := englishProse(1 << 20)
	ids := tok.Encode(text, false)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		tok.Decode(ids, false)
	}
}

func BenchmarkLoadGemma(b *testing.B) {
	requireFile(b, gemmaPath)
	for b.Loop() {
		if _, err := Load(gemmaPath); err != nil {
			b.Fatal(err)
		}
	}
}
