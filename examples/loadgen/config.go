package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Modes of a run.
const (
	modeIdle      = "idle"
	modeEcho      = "echo"
	modeBroadcast = "broadcast"
)

// Bounds on the arguments: every run stops by itself, in count and in time.
const (
	maxConns    = 1_000_000
	maxProcs    = 64
	maxDuration = 10 * time.Minute
	minSize     = 32 // a broadcast carries "B<seq> <send time>" in its first bytes
	maxSize     = 32 << 10
	maxBcasts   = 1000
	fdReserve   = 64 // files a process needs besides its connections
)

// errRemote is returned for a target or source outside 127.0.0.0/8 and ::1 without
// -allow-remote.
var errRemote = errors.New("loadgen: not a loopback address (pass -allow-remote to load another machine)")

// config is one run's parameters. A parent passes its children the same config, with their
// share of Conns and Rate, as JSON.
type config struct {
	URL            string        `json:"url"`   // one URL, or several separated by commas
	First          int           `json:"first"` // global index of this process's first connection`
	Conns          int           `json:"conns"`
	Procs          int           `json:"procs"`
	Src            []netip.Addr  `json:"src"`
	Mode           string        `json:"mode"`
	Duration       time.Duration `json:"duration"`
	Size           int           `json:"size"`
	Rate           float64       `json:"rate"`
	Broadcasts     int           `json:"broadcasts"`
	Senders        int           `json:"senders"` // echo: connections that send (by global index); 0: all
	ConnectTimeout time.Duration `json:"connect_timeout"`
	ServerPID      int           `json:"server_pid"`
	JSON           bool          `json:"json"`
	Quiet          bool          `json:"quiet"`
	AllowRemote    bool          `json:"allow_remote"`
}

// parseArgs reads the command line into a config and checks it. fileLimit is the number of
// files one process may hold (RLIMIT_NOFILE): a process's share of the connections must fit.
func parseArgs(args []string, usage io.Writer, fileLimit uint64) (config, error) {
	var c config
	var src string
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.StringVar(&c.URL, "url", "ws://127.0.0.1:8080/ws", "WebSocket URL of the server under test; several, comma-separated, spread the connections over them in turn (several nodes of one service)")
	fs.IntVar(&c.Conns, "conns", 100, "number of connections")
	fs.IntVar(&c.Procs, "procs", 1, "spread the connections over this many child processes")
	fs.StringVar(&src, "src", "", "comma-separated loopback source addresses, used in turn (default: the kernel's choice)")
	fs.StringVar(&c.Mode, "mode", modeEcho, "idle, echo or broadcast")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "how long the load runs once every connection is open")
	fs.IntVar(&c.Size, "size", 64, "message size in bytes")
	fs.Float64Var(&c.Rate, "rate", 0, "new connections per second over all processes (0: as fast as they open)")
	fs.IntVar(&c.Broadcasts, "broadcasts", 20, "broadcasts to time in broadcast mode")
	fs.IntVar(&c.Senders, "senders", 0, "echo mode: only this many connections send, in closed loops; the others stay idle (0: all; a mostly idle load is -conns 19000 -senders 190)")
	fs.DurationVar(&c.ConnectTimeout, "connect-timeout", time.Minute, "bound on opening all the connections")
	fs.IntVar(&c.ServerPID, "server-pid", 0, "process id of the server, to read its memory (VmRSS) and CPU time from /proc")
	fs.BoolVar(&c.JSON, "json", false, "print the result as JSON instead of a table")
	fs.BoolVar(&c.Quiet, "q", false, "no progress line")
	fs.BoolVar(&c.AllowRemote, "allow-remote", false, "allow a target or sources outside loopback")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("loadgen: unexpected arguments %q", fs.Args())
	}
	if src != "" {
		for s := range strings.SplitSeq(src, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil {
				return config{}, fmt.Errorf("loadgen: -src: %w", err)
			}
			c.Src = append(c.Src, a)
		}
	}
	return c, c.check(fileLimit)
}

