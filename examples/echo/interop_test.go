package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// The interop tests run other WebSocket implementations against examples/echo, as a user
// runs it (the binary with -readlimit raised; here the test binary re-executed as the echo
// command): Debian's python3-websockets, Node's `ws` and Chromium, each with a script under
// testdata that checks echoes of text, binary and large messages and a clean close
// handshake. .ci/run installs the three; under CI (CI set) a missing one fails the test, on
// a developer's machine it is skipped with a message saying how to get it.

// echoMainEnv makes the test binary run examples/echo's main with the arguments it holds.
const echoMainEnv = "DISPATCHKIT_ECHO_MAIN"

// interopTimeout bounds one client's run.
const interopTimeout = 60 * time.Second

// missing fails the test under CI and skips it elsewhere.
func missing(t *testing.T, what, how string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not found; CI must install it (%s)", what, how)
	}
	t.Skipf("%s not found: %s to run this interop test", what, how)
}

// startEcho runs examples/echo in a child process with args and returns its ws:// URL; it
// is stopped with SIGTERM (and must exit cleanly) when the test ends.
func startEcho(t *testing.T, args ...string) string {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), echoMainEnv+"="+strings.Join(append([]string{"-addr", "127.0.0.1:0"}, args...), " "))
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	url := make(chan string, 1)
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`serving (ws://\S+)`)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				url <- m[1]
			}
		}
		exited <- cmd.Wait() // after stderr is drained, as Wait requires
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			require.NoError(t, err, "examples/echo stops cleanly on SIGTERM; its log:\n%s", log.String())
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatal("examples/echo did not stop within 15s of SIGTERM")
		}
	})
	select {
	case u := <-url:
		return u
	case err := <-exited:
		t.Fatalf("examples/echo exited before serving: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("examples/echo did not say where it serves within 30s")
	}
	return ""
}

// echoMain runs main with the arguments in echoMainEnv when the test binary is the child.
func echoMain() bool {
	args, ok := os.LookupEnv(echoMainEnv)
	if !ok {
		return false
	}
	os.Args = append([]string{"echo"}, strings.Fields(args)...)
	main()
	return true
}

// runClient runs a client script (exe and args, with env added to the environment) and
// requires it to print OK.
func runClient(t *testing.T, env []string, exe string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), interopTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s:\n%s", cmd, out)
	require.Equal(t, "OK", strings.TrimSpace(string(out)), "%s", cmd)
}

func TestInteropPythonWebsockets(t *testing.T) {
	python := pythonWithWebsockets(t)
	url := startEcho(t, "-readlimit", "1048576")
	runClient(t, nil, python, "testdata/interop_client.py", url)
}

// The same client offers permessage-deflate, as it does by default: with -compress the
// echo takes it, and every message and the close go through the compressed path.
func TestInteropPythonWebsocketsCompressed(t *testing.T) {
	python := pythonWithWebsockets(t)
	url := startEcho(t, "-readlimit", "1048576", "-compress")
	runClient(t, nil, python, "testdata/interop_client.py", url, "deflate")
}

// pythonWithWebsockets finds a python3 that imports websockets (Debian's python3-websockets).
func pythonWithWebsockets(t *testing.T) string {
	python := ""
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if path, err := exec.LookPath(p); err == nil && exec.Command(path, "-c", "import websockets").Run() == nil {
			python = path
			break
		}
	}
	if python == "" {
		missing(t, "python3 with the websockets module", "apt-get install -y python3-websockets")
	}
	return python
}

// npmDir is where the test finds (or installs) Node's ws package: DISPATCHKIT_NPM_DIR, or
// a directory in the user's cache, which .ci/run fills beforehand.
func npmDir(t *testing.T) string {
	if d := os.Getenv("DISPATCHKIT_NPM_DIR"); d != "" {
		return d
	}
	cache, err := os.UserCacheDir()
	require.NoError(t, err)
	return filepath.Join(cache, "dispatchkit-interop")
}

// wsVersion is the version of Node's ws package the test installs.
const wsVersion = "8.18.3"

func TestInteropNodeWS(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		missing(t, "node", "apt-get install -y nodejs npm")
	}
	dir := npmDir(t)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "ws", "package.json")); err != nil {
		npm, err := exec.LookPath("npm")
		if err != nil {
			missing(t, "npm (to install ws)", "apt-get install -y npm")
		}
		require.NoError(t, os.MkdirAll(dir, 0o755))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund", "--no-save",
			"--prefix", dir, "ws@"+wsVersion).CombinedOutput()
		require.NoError(t, err, "npm install ws into %s:\n%s", dir, out)
	}
	url := startEcho(t, "-readlimit", "1048576")
	runClient(t, []string{"NODE_PATH=" + filepath.Join(dir, "node_modules")}, node, "testdata/interop_client.js", url)
}

func TestInteropChromium(t *testing.T) {
	exe := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			exe = p
			break
		}
	}
	if exe == "" {
		missing(t, "Chromium", "apt-get install -y chromium")
	}
	script, err := os.ReadFile("testdata/interop_browser.js")
	require.NoError(t, err)
	url := startEcho(t, "-readlimit", "1048576")
	page := "http" + strings.TrimSuffix(strings.TrimPrefix(url, "ws"), "/ws") + "/page" // same origin as /ws

	ctx, cancel := context.WithTimeout(context.Background(), interopTimeout)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	tab, cancelTab := chromedp.NewContext(alloc)
	defer cancelTab()
	expr := fmt.Sprintf("(%s)(%q)", strings.TrimSpace(string(script)), url)
	require.NoError(t, chromedp.Do(tab, chromedp.Navigate(page))) // a 404 page, but of the server's origin
	result, err := chromedp.Run(tab, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
	require.NoError(t, err)
	require.Equal(t, "OK", result)
}
