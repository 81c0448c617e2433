package main

import (
	"context"
	"flag"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/wsserver"
)

// The conformance test replays Autobahn|Testsuite's fuzzingclient cases (its
// autobahntestsuite/case/*.py, which the README tells how to run for real) against this
// command as the README runs it for conformance suites, once per wsserver transport, with a
// raw client (abClient) that sends each case's frames byte for byte, in the writes Autobahn
// makes, and judges the outcome as Autobahn does:
//
//   - the events: the messages, pings and pongs the server sent before its close frame
//     must be the case's expected ones, in order (Autobahn's "OK"; where Autobahn also
//     accepts a "NON-STRICT" outcome, this test still wants the strict one);
//   - the close: the endpoint Autobahn expects closes first (the client, or the server
//     failing the connection); the server's close code is one the case allows (or none);
//     where the case requires it, the close handshake completes; and the server then
//     closes the TCP connection (Autobahn's client drops it after 1 s, which it reports as
//     FAILED BY CLIENT or unclean). "Failing the connection" passes with a close frame
//     carrying an allowed code, or with the TCP connection closed without one.
//
// Autobahn's timers (killAfter, closeAfter) become waits for the events the case expects,
// and each wait has a deadline that fails the case loudly. Cases whose outcome Autobahn
// calls INFORMATIONAL (7.1.6, 7.13.x) are run for a proper close only. The 9.x cases that
// move 16 MiB run in TestConformanceLimits. Case ids are Autobahn's; "x." ids are this
// test's own additions (what Autobahn's client never does: frames in the same write as the
// upgrade request, control frames with RSV bits, a browser's deflate offer).

// conformanceArgs is the README's command for conformance suites, without "go run ./examples/echo".
const conformanceArgs = "-addr 127.0.0.1:9001 -readlimit 16777216 -compress"

// conformanceWait bounds each wait of a case: a read, a write, the server's close.
const conformanceWait = 10 * time.Second

// closing is how a case ends, as Autobahn's expectedClose says.
type closing struct {
	byServer bool  // the server fails the connection (closedByMe false); else the client closes
	codes    []int // the close codes allowed from the server (a close frame without one passes too)
	clean    bool  // the close handshake must complete (requireClean)
}

var (
	closeNormal = closing{codes: []int{1000}, clean: true}
	failWith    = func(code int) closing { return closing{byServer: true, codes: []int{code}} }
)

// abCase is one fuzzingclient case.
type abCase struct {
	id   string
	dial dialOptions
	run  func(c *abClient) // what the client sends (and, for some cases, awaits)
	want []event           // the events Autobahn calls OK
	end  closing
	info bool // Autobahn calls the outcome INFORMATIONAL: only the close is judged
	wait time.Duration
	// perKind: the messages must come in order, and the pongs, but a pong may overtake
	// an echo (the echo goes through the handler; RFC 6455 orders neither). x. cases only.
	perKind bool
}

// conformanceTransports are the transports every case runs under.
var conformanceTransports = []wsserver.Transport{wsserver.TransportReadiness, wsserver.TransportGoroutine}

func TestConformance(t *testing.T) {
	requireREADMECommand(t)
	cases := conformanceCases()
	for _, tr := range conformanceTransports {
		t.Run(tr.String(), func(t *testing.T) {
			addr := startConformanceServer(t, tr)
			for _, tc := range cases {
				t.Run(tc.id, func(t *testing.T) { runABCase(t, addr, tc) })
			}
		})
	}
}

// requireREADMECommand checks that the README gives the command this test runs.
func requireREADMECommand(t *testing.T) {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	require.Contains(t, string(readme), "go run ./examples/echo "+conformanceArgs)
}

// startConformanceServer runs the command with conformanceArgs (on a free port, on
// transport tr) until the test ends, then requires it to shut down cleanly.
func startConformanceServer(t *testing.T, tr wsserver.Transport) string {
	t.Helper()
	cfg, err := parseFlags(flag.NewFlagSet("echo", flag.ContinueOnError), strings.Fields(conformanceArgs))
	require.NoError(t, err)
	cfg.opts.Transport = tr
	cfg.opts.Logger = slog.New(slog.DiscardHandler) // the failed connections are the point
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln, cfg.pprof, cfg.opts) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(2 * conformanceWait):
			t.Fatal("the echo server did not shut down")
		}
	})
	return ln.Addr().String()
}

