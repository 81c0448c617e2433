package main

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// Autobahn's permessage-deflate offers (autobahn 0.10.9's PerMessageDeflateOffer): by
// default the client accepts client_no_context_takeover and client_max_window_bits; the
// 13.x cases add what they request of the server.
const abOffer = "permessage-deflate; client_no_context_takeover; client_max_window_bits"

// deflateParamSets are the client offers of cases 13.1 to 13.7, in order, and whether
// wsserver (coder/websocket) accepts them. coder/websocket declines an offer asking for
// server_max_window_bits below 15 (Go's compress/flate always uses a 32 KiB window), so
// 13.3.x and 13.5.x end with no compression: Autobahn reports them UNIMPLEMENTED. 13.7
// offers three configurations; the second is taken.
var deflateParamSets = []struct {
	offers   []string
	declined bool
}{
	{offers: []string{abOffer}},
	{offers: []string{abOffer + "; server_no_context_takeover"}},
	{offers: []string{abOffer + "; server_max_window_bits=9"}, declined: true},
	{offers: []string{abOffer + "; server_max_window_bits=15"}},
	{offers: []string{abOffer + "; server_no_context_takeover; server_max_window_bits=9"}, declined: true},
	{offers: []string{abOffer + "; server_no_context_takeover; server_max_window_bits=15"}},
	{offers: []string{abOffer + "; server_no_context_takeover; server_max_window_bits=9",
		abOffer + "; server_no_context_takeover", abOffer}},
}

// deflateSizes are some of Autobahn's (message size, auto-fragment size) pairs for 12.x and
// 13.x, with their index there (the case's last number) and how many messages this test
// sends of each (Autobahn sends 1,000).
var deflateSizes = []struct {
	i, n, frag, count int
}{
	{1, 16, 0, 50}, {4, 1024, 0, 50}, {6, 8192, 0, 20}, {9, 65536, 0, 10}, {10, 131072, 0, 5},
	{14, 65536, 256, 5}, {17, 131072, 4096, 5},
}

// corpus is a data set for 12.x: Autobahn sends successive slices of a file (JSON, a bitmap,
// a book, HTML, a PDF); these are made up in their likeness, deterministically.
type corpus struct {
	name   string
	binary bool
	data   []byte
}

func deflateCorpora() []corpus {
	rng := rand.New(rand.NewPCG(12, 1))
	words := []string{"Faust", "Gretchen", "Mephistopheles", "Studierzimmer", "über", "Nacht", "Straße",
		"Hexenküche", "Walpurgisnacht", "Geist", "der", "die", "das", "und", "ich", "nicht", "zu", "Ä", "ß"}
	var js, html, book strings.Builder
	js.WriteString("[")
	html.WriteString("<!DOCTYPE html><html><body><table>")
	for i := 0; js.Len() < 256<<10; i++ {
		fmt.Fprintf(&js, `{"id":%d,"name":"%s %s","score":%.4f,"tags":["%s","α","β"],"active":%v},`,
			i, words[rng.IntN(len(words))], words[rng.IntN(len(words))], rng.Float64(), words[rng.IntN(len(words))], i%3 == 0)
		fmt.Fprintf(&html, `<tr class="row%d"><td>%d</td><td><a href="/item/%d">%s</a></td><td>%s &amp; ünïcødé</td></tr>`,
			i%2, i, rng.IntN(1e6), words[rng.IntN(len(words))], words[rng.IntN(len(words))])
		for range 12 {
			book.WriteString(words[rng.IntN(len(words))] + " ")
		}
		book.WriteString(".\n")
	}
	bitmap := make([]byte, 256<<10) // smooth gradients with noise: compresses somewhat
	for i := range bitmap {
		bitmap[i] = byte(i%512/2 + rng.IntN(8))
	}
	noise := make([]byte, 256<<10) // compressed data already: does not compress
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	return []corpus{
		{"json_data1", false, []byte(js.String())},
		{"lena512", true, bitmap},
		{"gutenberg_faust", true, []byte(book.String())},
		{"html_data1", false, []byte(html.String())},
		{"ooms", true, noise},
	}
}

// slices returns count successive slices of about n bytes of the corpus, wrapping around
// (text on code point boundaries, so that each is valid UTF-8).
func (cp corpus) slices(n, count int) [][]byte {
	var out [][]byte
	pos := 0
	for range count {
		m := make([]byte, 0, n)
		for len(m) < n {
			k := min(n-len(m), len(cp.data)-pos)
			m = append(m, cp.data[pos:pos+k]...)
			pos = (pos + k) % len(cp.data)
		}
		if !cp.binary {
			for !utf8.Valid(m) {
				m = m[:len(m)-1] // a code point cut at the end
			}
			for len(m) > 0 && !utf8.FullRune(m[:1]) {
				m = m[1:]
			}
			for !utf8.Valid(m) {
				m = m[1:] // a code point cut at the start
			}
		}
		out = append(out, m)
	}
	return out
}

// deflateRun sends the messages one at a time, compressed, each in frames of frag bytes
// (0: one frame), and requires each back before the next; with declined, it requires the
// server to have declined the offer instead (Autobahn then closes: UNIMPLEMENTED).
func deflateRun(msgs [][]byte, binary bool, frag int, declined bool) func(c *abClient) {
	return func(c *abClient) {
		if declined {
			require.Nil(c.t, c.deflate, "the server accepted an offer coder/websocket was known to decline")
			return
		}
		require.NotNil(c.t, c.deflate, "the server declined permessage-deflate")
		op := byte(opText)
		if binary {
			op = opBinary
		}
		inflated := c.inflated
		for _, m := range msgs {
			c.sendMessage(op, m, frag)
			c.expect(event{kind: "message", binary: binary, data: string(m)})
		}
		if len(msgs[0]) >= 512 {
			require.Greater(c.t, c.inflated, inflated, "the server sent no compressed message")
		}
	}
}

// compressionCases are a few of 12.x (Autobahn's default offer, five kinds of data) and
// 13.x (JSON, the offers of 13.1 to 13.7), and x.12: the offer browsers make, which lets
// both sides keep their compression context across messages.
func compressionCases() []abCase {
	var cs []abCase
	corpora := deflateCorpora()
	for j, cp := range corpora {
		for _, sz := range deflateSizes {
			if sz.n > 65536 && cp.name != "json_data1" && cp.name != "ooms" {
				continue
			}
			cs = append(cs, abCase{id: fmt.Sprintf("12.%d.%d", j+1, sz.i), dial: dialOptions{offers: []string{abOffer}},
				run: deflateRun(cp.slices(sz.n, sz.count), cp.binary, sz.frag, false), end: closeNormal})
		}
	}
	for j, ps := range deflateParamSets {
		for _, sz := range deflateSizes {
			if sz.n > 65536 {
				continue
			}
			cs = append(cs, abCase{id: fmt.Sprintf("13.%d.%d", j+1, sz.i), dial: dialOptions{offers: ps.offers},
				run: deflateRun(corpora[0].slices(sz.n, sz.count), false, sz.frag, ps.declined), end: closeNormal})
		}
	}
	browser := []string{"permessage-deflate; client_max_window_bits"}
	cs = append(cs,
		abCase{id: "x.12.1", dial: dialOptions{offers: browser},
			run: deflateRun(corpora[0].slices(4096, 30), false, 0, false), end: closeNormal},
		abCase{id: "x.12.2", dial: dialOptions{offers: browser},
			run: deflateRun(corpora[3].slices(20000, 10), false, 1000, false), end: closeNormal},
	)
	return cs
}
