package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// childEnv carries a child's config: a process started with it is a worker, not a
// coordinator.
const childEnv = "LOADGEN_CHILD_CONFIG"

// localMember runs a worker in this process (-procs 1).
type localMember struct {
	cmds          chan command
	evs           chan event
	exited        chan struct{}
	cancel        context.CancelFunc
	cancelConnect context.CancelFunc
}

func startLocal(ctx context.Context, cfg config) *localMember {
	ctx, cancel := context.WithCancel(ctx)
	connectCtx, cancelConnect := context.WithCancel(ctx)
	m := &localMember{
		cmds:          make(chan command, 16),
		evs:           make(chan event, 64),
		exited:        make(chan struct{}),
		cancel:        cancel,
		cancelConnect: cancelConnect,
	}
	w := &worker{cfg: cfg, emit: func(ev event) { m.evs <- ev }}
	go func() {
		defer close(m.exited)
		defer close(m.evs)
		w.connect(connectCtx)
		w.run(ctx, m.cmds)
	}()
	return m
}

func (m *localMember) send(c command) {
	if c.Cmd == cmdStop {
		m.cancelConnect() // a stop while connecting ends the connecting
	}
	select {
	case m.cmds <- c:
	case <-m.exited:
	}
}
func (m *localMember) events() <-chan event { return m.evs }
func (m *localMember) kill()                { m.cancel() }
func (m *localMember) wait() error {
	<-m.exited
	m.cancel()
	return nil
}

// procMember is a worker in a child process of this program, spoken to in JSON lines
// over its stdin and stdout.
type procMember struct {
	cmd *exec.Cmd
	evs chan event

	mu    sync.Mutex
	stdin io.WriteCloser
	enc   *json.Encoder
}

// startChild starts exe as a worker with cfg; its stderr is ours.
func startChild(exe string, cfg config) (*procMember, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("loadgen: child config: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("loadgen: child: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("loadgen: child: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("loadgen: starting a child: %w", err)
	}
	m := &procMember{cmd: cmd, evs: make(chan event, 64), stdin: stdin, enc: json.NewEncoder(stdin)}
	go func() {
		defer close(m.evs)
		dec := json.NewDecoder(bufio.NewReader(stdout))
		for {
			var ev event
			if err := dec.Decode(&ev); err != nil {
				if !errors.Is(err, io.EOF) {
					fmt.Fprintf(os.Stderr, "loadgen: child %d: %v\n", cmd.Process.Pid, err)
				}
				_, _ = io.Copy(io.Discard, stdout) // so that Wait does not cut it off
				return
			}
			m.evs <- ev
		}
	}()
	return m, nil
}

// send writes c to the child; after a stop, stdin is closed, which the child also takes as
// a stop.
func (m *procMember) send(c command) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.enc == nil {
		return
	}
	_ = m.enc.Encode(c) // a child that is gone has said so on stdout
	if c.Cmd == cmdStop {
		m.stdin.Close()
		m.enc = nil
	}
}

func (m *procMember) events() <-chan event { return m.evs }
func (m *procMember) kill()                { _ = m.cmd.Process.Kill() }
func (m *procMember) wait() error {
	if err := m.cmd.Wait(); err != nil {
		return fmt.Errorf("loadgen: child %d: %w", m.cmd.Process.Pid, err)
	}
	return nil
}

// childMain is a child process: connect, run what stdin commands, report on stdout.
func childMain(cfgJSON string, stdin io.Reader, stdout io.Writer) int {
	var cfg config
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen: child config:", err)
		return 2
	}
	// Ctrl-C reaches the whole process group: the parent decides when children stop.
	signal.Ignore(syscall.SIGINT)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ConnectTimeout+cfg.Duration+2*time.Minute)
	defer cancel()
	var mu sync.Mutex
	enc := json.NewEncoder(stdout)
	w := &worker{cfg: cfg, emit: func(ev event) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(ev)
	}}
	cmds := make(chan command)
	// A stop, or the parent gone, while connecting ends the connecting.
	connectCtx, cancelConnect := context.WithCancel(ctx)
	defer cancelConnect()
	go func() {
		defer close(cmds)
		defer cancelConnect()
		dec := json.NewDecoder(stdin)
		for {
			var c command
			if dec.Decode(&c) != nil {
				return
			}
			if c.Cmd == cmdStop {
				cancelConnect()
			}
			select {
			case cmds <- c:
			case <-ctx.Done():
				return
			}
		}
	}()
	w.connect(connectCtx)
	w.run(ctx, cmds)
	return 0
}