// runABCase runs one case on a new connection and judges it.
func runABCase(t *testing.T, addr string, tc abCase) {
	t.Helper()
	wait := tc.wait
	if wait == 0 {
		wait = conformanceWait
	}
	h := fnv.New64a()
	h.Write([]byte(tc.id))
	c := dialAB(t, addr, h.Sum64(), wait, tc.dial)
	tc.run(c)

	var got []event
	var cl *closeSeen
	var err error
	read := func() {
		var ev event
		ev, cl, err = c.next()
		if cl == nil && err == nil {
			got = append(got, ev)
		}
	}
	if !tc.end.byServer {
		// Autobahn's client starts the close handshake once it has what it expects (or on
		// its timer, after which the events must still be those).
		for !c.closeSent && len(got) < len(tc.want) && cl == nil && err == nil && tc.onTrack(got) {
			read()
		}
		if !c.closeSent && cl == nil && err == nil {
			c.send(closeFrame(1000, ""))
		}
	}
	for cl == nil && err == nil {
		read()
	}
	closedByClient := c.closeSent
	if err != nil {
		require.ErrorIs(t, err, errServerClosed, "the server neither closed nor sent what the case expects within %v; events so far: %v", wait, got)
	}
	if cl != nil {
		if !c.closeSent {
			c.sendQuiet(closeFrame(1000, "")) // Autobahn's reply to the server's close
		}
		// Then the server closes the TCP connection, having sent nothing more.
		_, extra, err := c.next()
		require.ErrorIs(t, err, errServerClosed, "after its close frame (%+v) the server must close the TCP connection and send nothing more (got close %v)", *cl, extra)
	}

	switch {
	case tc.perKind:
		require.Equal(t, ofKind(tc.want, "message"), ofKind(got, "message"), "the messages the server sent (all events: %v)", got)
		require.Equal(t, ofKind(tc.want, "pong"), ofKind(got, "pong"), "the pongs the server sent (all events: %v)", got)
		require.Len(t, got, len(tc.want), "the events the server sent")
	case !tc.info:
		require.Equal(t, nonNil(tc.want), nonNil(got), "the events the server sent (Autobahn's expected events: %v)", tc.want)
	}
	require.Equal(t, tc.end.byServer, !closedByClient, "the connection was closed by the wrong endpoint")
	if tc.end.clean {
		require.NotNil(t, cl, "the close handshake must complete: the server closed the TCP connection without a close frame")
	}
	if cl != nil && cl.code != 0 && !tc.info {
		require.Contains(t, tc.end.codes, cl.code, "the server's close code (reason %q)", cl.reason)
	}
}

// onTrack reports whether the events so far can still turn into the expected ones.
func (tc *abCase) onTrack(got []event) bool {
	prefix := func(got, want []event) bool { return len(got) <= len(want) && slices.Equal(got, want[:len(got)]) }
	switch {
	case tc.info:
		return true
	case tc.perKind:
		return prefix(ofKind(got, "message"), ofKind(tc.want, "message")) && prefix(ofKind(got, "pong"), ofKind(tc.want, "pong"))
	}
	return prefix(got, tc.want)
}

