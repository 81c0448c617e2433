// Command loadgen is a load generator for any WebSocket server that echoes messages and
// broadcasts those starting with "B" to every connection, as examples/echo does.
//
// It opens -conns connections, spread over -procs processes (it starts copies of itself,
// since one process may hold only so many files) and over the -src source addresses (since
// one address has only so many ports), then runs one of three loads for -duration:
//
//   - idle: connections that only answer pings; with -server-pid it reads the server's
//     memory (VmRSS in /proc/PID/status) before and after, and divides by the connections;
//   - echo: every connection in a closed loop, sending a -size message and waiting for its
//     echo; messages per second and round-trip percentiles;
//   - broadcast: one connection sends -broadcasts messages starting with "B", one at a time,
//     and each is timed until the last connection received it; p50 and p99 of that time.
//     Unmeasured broadcasts go first until one reaches every connection (a server may join
//     a connection to its room after the handshake, as examples/echo does in OnOpen).
//
// With -server-pid it also reads the server's CPU time (utime + stime in /proc/PID/stat)
// and divides it by the connections made, the messages echoed or the broadcast deliveries:
// the load generator shares the server's cores, and this is the figure it disturbs least.
// Every run reports the connect rate. A progress line runs on stderr; the result is a table,
// or one line of JSON with -json. Runs are bounded in time and count, and loadgen refuses a
// target or source outside loopback unless -allow-remote is given.
//
//	go run ./examples/echo -addr 127.0.0.1:8080 &
//	go run ./examples/loadgen -url ws://127.0.0.1:8080/ws -conns 1000 -mode echo -server-pid $!
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if cfg, ok := os.LookupEnv(childEnv); ok {
		os.Exit(childMain(cfg, os.Stdin, os.Stdout))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := parentMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// parentMain parses the arguments, runs the load and prints the result: 0 when it ran, 1
// when the run failed, 2 for bad arguments.
func parentMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseArgs(args, stderr, fileLimit())
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	progress := stderr
	if cfg.Quiet {
		progress = nil
	}
	rep, err := runLoad(ctx, cfg, progress)
	if cfg.JSON {
		_ = rep.writeJSON(stdout)
	} else {
		_ = rep.writeTable(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// runLoad starts the workers (here, or in -procs children) and coordinates them.
func runLoad(ctx context.Context, cfg config, progress io.Writer) (report, error) {
	return coordinate(ctx, cfg, func() ([]member, error) { return startMembers(ctx, cfg) }, progress)
}

// startMembers starts the workers: here for -procs 1, else in as many children.
func startMembers(ctx context.Context, cfg config) ([]member, error) {
	if cfg.Procs == 1 {
		return []member{startLocal(ctx, cfg)}, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("loadgen: finding myself to start children: %w", err)
	}
	members := make([]member, 0, cfg.Procs)
	for i := range cfg.Procs {
		m, err := startChild(exe, cfg.share(i))
		if err != nil {
			for _, m := range members {
				m.kill()
				for range m.events() { // drained, so that its reader ends
				}
				_ = m.wait()
			}
			return nil, err
		}
		members = append(members, m)
	}
	return members, nil
}

// fileLimit is how many files this process, and so each child, may hold. (Go raises the
// soft limit to the hard one at start.)
func fileLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 1024
	}
	return l.Cur
}
