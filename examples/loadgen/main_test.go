package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain is also the children's main: with -procs above 1, loadgen starts copies of the
// running binary, which here is the test binary.
func TestMain(m *testing.M) {
	if cfg, ok := os.LookupEnv(childEnv); ok {
		os.Exit(childMain(cfg, os.Stdin, os.Stdout))
	}
	goleak.VerifyTestMain(m)
}

// echoServer builds examples/echo and runs it on a loopback port, with args, until the test
// ends.
func echoServer(t *testing.T, args ...string) (url string, pid int) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "echo")
	build := exec.Command("go", "build", "-o", bin, "../echo")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "building examples/echo: %s", out)

	srv := exec.Command(bin, append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	stderr, err := srv.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	exited := make(chan error, 1)
	t.Cleanup(func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			require.NoError(t, err, "examples/echo stops cleanly on SIGTERM")
		case <-time.After(15 * time.Second):
			_ = srv.Process.Kill()
			t.Fatal("examples/echo did not stop within 15s of SIGTERM")
		}
	})

	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`serving (ws://\S+)`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		exited <- srv.Wait() // after stderr is drained, as Wait requires
	}()
	select {
	case url = <-addr:
	case <-time.After(30 * time.Second):
		t.Fatal("examples/echo did not say where it serves within 30s")
	}
	return url, srv.Process.Pid
}

// TestEndToEnd runs loadgen against examples/echo, as a user would: every mode, in one
// process and spread over two children and two source addresses.
func TestEndToEnd(t *testing.T) {
	url, pid := echoServer(t)
	ctx := context.Background()
	common := []string{"-url", url, "-conns", "50", "-server-pid", strconv.Itoa(pid), "-q"}

	t.Run("echo over two processes", func(t *testing.T) {
		var out, errOut bytes.Buffer
		args := append([]string{"-mode", "echo", "-duration", "2s", "-procs", "2", "-src", "127.0.0.1,127.0.0.2", "-json"}, common...)
		require.Equal(t, 0, parentMain(ctx, args, &out, &errOut), errOut.String())
		var r report
		require.NoError(t, json.Unmarshal(out.Bytes(), &r))
		require.Equal(t, 50, r.Connected)
		require.Zero(t, r.Failed)
		require.Positive(t, r.ConnectRate)
		require.Positive(t, r.Msgs)
		require.Positive(t, r.MsgsPerSec)
		require.Positive(t, r.RTTP50)
		require.GreaterOrEqual(t, r.RTTP99, r.RTTP50)
		require.GreaterOrEqual(t, r.RTTMax, r.RTTP99)
		require.Positive(t, r.RSSBefore)
		require.Positive(t, r.RSSEnd)
		require.Positive(t, r.CPURun, "the server echoed for 2s")
		require.Positive(t, r.CPUPerMsgUS)
		require.Positive(t, r.CPURunWall)
		require.Zero(t, r.Errors, r.ErrorLog)
		require.Zero(t, r.Lost)
	})

	t.Run("broadcast", func(t *testing.T) {
		var out, errOut bytes.Buffer
		args := append([]string{"-mode", "broadcast", "-duration", "20s", "-broadcasts", "5", "-json"}, common...)
		require.Equal(t, 0, parentMain(ctx, args, &out, &errOut), errOut.String())
		var r report
		require.NoError(t, json.Unmarshal(out.Bytes(), &r))
		require.Equal(t, 5, r.Broadcasts)
		require.Equal(t, 5, r.BroadcastsComplete)
		require.Equal(t, 5*50, r.BroadcastDeliveries, "every connection, the sender too")
		require.Positive(t, r.LastP50)
		require.GreaterOrEqual(t, r.LastP99, r.LastP50)
		require.Zero(t, r.Errors, r.ErrorLog)
	})

	t.Run("broadcast over three processes", func(t *testing.T) {
		var out, errOut bytes.Buffer
		args := append([]string{"-mode", "broadcast", "-duration", "20s", "-broadcasts", "3", "-procs", "3", "-json"}, common...)
		require.Equal(t, 0, parentMain(ctx, args, &out, &errOut), errOut.String())
		var r report
		require.NoError(t, json.Unmarshal(out.Bytes(), &r))
		require.Equal(t, 3, r.BroadcastsComplete)
		require.Equal(t, 3*50, r.BroadcastDeliveries)
	})

	t.Run("idle with a table", func(t *testing.T) {
		var out, errOut bytes.Buffer
		args := append([]string{"-mode", "idle", "-duration", "300ms"}, common...)
		require.Equal(t, 0, parentMain(ctx, args, &out, &errOut), errOut.String())
		require.Contains(t, out.String(), "50 (0 failed)")
		require.Contains(t, out.String(), "per connection")
		require.Contains(t, out.String(), "0, 0 connections lost")
	})

	t.Run("progress line", func(t *testing.T) {
		var out, errOut bytes.Buffer
		args := []string{"-url", url, "-conns", "5", "-mode", "echo", "-duration", "1200ms"}
		require.Equal(t, 0, parentMain(ctx, args, &out, &errOut), errOut.String())
		require.Contains(t, errOut.String(), "\rloadgen: connecting")
		require.Contains(t, errOut.String(), "\rloadgen: echo")
	})
}