func ofKind(evs []event, kind string) []event {
	out := []event{}
	for _, e := range evs {
		if e.kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func nonNil(e []event) []event {
	if e == nil {
		return []event{}
	}
	return e
}

// sendQuiet sends frames, ignoring a write error (the server may have closed already).
func (c *abClient) sendQuiet(fs ...frame) {
	var b []byte
	for _, f := range fs {
		b = append(b, c.bytes(f)...)
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.wait))
	_, _ = c.nc.Write(b)
}

// expect reads events and requires them to be evs, in order (for cases that wait for an
// answer before they go on, as 5.19 does).
func (c *abClient) expect(evs ...event) {
	c.t.Helper()
	for _, want := range evs {
		ev, cl, err := c.next()
		require.NoError(c.t, err, "waiting for %v", want)
		require.Nil(c.t, cl, "waiting for %v, the server closed", want)
		require.Equal(c.t, want, ev)
	}
}

// repeat returns s repeated to n bytes, as Autobahn's payload_len does.
func repeat(s string, n int) string {
	return strings.Repeat(s, n/len(s)+1)[:n]
}

func conformanceCases() []abCase {
	var cs []abCase
	add := func(c ...abCase) { cs = append(cs, c...) }

	// 1.x Framing: text and binary messages of every length class, whole and chopped.
	for i, n := range []int{0, 125, 126, 127, 128, 65535, 65536} {
		text, bin := repeat("*", n), []byte(strings.Repeat("\xfe", n))
		add(abCase{id: fmt.Sprintf("1.1.%d", i+1), run: func(c *abClient) { c.send(textFrame(text)) },
			want: []event{msgEvent(text)}, end: closeNormal})
		add(abCase{id: fmt.Sprintf("1.2.%d", i+1), run: func(c *abClient) { c.send(binaryFrame(bin)) },
			want: []event{binEvent(bin)}, end: closeNormal})
	}
	text64k, bin64k := repeat("*", 65536), []byte(strings.Repeat("\xfe", 65536))
	add(abCase{id: "1.1.8", run: func(c *abClient) { c.sendChopped(997, textFrame(text64k)) },
		want: []event{msgEvent(text64k)}, end: closeNormal})
	add(abCase{id: "1.2.8", run: func(c *abClient) { c.sendChopped(997, binaryFrame(bin64k)) },
		want: []event{binEvent(bin64k)}, end: closeNormal})

	// 2.x Pings and pongs.
	fe125, fe126 := strings.Repeat("\xfe", 125), strings.Repeat("\xfe", 126)
	add(
		abCase{id: "2.1", run: func(c *abClient) { c.send(pingFrame("")) }, want: []event{pongEvent("")}, end: closeNormal},
		abCase{id: "2.2", run: func(c *abClient) { c.send(pingFrame("Hello, world!")) }, want: []event{pongEvent("Hello, world!")}, end: closeNormal},
		abCase{id: "2.3", run: func(c *abClient) { c.send(pingFrame("\x00\xff\xfe\xfd\xfc\xfb\x00\xff")) },
			want: []event{pongEvent("\x00\xff\xfe\xfd\xfc\xfb\x00\xff")}, end: closeNormal},
		abCase{id: "2.4", run: func(c *abClient) { c.send(pingFrame(fe125)) }, want: []event{pongEvent(fe125)}, end: closeNormal},
		abCase{id: "2.5", run: func(c *abClient) { c.send(pingFrame(fe126)) }, end: failWith(1002)},
		abCase{id: "2.6", run: func(c *abClient) { c.sendChopped(1, pingFrame(fe125)) }, want: []event{pongEvent(fe125)}, end: closeNormal},
		abCase{id: "2.7", run: func(c *abClient) { c.send(pongFrame(""), closeFrame(1000, "")) }, end: closeNormal},
		abCase{id: "2.8", run: func(c *abClient) { c.send(pongFrame("unsolicited pong payload"), closeFrame(1000, "")) }, end: closeNormal},
		abCase{id: "2.9", run: func(c *abClient) { c.send(pongFrame("unsolicited pong payload"), pingFrame("ping payload")) },
			want: []event{pongEvent("ping payload")}, end: closeNormal},
	)
	var pings []frame
	var pongs []event
	for i := range 10 {
		p := fmt.Sprintf("payload-%d", i)
		pings, pongs = append(pings, pingFrame(p)), append(pongs, pongEvent(p))
	}
	add(abCase{id: "2.10", run: func(c *abClient) { c.send(pings...) }, want: pongs, end: closeNormal},
		abCase{id: "2.11", run: func(c *abClient) { c.sendChopped(1, pings...) }, want: pongs, end: closeNormal})

	// 3.x Reserved bits: the frame with one fails the connection; what came before is echoed,
	// nothing after it is answered.
	hello := "Hello, world!"
	withRSV := func(f frame, rsv byte) frame { f.rsv = rsv; return f }
	add(
		abCase{id: "3.1", run: func(c *abClient) { c.send(withRSV(textFrame(hello), 1)) }, end: failWith(1002)},
		abCase{id: "3.2", run: func(c *abClient) { c.send(textFrame(hello), withRSV(textFrame(hello), 2), pingFrame("")) },
			want: []event{msgEvent(hello)}, end: failWith(1002)},
		abCase{id: "3.3", run: func(c *abClient) { c.sendEach(textFrame(hello), withRSV(textFrame(hello), 3), pingFrame("")) },
			want: []event{msgEvent(hello)}, end: failWith(1002)},
		abCase{id: "3.4", run: func(c *abClient) { c.sendChopped(1, textFrame(hello), withRSV(textFrame(hello), 4), pingFrame("")) },
			want: []event{msgEvent(hello)}, end: failWith(1002)},
		abCase{id: "3.5", run: func(c *abClient) { c.send(withRSV(binaryFrame([]byte("\x00\xff\xfe\xfd\xfc\xfb\x00\xff")), 5)) }, end: failWith(1002)},
		abCase{id: "3.6", run: func(c *abClient) { c.send(withRSV(binaryFrame([]byte(hello)), 6)) }, end: failWith(1002)},
		abCase{id: "3.7", run: func(c *abClient) { c.send(frame{op: opClose, rsv: 7}) }, end: failWith(1002)},
		// Control frames with reserved bits, on their own and right behind a message in
		// the same write (the readiness transport answers pings itself).
		abCase{id: "x.3.1", run: func(c *abClient) { c.send(withRSV(pingFrame("ping"), 4)) }, end: failWith(1002)},
		abCase{id: "x.3.2", run: func(c *abClient) { c.send(textFrame(hello), withRSV(pingFrame("ping"), 1), pingFrame("")) },
			want: []event{msgEvent(hello)}, end: failWith(1002)},
		abCase{id: "x.3.3", run: func(c *abClient) { c.send(withRSV(pongFrame("pong"), 2), pingFrame("")) }, end: failWith(1002)},
	)

	// 4.x Reserved opcodes: the same five cases for the data opcodes 3-7 (4.1.x) and the
	// control opcodes 11-15 (4.2.x).
	op := func(o byte, payload string) frame { return frame{op: o, payload: []byte(payload)} }
	for i, ops := range [][5]byte{{3, 4, 5, 6, 7}, {11, 12, 13, 14, 15}} {
		id := func(k int) string { return fmt.Sprintf("4.%d.%d", i+1, k) }
		add(
			abCase{id: id(1), run: func(c *abClient) { c.send(op(ops[0], "")) }, end: failWith(1002)},
			abCase{id: id(2), run: func(c *abClient) { c.send(op(ops[1], "reserved opcode payload")) }, end: failWith(1002)},
			abCase{id: id(3), run: func(c *abClient) { c.send(textFrame(hello), op(ops[2], ""), pingFrame("")) },
				want: []event{msgEvent(hello)}, end: failWith(1002)},
			abCase{id: id(4), run: func(c *abClient) { c.send(textFrame(hello), op(ops[3], hello), pingFrame("")) },
				want: []event{msgEvent(hello)}, end: failWith(1002)},
			abCase{id: id(5), run: func(c *abClient) { c.sendChopped(1, textFrame(hello), op(ops[4], hello), pingFrame("")) },
				want: []event{msgEvent(hello)}, end: failWith(1002)},
		)
	}

	// 5.x Fragmentation.
	fragPing := func(o byte) []frame {
		return []frame{{op: o, more: true, payload: []byte("fragment1")}, cont("fragment2", true)}
	}
	f12 := []frame{first(opText, "fragment1"), cont("fragment2", true)}
	withPing := []frame{first(opText, "fragment1"), pingFrame("ping payload"), cont("fragment2", true)}
	pongThenMsg := []event{pongEvent("ping payload"), msgEvent("fragment1fragment2")}
	noCont := []frame{cont("non-continuation payload", true), textFrame(hello)}
	noContMore := []frame{cont("non-continuation payload", false), textFrame(hello)}
	add(
		abCase{id: "5.1", run: func(c *abClient) { c.send(fragPing(opPing)...) }, end: failWith(1002)},
		abCase{id: "5.2", run: func(c *abClient) { c.send(fragPing(opPong)...) }, end: failWith(1002)},
		abCase{id: "5.3", run: func(c *abClient) { c.send(f12...) }, want: []event{msgEvent("fragment1fragment2")}, end: closeNormal},
		abCase{id: "5.4", run: func(c *abClient) { c.sendEach(f12...) }, want: []event{msgEvent("fragment1fragment2")}, end: closeNormal},
		abCase{id: "5.5", run: func(c *abClient) { c.sendChopped(1, f12...) }, want: []event{msgEvent("fragment1fragment2")}, end: closeNormal},
		abCase{id: "5.6", run: func(c *abClient) { c.send(withPing...) }, want: pongThenMsg, end: closeNormal},
		abCase{id: "5.7", run: func(c *abClient) { c.sendEach(withPing...) }, want: pongThenMsg, end: closeNormal},
		abCase{id: "5.8", run: func(c *abClient) { c.sendChopped(1, withPing...) }, want: pongThenMsg, end: closeNormal},
		abCase{id: "5.9", run: func(c *abClient) { c.send(noCont...) }, end: failWith(1002)},
		abCase{id: "5.10", run: func(c *abClient) { c.sendEach(noCont...) }, end: failWith(1002)},
		abCase{id: "5.11", run: func(c *abClient) { c.sendChopped(1, noCont...) }, end: failWith(1002)},
		abCase{id: "5.12", run: func(c *abClient) { c.send(noContMore...) }, end: failWith(1002)},
		abCase{id: "5.13", run: func(c *abClient) { c.sendEach(noContMore...) }, end: failWith(1002)},
		abCase{id: "5.14", run: func(c *abClient) { c.sendChopped(1, noContMore...) }, end: failWith(1002)},
		abCase{id: "5.15", run: func(c *abClient) {
			c.send(first(opText, "fragment1"), cont("fragment2", true), cont("fragment3", false), textFrame("fragment4"))
		}, want: []event{msgEvent("fragment1fragment2")}, end: failWith(1002)},
		abCase{id: "5.16", run: func(c *abClient) {
			for range 2 {
				c.send(cont("fragment1", false), first(opText, "fragment2"), cont("fragment3", true))
			}
		}, end: failWith(1002)},
		abCase{id: "5.17", run: func(c *abClient) {
			for range 2 {
				c.send(cont("fragment1", true), first(opText, "fragment2"), cont("fragment3", true))
			}
		}, end: failWith(1002)},
		abCase{id: "5.18", run: func(c *abClient) { c.send(first(opText, "fragment1"), textFrame("fragment2")) }, end: failWith(1002)},
	)
	// 5.19 and 5.20: the first ping is answered before the message is complete (the
	// client waits for its pong before it sends the rest: Autobahn waits 1 s).
	for i, send := range []func(c *abClient, fs ...frame){(*abClient).send, (*abClient).sendEach} {
		add(abCase{id: fmt.Sprintf("5.%d", 19+i), run: func(c *abClient) {
			send(c, first(opText, "fragment1"), cont("fragment2", false), pingFrame("pongme 1!"))
			c.expect(pongEvent("pongme 1!"))
			send(c, cont("fragment3", false), cont("fragment4", false), pingFrame("pongme 2!"), cont("fragment5", true))
		}, want: []event{pongEvent("pongme 2!"), msgEvent("fragment1fragment2fragment3fragment4fragment5")}, end: closeNormal})
	}

	add(utf8Cases()...)
	add(closeCases()...)
	add(limitCases(false)...)
	add(compressionCases()...)
	add(extraCases()...)
	return cs
}

// utf8Cases are 6.x: text messages whose UTF-8 is valid or not, whole, in fragments, and
// split inside a code point; an invalid one fails the connection with 1007, at the first
// byte that cannot be UTF-8 (6.4.x: before the rest of the message is sent).
func utf8Cases() []abCase {
	var cs []abCase
	add := func(c ...abCase) { cs = append(cs, c...) }
	mid := "middle frame payload"
	add(
		abCase{id: "6.1.1", run: func(c *abClient) { c.send(textFrame("")) }, want: []event{msgEvent("")}, end: closeNormal},
		abCase{id: "6.1.2", run: func(c *abClient) { c.send(first(opText, ""), cont("", false), cont("", true)) },
			want: []event{msgEvent("")}, end: closeNormal},
		abCase{id: "6.1.3", run: func(c *abClient) { c.send(first(opText, ""), cont(mid, false), cont("", true)) },
			want: []event{msgEvent(mid)}, end: closeNormal},
	)
	greek := "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5" // κόσμε
	mixed := "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!"
	add(
		abCase{id: "6.2.1", run: func(c *abClient) { c.send(textFrame(mixed)) }, want: []event{msgEvent(mixed)}, end: closeNormal},
		abCase{id: "6.2.2", run: func(c *abClient) {
			split := strings.Index(mixed, "\xc3\xbc") // on a code point boundary
			c.send(first(opText, mixed[:split]), cont(mixed[split:], true))
		}, want: []event{msgEvent(mixed)}, end: closeNormal},
		abCase{id: "6.2.3", run: func(c *abClient) { c.send(fragments(opText, []byte(mixed), 1)...) }, want: []event{msgEvent(mixed)}, end: closeNormal},
		abCase{id: "6.2.4", run: func(c *abClient) { c.send(fragments(opText, []byte(greek), 1)...) }, want: []event{msgEvent(greek)}, end: closeNormal},
	)
	bad := greek + "\xed\xa0\x80" + "edited" // a surrogate: invalid at its second byte (the 13th)
	add(
		abCase{id: "6.3.1", run: func(c *abClient) { c.send(textFrame(bad)) }, end: failWith(1007)},
		abCase{id: "6.3.2", run: func(c *abClient) { c.send(fragments(opText, []byte(bad), 1)...) }, end: failWith(1007)},
	)
	// 6.4.x fail fast: the server fails the connection on the part that makes the message
	// invalid, without the rest (which is never sent). Autobahn calls failing only at the
	// end NON-STRICT; this test wants it strict. In 6.4.1 and 6.4.2 a ping after the first
	// part shows that the connection was not failed early.
	high := greek + "\xf4\x90\x80\x80" + "edited" // U+110000: invalid at \x90 (the 13th byte)
	add(
		abCase{id: "6.4.1", run: func(c *abClient) {
			c.send(first(opText, greek))
			c.send(pingFrame("A"))
			c.expect(pongEvent("A"))
			c.send(cont("\xf4\x90\x80\x80", false))
		}, end: failWith(1007)},
		abCase{id: "6.4.2", run: func(c *abClient) {
			c.send(first(opText, high[:12]))
			c.send(pingFrame("A"))
			c.expect(pongEvent("A"))
			c.send(cont(high[12:13], false))
		}, end: failWith(1007)},
		abCase{id: "6.4.3", run: func(c *abClient) { sendPartsOfOneFrame(c, high, len(greek), len(greek)+4) }, end: failWith(1007)},
		abCase{id: "6.4.4", run: func(c *abClient) { sendPartsOfOneFrame(c, high, 12, 13) }, end: failWith(1007)},
	)
	for _, g := range utf8Groups() {
		for j, s := range g.seqs {
			tc := abCase{id: fmt.Sprintf("6.%d.%d", g.n, j+1), run: func(c *abClient) { c.send(textFrame(s.s)) }}
			if s.valid {
				tc.want, tc.end = []event{msgEvent(s.s)}, closeNormal
			} else {
				tc.end = failWith(1007)
			}
			add(tc)
		}
	}
	return cs
}

// sendPartsOfOneFrame sends one text frame holding msg in two writes, split at a: the
// header and msg[:a], then msg[a:b]; the rest, msg[b:], is never sent (6.4.3, 6.4.4).
func sendPartsOfOneFrame(c *abClient, msg string, a, b int) {
	wire := c.bytes(textFrame(msg))
	h := len(wire) - len(msg)
	c.write(wire[:h+a])
	c.write(wire[h+a : h+b])
}

// utf8Seq is one of 6.5-6.23's payloads and whether it is valid UTF-8.
type utf8Seq struct {
	valid bool
	s     string
}

type utf8Group struct {
	n    int // the case subcategory: 6.n
	seqs []utf8Seq
}

// utf8Groups are the payloads of cases 6.5 to 6.23, in Autobahn's order: Markus Kuhn's UTF-8
// decoder test sequences (valid and invalid), the prefixes of a valid string, noncharacters
// and specials (which are valid UTF-8).
func utf8Groups() []utf8Group {
	v := func(ss ...string) []utf8Seq { return seqs(true, ss...) }
	x := func(ss ...string) []utf8Seq { return seqs(false, ss...) }
	greek := "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
	var prefixes []utf8Seq
	for i := 1; i <= len(greek); i++ {
		prefixes = append(prefixes, utf8Seq{utf8.ValidString(greek[:i]), greek[:i]})
	}
	var conts []byte // every continuation byte but the last, alone
	for b := 0x80; b < 0xbf; b++ {
		conts = append(conts, byte(b))
	}
	var lonely []utf8Seq
	for _, r := range [][2]int{{0xc0, 0xdf}, {0xe0, 0xef}, {0xf0, 0xf7}, {0xf8, 0xfb}, {0xfc, 0xfd}} {
		var s []byte
		for b := r[0]; b < r[1]; b++ {
			s = append(s, byte(b), ' ')
		}
		lonely = append(lonely, utf8Seq{false, string(s)})
	}
	missing := []string{"\xc0", "\xe0\x80", "\xf0\x80\x80", "\xf8\x80\x80\x80", "\xfc\x80\x80\x80\x80",
		"\xdf", "\xef\xbf", "\xf7\xbf\xbf", "\xfb\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf"}
	nonchars := v("\xef\xbf\xbe", "\xef\xbf\xbf")
	for _, z1 := range []byte{0xf0, 0xf1, 0xf2, 0xf3, 0xf4} {
		for _, z2 := range []byte{0x8f, 0x9f, 0xaf, 0xbf} {
			if z1 == 0xf4 && z2 != 0x8f {
				continue // above U+10FFFF
			}
			for _, z3 := range []byte{0xbe, 0xbf} {
				if z1 == 0xf0 && z2 == 0x8f {
					continue // overlong
				}
				nonchars = append(nonchars, utf8Seq{true, string([]byte{z1, z2, 0xbf, z3})})
			}
		}
	}
	groups := [][]utf8Seq{
		v("hello\x24world", "hello\xc2\xa2world", "hello\xe2\x82\xacworld", "hello\xf0\xa4\xad\xa2world", greek),
		prefixes,
		v("\x00", "\xc2\x80", "\xe0\xa0\x80", "\xf0\x90\x80\x80"),
		x("\xf8\x88\x80\x80\x80", "\xfc\x84\x80\x80\x80\x80"),
		v("\x7f", "\xdf\xbf", "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf"),
		x("\xf7\xbf\xbf\xbf", "\xfb\xbf\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf\xbf"),
		append(v("\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbd", "\xf4\x8f\xbf\xbf"), x("\xf4\x90\x80\x80")...),
		x("\x80", "\xbf", "\x80\xbf", "\x80\xbf\x80", "\x80\xbf\x80\xbf", "\x80\xbf\x80\xbf\x80", "\x80\xbf\x80\xbf\x80\xbf", string(conts)),
		lonely,
		x(missing...),
		x(strings.Join(missing, "")),
		x("\xfe", "\xff", "\xfe\xfe\xff\xff"),
		x("\xc0\xaf", "\xe0\x80\xaf", "\xf0\x80\x80\xaf", "\xf8\x80\x80\x80\xaf", "\xfc\x80\x80\x80\x80\xaf"),
		x("\xc1\xbf", "\xe0\x9f\xbf", "\xf0\x8f\xbf\xbf", "\xf8\x87\xbf\xbf\xbf", "\xfc\x83\xbf\xbf\xbf\xbf"),
		x("\xc0\x80", "\xe0\x80\x80", "\xf0\x80\x80\x80", "\xf8\x80\x80\x80\x80", "\xfc\x80\x80\x80\x80\x80"),
		x("\xed\xa0\x80", "\xed\xad\xbf", "\xed\xae\x80", "\xed\xaf\xbf", "\xed\xb0\x80", "\xed\xbe\x80", "\xed\xbf\xbf"),
		x("\xed\xa0\x80\xed\xb0\x80", "\xed\xa0\x80\xed\xbf\xbf", "\xed\xad\xbf\xed\xb0\x80", "\xed\xad\xbf\xed\xbf\xbf",
			"\xed\xae\x80\xed\xb0\x80", "\xed\xae\x80\xed\xbf\xbf", "\xed\xaf\xbf\xed\xb0\x80", "\xed\xaf\xbf\xed\xbf\xbf"),
		nonchars,
		v("\xef\xbf\xb9", "\xef\xbf\xba", "\xef\xbf\xbb", "\xef\xbf\xbc", "\xef\xbf\xbd", "\xef\xbf\xbe", "\xef\xbf\xbf"),
	}
	out := make([]utf8Group, len(groups))
	for i, g := range groups {
		out[i] = utf8Group{n: 5 + i, seqs: g}
	}
	return out
}

func seqs(valid bool, ss ...string) []utf8Seq {
	out := make([]utf8Seq, len(ss))
	for i, s := range ss {
		out[i] = utf8Seq{valid, s}
	}
	return out
}

// closeCases are 7.x: the close handshake, what follows a close frame, and the close
// frame's payload (its length, its code, its reason's UTF-8).
func closeCases() []abCase {
	var cs []abCase
	add := func(c ...abCase) { cs = append(cs, c...) }
	hw := "Hello World!"
	closeProto := closing{codes: []int{1002}}
	add(
		abCase{id: "7.1.1", run: func(c *abClient) { c.send(textFrame(hw)) }, want: []event{msgEvent(hw)}, end: closeNormal},
		abCase{id: "7.1.2", run: func(c *abClient) { c.send(closeFrame(1000, ""), frame{op: opClose}) }, end: closeNormal},
		abCase{id: "7.1.3", run: func(c *abClient) { c.send(closeFrame(1000, ""), pingFrame("")) }, end: closeNormal},
		abCase{id: "7.1.4", run: func(c *abClient) { c.send(closeFrame(1000, ""), textFrame(hw)) }, end: closeNormal},
		abCase{id: "7.1.5", run: func(c *abClient) {
			c.send(first(opText, "fragment1"), closeFrame(1000, ""), cont("fragment2", true))
		}, end: closeNormal},
		// 7.1.6: a 256 KiB message, a small one, the close and a ping, back to back: whether
		// the messages are echoed before the close is the server's choice (INFORMATIONAL).
		abCase{id: "7.1.6", run: func(c *abClient) {
			c.send(textFrame(repeat("BAsd7&jh23", 256<<10)), textFrame(hw), closeFrame(1000, ""), pingFrame(""))
		}, end: closeNormal, info: true},
		abCase{id: "7.3.1", run: func(c *abClient) { c.send(closeFrame(-1, "")) }, end: closeNormal},
		abCase{id: "7.3.2", run: func(c *abClient) { c.send(closeFrame(-1, "a")) }, end: closeProto},
		abCase{id: "7.3.3", run: func(c *abClient) { c.send(closeFrame(1000, "")) }, end: closeNormal},
		abCase{id: "7.3.4", run: func(c *abClient) { c.send(closeFrame(1000, hw)) }, end: closeNormal},
		abCase{id: "7.3.5", run: func(c *abClient) { c.send(closeFrame(1000, repeat("*", 123))) }, end: closeNormal},
		abCase{id: "7.3.6", run: func(c *abClient) { c.send(closeFrame(1000, repeat("*", 124))) }, end: closeProto},
		abCase{id: "7.5.1", run: func(c *abClient) {
			c.send(closeFrame(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64"))
		}, end: closing{codes: []int{1002, 1007}}},
	)
	for i, code := range []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999} {
		add(abCase{id: fmt.Sprintf("7.7.%d", i+1), run: func(c *abClient) { c.send(closeFrame(code, "")) },
			end: closing{codes: []int{1000, code}, clean: true}})
	}
	// Autobahn's list of invalid codes; older versions of it also had 1012-1015, which the
	// x.7.9 cases send: wsserver takes 1012-1014 (IANA's, for servers) as invalid from a
	// client too, and 1015 is never sent.
	for i, code := range []int{0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999} {
		add(abCase{id: fmt.Sprintf("7.9.%d", i+1), run: func(c *abClient) { c.send(closeFrame(code, "")) }, end: closeProto})
	}
	for _, code := range []int{1012, 1013, 1014, 1015, 5000, 65535} {
		add(abCase{id: fmt.Sprintf("x.7.9.%d", code), run: func(c *abClient) { c.send(closeFrame(code, "")) }, end: closeProto})
	}
	// 7.13.x: codes 5000 and up are undefined; Autobahn reports what happens (INFORMATIONAL).
	add(
		abCase{id: "7.13.1", run: func(c *abClient) { c.send(closeFrame(5000, "")) }, end: closing{}, info: true},
		abCase{id: "7.13.2", run: func(c *abClient) { c.send(closeFrame(65535, "")) }, end: closing{}, info: true},
	)
	return cs
}

// limitCases are 9.x at a few sizes: a message in one frame and in 64 KiB frames, text and
// binary, echoed whole. big adds the 16 MiB ones (TestConformanceLimits).
func limitCases(big bool) []abCase {
	var cs []abCase
	// Autobahn's cases for the text message; the binary one is 9.2, 9.4 or 9.6. Its payloads
	// start with 'B': the echo broadcasts them (to its only member).
	sizes := []struct {
		id    string
		n, fr int // message size, fragment size (0: one frame)
		chop  int // write size (0: as the socket takes it)
		isBig bool
	}{
		{id: "9.1.1", n: 64 << 10}, {id: "9.1.3", n: 1 << 20}, {id: "9.1.6", n: 16 << 20, isBig: true},
		{id: "9.3.6", n: 4 << 20, fr: 64 << 10}, {id: "x.9.3.1", n: 256 << 10, fr: 64},
		{id: "x.9.3", n: 16 << 20, fr: 64 << 10, isBig: true},
		{id: "9.5.6", n: 1 << 20, chop: 2048}, {id: "x.9.5.1", n: 64 << 10, chop: 64},
	}
	binaryID := strings.NewReplacer("9.1.", "9.2.", "9.3.", "9.4.", "9.5.", "9.6.", "x.9.3", "x.9.4")
	for _, s := range sizes {
		if s.isBig != big {
			continue
		}
		for _, binary := range []bool{false, true} {
			id, op, pattern := s.id, byte(opText), "BAsd7&jh23"
			if binary {
				id, op, pattern = binaryID.Replace(id), opBinary, "\x00\xfe\x23\xfa\xf0"
			}
			cs = append(cs, abCase{id: id, run: func(c *abClient) {
				c.sendStream(op, pattern, s.n, s.fr, s.chop)
				c.expectStream(op, pattern, s.n)
			}, end: closeNormal, wait: 4 * conformanceWait})
		}
	}
	if !big {
		// 9.7 and 9.8: round trips, one message at a time (Autobahn sends 1,000 of each size).
		for i, n := range []int{0, 16, 64, 256, 1024, 4096} {
			for _, binary := range []bool{false, true} {
				id := fmt.Sprintf("9.7.%d", i+1)
				b := byte('*')
				op := byte(opText)
				if binary {
					id, b, op = fmt.Sprintf("9.8.%d", i+1), 0xfe, opBinary
				}
				payload := bytesOf(b, n)
				cs = append(cs, abCase{id: id, run: func(c *abClient) {
					for range 100 {
						c.send(frame{op: op, payload: payload})
						c.expect(event{kind: "message", binary: binary, data: string(payload)})
					}
				}, end: closeNormal})
			}
		}
		// 10.1.1: 64 KiB in frames of 1,300 bytes.
		p := repeat("*", 65536)
		cs = append(cs, abCase{id: "10.1.1", run: func(c *abClient) { c.send(fragments(opText, []byte(p), 1300)...) },
			want: []event{msgEvent(p)}, end: closeNormal})
	}
	return cs
}

func bytesOf(b byte, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = b
	}
	return p
}

// TestConformanceLimits runs the 9.x cases that move 16 MiB messages, in one frame and in
// 64 KiB frames (Autobahn's 9.1.6 and 9.2.6, and this test's x.9.3 and x.9.4): the client
// streams them, never holding one whole.
func TestConformanceLimits(t *testing.T) {
	cases := limitCases(true)
	for _, tr := range conformanceTransports {
		t.Run(tr.String(), func(t *testing.T) {
			addr := startConformanceServer(t, tr)
			for _, tc := range cases {
				t.Run(tc.id, func(t *testing.T) { runABCase(t, addr, tc) })
			}
		})
	}
}

// extraCases are this test's own: what Autobahn's client does not send but other clients
// may, where the readiness transport reads past coder/websocket (frames in the same segment
// as the upgrade request or as each other, control frames among data frames).
func extraCases() []abCase {
	hello := "Hello, world!"
	return []abCase{
		{id: "x.1.1", perKind: true, dial: dialOptions{early: []frame{textFrame(hello), pingFrame("early")}},
			run: func(*abClient) {}, want: []event{msgEvent(hello), pongEvent("early")}, end: closeNormal},
		{id: "x.1.2", dial: dialOptions{early: []frame{textFrame(hello), {op: 5}, pingFrame("")}},
			run: func(*abClient) {}, want: []event{msgEvent(hello)}, end: failWith(1002)},
		{id: "x.1.3", dial: dialOptions{early: []frame{closeFrame(1000, "bye")}}, run: func(*abClient) {}, end: closeNormal},
		{id: "x.1.4", dial: dialOptions{early: []frame{{op: opPing, more: true, payload: []byte("x")}}},
			run: func(*abClient) {}, end: failWith(1002)},
		{id: "x.2.1", perKind: true, run: func(c *abClient) {
			c.send(textFrame("one"), pingFrame("1"), binaryFrame([]byte("two")), pongFrame("unsolicited"), pingFrame("2"))
		}, want: []event{msgEvent("one"), pongEvent("1"), binEvent([]byte("two")), pongEvent("2")}, end: closeNormal},
		{id: "x.2.2", run: func(c *abClient) { c.send(frame{op: opPing, more: true, payload: []byte("x")}) }, end: failWith(1002)},
		{id: "x.2.3", run: func(c *abClient) { c.send(textFrame(hello), frame{op: opPong, payload: bytesOf('p', 126)}) },
			want: []event{msgEvent(hello)}, end: failWith(1002)},
		{id: "x.2.4", run: func(c *abClient) { c.send(textFrame(hello), frame{op: opPong, more: true}, pingFrame("")) },
			want: []event{msgEvent(hello)}, end: failWith(1002)},
		{id: "x.2.5", perKind: true, run: func(c *abClient) { c.sendChopped(3, pingFrame("a"), textFrame(hello), pingFrame("b")) },
			want: []event{pongEvent("a"), msgEvent(hello), pongEvent("b")}, end: closeNormal},
		{id: "x.5.1", perKind: true, run: func(c *abClient) {
			c.send(first(opBinary, "part1"), pingFrame("mid"), pongFrame("x"), cont("part2", true), textFrame(hello))
		}, want: []event{pongEvent("mid"), binEvent([]byte("part1part2")), msgEvent(hello)}, end: closeNormal},
		{id: "x.5.2", run: func(c *abClient) {
			c.send(first(opText, "part1"), withRSVFrame(pingFrame("mid"), 4), cont("part2", true))
		}, end: failWith(1002)},
		{id: "x.5.3", run: func(c *abClient) {
			c.send(first(opText, "part1"), frame{op: opPing, payload: bytesOf('p', 126)}, cont("part2", true))
		}, end: failWith(1002)},
	}
}

func withRSVFrame(f frame, rsv byte) frame { f.rsv = rsv; return f }

// TestConformanceHandshake checks the upgrade as Autobahn's client makes it (abHandshake:
// no Origin unless its spec sets one, "Upgrade: WebSocket", the host as IP:port): on /ws,
// and on / (a spec's URL without a path). An Origin of the server's own host passes (a spec
// may set "origin" to it); coder/websocket's Accept refuses any other origin with 403, as
// the command sets no OriginPatterns: a spec must not set another origin.
func TestConformanceHandshake(t *testing.T) {
	for _, tr := range conformanceTransports {
		t.Run(tr.String(), func(t *testing.T) {
			addr := startConformanceServer(t, tr)
			for _, tc := range []struct {
				name   string
				path   string
				origin string
				status int
			}{
				{"ws", "/ws", "", 101},
				{"root", "/", "", 101},
				{"same origin", "/ws", "http://" + addr, 101},
				{"other origin", "/ws", "http://example.com", 403},
				{"other path", "/other", "", 404},
			} {
				t.Run(tc.name, func(t *testing.T) {
					c, resp := dialRaw(t, addr, 1, conformanceWait, dialOptions{path: tc.path, origin: tc.origin})
					require.Equal(t, tc.status, resp.StatusCode, resp.Status)
					if tc.status != 101 {
						return
					}
					c.send(textFrame("Hello, world!"))
					c.expect(msgEvent("Hello, world!"))
					c.send(closeFrame(1000, ""))
					_, cl, err := c.next()
					require.NoError(t, err)
					require.Equal(t, &closeSeen{code: 1000}, cl)
					_, _, err = c.next()
					require.ErrorIs(t, err, errServerClosed)
				})
			}
		})
	}
}
