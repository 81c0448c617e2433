package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// chromium finds Debian's Chromium. Under CI it must be there (.ci/run installs it); on a
// developer's machine without it the browser test is skipped with a message saying how to
// get it.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("Chromium not found; CI must install it (apt-get install -y chromium)")
	}
	t.Skip("Chromium not found: apt-get install -y chromium to run the browser test")
	return ""
}

// serveOn runs the chat on ln until the returned stop is called.
func serveOn(t *testing.T, ln net.Listener) (stop func()) {
	app := newChat()
	srv := &http.Server{Handler: app.routes()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		require.NoError(t, app.ws.Shutdown(ctx))
		require.NoError(t, srv.Shutdown(ctx))
		<-done
	}
}

// browser starts a headless Chromium for the test and returns its first tab.
func browser(ctx context.Context, t *testing.T, exe string) (context.Context, context.CancelFunc) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tab, cancelTab := chromedp.NewContext(alloc)
	return tab, func() { cancelTab(); cancelAlloc() }
}

func TestChatInTheBrowser(t *testing.T) {
	exe := chromium(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	stop := serveOn(t, ln)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ann, cancelAnn := browser(ctx, t, exe)
	defer cancelAnn()

	page := func(nick string) string { return fmt.Sprintf("http://%s/?room=e2e&nick=%s", addr, nick) }
	connected := `#status[data-state="open"]`
	require.NoError(t, chromedp.Do(ann, chromedp.Navigate(page("ann")), chromedp.WaitVisible(connected)))
	bob, cancelBob := chromedp.NewContext(ann) // a second tab in the browser ann's tab started
	defer cancelBob()
	require.NoError(t, chromedp.Do(bob, chromedp.Navigate(page("bob")), chromedp.WaitVisible(connected)))

	members := func(tab context.Context) []string {
		names, err := chromedp.Run(tab, chromedp.Evaluate[[]string](
			`[...document.querySelectorAll('#members li')].map(li => li.textContent)`))
		require.NoError(t, err)
		return names
	}
	require.Eventually(t, func() bool { return strings.Join(members(ann), ",") == "ann,bob" }, waitTimeout, 50*time.Millisecond,
		"presence in ann's tab shows both")

	say := func(tab context.Context, text string) {
		require.NoError(t, chromedp.Do(tab, chromedp.SetValue("#text", text), chromedp.Click("#send")))
	}
	messages := func(tab context.Context) string {
		text, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.getElementById('messages').textContent`))
		require.NoError(t, err)
		return text
	}
	say(ann, "hello from ann")
	require.Eventually(t, func() bool { return strings.Contains(messages(bob), "hello from ann") }, waitTimeout, 50*time.Millisecond)

	// Markup in a message is shown as text and runs nothing.
	attack := `<img src=x onerror="window.pwned=1">`
	say(bob, attack)
	require.Eventually(t, func() bool { return strings.Contains(messages(ann), attack) }, waitTimeout, 50*time.Millisecond)
	pwned, err := chromedp.Run(ann, chromedp.Evaluate[bool](`window.pwned === 1`))
	require.NoError(t, err)
	imgs, err := chromedp.Run(ann, chromedp.Evaluate[int](`document.querySelectorAll('#messages img').length`))
	require.NoError(t, err)
	require.False(t, pwned)
	require.Zero(t, imgs)
	// CHAT_SCREENSHOT=docs/chat.png go test -run Browser ./examples/chat refreshes the README's picture.
	if path := os.Getenv("CHAT_SCREENSHOT"); path != "" {
		png, err := chromedp.Run(ann, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path, png, 0o644))
	}

	// Bob closes his tab: ann's presence updates.
	cancelBob()
	require.Eventually(t, func() bool { return strings.Join(members(ann), ",") == "ann" }, waitTimeout, 50*time.Millisecond)

	// The server restarts: the page shows it, reconnects, and chat works again.
	stop()
	require.NoError(t, chromedp.Do(ann, chromedp.WaitVisible(`#status[data-state="closed"]`)))
	ln2, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	stop = serveOn(t, ln2)
	defer stop()
	require.NoError(t, chromedp.Do(ann, chromedp.WaitVisible(connected)))
	say(ann, "back again")
	require.Eventually(t, func() bool { return strings.Contains(messages(ann), "back again") }, waitTimeout, 50*time.Millisecond)

}

// The inspector's page renders the chat's queues live: its script fetches the JSON, fills
// the tables and draws the charts.
func TestInspectorInTheBrowser(t *testing.T) {
	exe := chromium(t)
	_, url := startChat(t)
	peers := []*peer{dial(t, url), dial(t, url), dial(t, url)}
	for i, p := range peers {
		p.send(map[string]string{"type": "join", "room": "lobby", "nick": fmt.Sprintf("user%d", i)})
		p.next("history") // sent by the room once p is a member (welcome may come first)
	}
	for i := range 20 {
		peers[i%3].send(map[string]string{"type": "message", "text": fmt.Sprintf("message %d", i)})
		for _, p := range peers {
			p.next("message")
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // a screenshot run takes 20 s more
	defer cancel()
	tab, cancelTab := browser(ctx, t, exe)
	defer cancelTab()
	require.NoError(t, chromedp.Do(tab, chromedp.Navigate(url+"/debug/dispatch")))
	// The page rebuilds its tables every second, so wait with a script rather than on nodes
	// (WaitVisible follows the nodes it first found, which the next refresh replaces).
	shown := func(sel string) bool {
		n, err := chromedp.Run(tab, chromedp.Evaluate[int](`document.querySelectorAll('`+sel+`').length`))
		require.NoError(t, err)
		return n > 0
	}
	require.Eventually(t, func() bool { return shown(`#labels td`) }, time.Minute, 100*time.Millisecond, "the script filled the tables")
	require.Eventually(t, func() bool { return shown(`#servers-section:not([hidden])`) }, time.Minute, 100*time.Millisecond, "and showed the server")
	cell := func(sel string) []string {
		v, err := chromedp.Run(tab, chromedp.Evaluate[[]string](
			`[...document.querySelectorAll('`+sel+`')].map(e => e.textContent)`))
		require.NoError(t, err)
		return v
	}
	require.Contains(t, cell(`#labels td:first-child`), "ws.conn")
	require.Contains(t, cell(`#labels td:first-child`), "chat.room")
	require.Contains(t, cell(`#queues td:first-child`), "ws.conn")
	status := cell(`#status`)
	require.Len(t, status, 1)
	require.Contains(t, status[0], "updated", "the page reached the JSON")
	// A second refresh draws a rate: the legend lists the labels.
	require.Eventually(t, func() bool { return shown(`#legend-rate span`) }, time.Minute, 100*time.Millisecond, "the rate chart's legend")
	// INSPECTOR_SCREENSHOT=docs/inspector.png go test -run InspectorInTheBrowser ./examples/chat
	// refreshes the README's picture.
	if path := os.Getenv("INSPECTOR_SCREENSHOT"); path != "" {
		require.NoError(t, chromedp.Do(tab, chromedp.EmulateViewport(1200, 900)))
		for sec := range 20 { // traffic of changing rates for the charts to show
			for i := range 5 + (sec%5)*4 {
				peers[i%3].send(map[string]string{"type": "message", "text": fmt.Sprintf("more %d", i)})
				for _, p := range peers {
					p.next("message")
				}
			}
			require.NoError(t, chromedp.Do(tab, chromedp.Sleep(time.Second)))
		}
		png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path, png, 0o644))
	}
}