// TestStopsWhenCanceled cancels a long idle run once every connection is open: loadgen
// closes them and returns at once, with the children too.
func TestStopsWhenCanceled(t *testing.T) {
	url, _ := echoServer(t)
	for _, procs := range []string{"1", "2"} {
		ctx, cancel := context.WithCancel(context.Background())
		w := &cancelOn{text: "\rloadgen: idle", cancel: cancel}
		var out bytes.Buffer
		done := make(chan int, 1)
		go func() {
			done <- parentMain(ctx, []string{"-url", url, "-conns", "20", "-procs", procs, "-mode", "idle", "-duration", "5m"}, &out, w)
		}()
		select {
		case code := <-done:
			require.Equal(t, 1, code, "a canceled run is a failed run")
			require.Contains(t, w.String(), "context canceled")
			require.Contains(t, out.String(), "20 (0 failed)", "what was measured is still printed")
		case <-time.After(30 * time.Second):
			t.Fatal("loadgen did not stop within 30s of being canceled")
		}
		cancel()
	}
}

// TestRefusesRemoteTarget checks the command line as a whole: nothing is dialed.
func TestRefusesRemoteTarget(t *testing.T) {
	var out, errOut bytes.Buffer
	code := parentMain(context.Background(), []string{"-url", "ws://192.0.2.1:8080/ws"}, &out, &errOut)
	require.Equal(t, 2, code)
	require.Contains(t, errOut.String(), "-allow-remote")
	require.Empty(t, out.String())
}

// TestConnectFailuresCounted points loadgen at a port nobody listens on.
func TestConnectFailuresCounted(t *testing.T) {
	var out, errOut bytes.Buffer
	code := parentMain(context.Background(), []string{"-url", "ws://127.0.0.1:1/ws", "-conns", "3", "-q", "-json"}, &out, &errOut)
	require.Equal(t, 1, code)
	require.Contains(t, errOut.String(), "no connection opened")
	var r report
	require.NoError(t, json.Unmarshal(out.Bytes(), &r))
	require.Equal(t, 3, r.Failed)
	require.NotEmpty(t, r.ErrorLog)
}

// cancelOn is a progress writer that cancels once text has been written.
type cancelOn struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	text   string
	cancel context.CancelFunc
}

func (c *cancelOn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, _ := c.buf.Write(p)
	if strings.Contains(c.buf.String(), c.text) {
		c.cancel()
	}
	return n, nil
}

func (c *cancelOn) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

var _ io.Writer = (*cancelOn)(nil)