// check reports the first argument out of bounds.
func (c config) check(fileLimit uint64) error {
	switch {
	case c.Conns < 1 || c.Conns > maxConns:
		return fmt.Errorf("loadgen: -conns %d: want 1..%d", c.Conns, maxConns)
	case c.Procs < 1 || c.Procs > maxProcs:
		return fmt.Errorf("loadgen: -procs %d: want 1..%d", c.Procs, maxProcs)
	case c.Procs > c.Conns:
		return fmt.Errorf("loadgen: -procs %d is more than -conns %d", c.Procs, c.Conns)
	case c.Mode != modeIdle && c.Mode != modeEcho && c.Mode != modeBroadcast:
		return fmt.Errorf("loadgen: -mode %q: want idle, echo or broadcast", c.Mode)
	case c.Duration <= 0 || c.Duration > maxDuration:
		return fmt.Errorf("loadgen: -duration %v: want more than 0 and at most %v", c.Duration, maxDuration)
	case c.ConnectTimeout <= 0 || c.ConnectTimeout > maxDuration:
		return fmt.Errorf("loadgen: -connect-timeout %v: want more than 0 and at most %v", c.ConnectTimeout, maxDuration)
	case c.Size < minSize || c.Size > maxSize:
		return fmt.Errorf("loadgen: -size %d: want %d..%d", c.Size, minSize, maxSize)
	case c.Rate < 0:
		return fmt.Errorf("loadgen: -rate %v: want 0 (unlimited) or more", c.Rate)
	case c.Broadcasts < 1 || c.Broadcasts > maxBcasts:
		return fmt.Errorf("loadgen: -broadcasts %d: want 1..%d", c.Broadcasts, maxBcasts)
	case c.Senders < 0 || c.Senders > c.Conns:
		return fmt.Errorf("loadgen: -senders %d: want 0 (all) up to -conns %d", c.Senders, c.Conns)
	case c.ServerPID < 0:
		return fmt.Errorf("loadgen: -server-pid %d: want a process id", c.ServerPID)
	}
	if share := uint64((c.Conns + c.Procs - 1) / c.Procs); share+fdReserve > fileLimit {
		return fmt.Errorf("loadgen: %d connections per process do not fit the limit of %d files: raise -procs (or ulimit -n)", share, fileLimit)
	}
	for _, u := range c.targets() {
		if err := checkTarget(u, c.AllowRemote); err != nil {
			return err
		}
	}
	for _, a := range c.Src {
		if !a.IsLoopback() && !c.AllowRemote {
			return fmt.Errorf("%w: -src %v", errRemote, a)
		}
	}
	return nil
}

// checkTarget accepts a ws:// or wss:// URL whose host is a loopback address or localhost.
// Names are not resolved: a run never asks DNS, and a name other than localhost counts as
// remote.
func checkTarget(raw string, allowRemote bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("loadgen: -url: %w", err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return fmt.Errorf("loadgen: -url %q: want a ws:// or wss:// URL", raw)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("loadgen: -url %q: no host", raw)
	}
	if allowRemote {
		return nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Unmap().IsLoopback() {
			return nil
		}
		return fmt.Errorf("%w: -url host %s", errRemote, host)
	}
	if h := strings.ToLower(strings.TrimSuffix(host, ".")); h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return nil
	}
	return fmt.Errorf("%w: -url host %s", errRemote, host)
}

// targets returns the URLs of -url, in order.
func (c config) targets() []string {
	var urls []string
	for u := range strings.SplitSeq(c.URL, ",") {
		urls = append(urls, strings.TrimSpace(u))
	}
	return urls
}

// target returns the URL for this process's connection i: connections go to the URLs in
// turn, counted over all the processes, so that every URL gets its share (±1) however the
// connections are split. Connection 0 of the whole run, the broadcast sender, goes to the
// first URL.
func (c config) target(i int) string {
	urls := c.targets()
	return urls[(c.First+i)%len(urls)]
}

// share is what child i of c.Procs takes: its part of the connections and of the rate.
func (c config) share(i int) config {
	s := c
	s.Procs = 1
	s.Conns = c.Conns / c.Procs
	if i < c.Conns%c.Procs {
		s.Conns++
	}
	s.Rate = c.Rate / float64(c.Procs)
	s.First = c.First + i*(c.Conns/c.Procs) + min(i, c.Conns%c.Procs)
	return s
}
