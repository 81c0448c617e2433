package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// report is what a run measured; -json prints it as is. Times are in milliseconds and
// memory in bytes.
type report struct {
	URL      string  `json:"url"`
	Mode     string  `json:"mode"`
	Conns    int     `json:"conns"`
	Procs    int     `json:"procs"`
	Src      int     `json:"src"`
	Size     int     `json:"size"`
	Duration float64 `json:"duration_s"`

	Connected   int     `json:"connected"`
	Failed      int     `json:"failed"`
	ConnectSecs float64 `json:"connect_s"`
	ConnectRate float64 `json:"connects_per_s"`

	ServerPID    int     `json:"server_pid,omitempty"`
	RSSBefore    int64   `json:"rss_before,omitempty"`
	RSSConnected int64   `json:"rss_connected,omitempty"`
	RSSEnd       int64   `json:"rss_end,omitempty"` // at the end of idle and broadcast, at 90% of echo
	BytesPerConn float64 `json:"bytes_per_conn,omitempty"`

	// The server's CPU time (user + system, from /proc/PID/stat): while connecting, per
	// connection, and in the measured phase (echo: the loops; broadcast: all broadcasts),
	// per echoed message or per broadcast delivery. It is the figure least disturbed by
	// the load generator sharing the server's cores.
	CPUConnect   float64 `json:"cpu_connect_s,omitempty"`
	CPUPerConnUS float64 `json:"cpu_per_conn_us,omitempty"`
	CPURun       float64 `json:"cpu_run_s,omitempty"`
	CPURunWall   float64 `json:"cpu_run_wall_s,omitempty"` // the wall time CPURun was spent in
	CPUPerMsgUS  float64 `json:"cpu_per_msg_us,omitempty"`

	Msgs       uint64  `json:"msgs,omitempty"`
	MsgsPerSec float64 `json:"msgs_per_s,omitempty"`
	RTTP50     float64 `json:"rtt_p50_ms,omitempty"`
	RTTP99     float64 `json:"rtt_p99_ms,omitempty"`
	RTTMax     float64 `json:"rtt_max_ms,omitempty"`

	Broadcasts          int     `json:"broadcasts,omitempty"`
	BroadcastsComplete  int     `json:"broadcasts_complete,omitempty"`
	BroadcastDeliveries int     `json:"broadcast_deliveries,omitempty"`
	LastP50             float64 `json:"last_p50_ms,omitempty"`
	LastP99             float64 `json:"last_p99_ms,omitempty"`

	Errors   uint64   `json:"errors"`
	Lost     int      `json:"lost"`
	ErrorLog []string `json:"error_log,omitempty"`

	lasts []time.Duration // last-receiver latency of each complete broadcast
}

func newReport(cfg config) report {
	return report{
		URL: cfg.URL, Mode: cfg.Mode, Conns: cfg.Conns, Procs: cfg.Procs, Src: len(cfg.Src),
		Size: cfg.Size, Duration: cfg.Duration.Seconds(), ServerPID: cfg.ServerPID,
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// connected sums the workers' connect phases; they ran side by side, so the phase took
// as long as the slowest.
func (r *report) connected(evs []*event) {
	var took time.Duration
	for _, ev := range evs {
		if ev == nil {
			continue
		}
		r.Connected += ev.Connected
		r.Failed += ev.Failed
		took = max(took, ev.Took)
		r.noteErrs(ev.Errors)
	}
	r.ConnectSecs = took.Seconds()
	if took > 0 {
		r.ConnectRate = float64(r.Connected) / took.Seconds()
	}
}

// results merges the workers' results and computes the figures.
func (r *report) results(rs []*workerResult) {
	var rtt hist
	var elapsed time.Duration
	for _, w := range rs {
		if w == nil {
			continue
		}
		r.Msgs += w.Msgs
		r.Errors += w.Errors
		r.Lost += w.Lost
		rtt.merge(w.RTT)
		elapsed = max(elapsed, w.Elapsed)
		r.noteErrs(w.Errs)
	}
	if elapsed > 0 {
		r.MsgsPerSec = float64(r.Msgs) / elapsed.Seconds()
	}
	r.RTTP50, r.RTTP99, r.RTTMax = ms(rtt.quantile(0.50)), ms(rtt.quantile(0.99)), ms(rtt.Max)
	r.LastP50, r.LastP99 = ms(percentile(r.lasts, 0.50)), ms(percentile(r.lasts, 0.99))
	if r.RSSEnd > 0 && r.Connected > 0 {
		r.BytesPerConn = float64(r.RSSEnd-r.RSSBefore) / float64(r.Connected)
	}
	r.cpuFigures()
}

// cpuFigures divides the server's CPU time by what it served.
func (r *report) cpuFigures() {
	if r.Connected > 0 {
		r.CPUPerConnUS = r.CPUConnect * 1e6 / float64(r.Connected)
	}
	var served float64
	switch r.Mode {
	case modeEcho:
		served = float64(r.Msgs)
	case modeBroadcast:
		served = float64(r.BroadcastDeliveries)
	}
	if served > 0 {
		r.CPUPerMsgUS = r.CPURun * 1e6 / served
	}
}

func (r *report) noteErrs(errs []string) {
	for _, e := range errs {
		if len(r.ErrorLog) < 2*maxErrs && !slices.Contains(r.ErrorLog, e) {
			r.ErrorLog = append(r.ErrorLog, e)
		}
	}
}

// writeJSON prints the report as one line of JSON.
func (r *report) writeJSON(w io.Writer) error {
	return json.NewEncoder(w).Encode(r)
}

// writeTable prints the report for people.
func (r *report) writeTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, a...)...) }
	row("target", "%s, %s, %d bytes", r.URL, r.Mode, r.Size)
	src := "the kernel's choice of source address"
	if r.Src > 0 {
		src = fmt.Sprintf("%d source addresses", r.Src)
	}
	row("clients", "%d connections, %d process(es), %s", r.Conns, r.Procs, src)
	row("connected", "%d (%d failed) in %.2fs: %.0f/s", r.Connected, r.Failed, r.ConnectSecs, r.ConnectRate)
	if r.RSSBefore > 0 {
		row("server RSS", "%s before, %s connected, %s at the end: %s per connection",
			mib(r.RSSBefore), mib(r.RSSConnected), mib(r.RSSEnd), kib(r.BytesPerConn))
	}
	switch r.Mode {
	case modeEcho:
		row("echo", "%d messages: %.0f/s, round trip p50 %.3fms p99 %.3fms max %.3fms",
			r.Msgs, r.MsgsPerSec, r.RTTP50, r.RTTP99, r.RTTMax)
	case modeBroadcast:
		row("broadcast", "%d/%d reached every connection: last receiver p50 %.3fms p99 %.3fms",
			r.BroadcastsComplete, r.Broadcasts, r.LastP50, r.LastP99)
	}
	if r.ServerPID > 0 {
		row("server CPU", "%.2fs connecting (%.0fµs per connection), %.2fs in %.1fs of %s: %s",
			r.CPUConnect, r.CPUPerConnUS, r.CPURun, r.CPURunWall, r.Mode, perMsg(r))
	}
	row("errors", "%d, %d connections lost", r.Errors, r.Lost)
	for _, e := range r.ErrorLog {
		row("", "%s", e)
	}
	return tw.Flush()
}

func perMsg(r *report) string {
	switch r.Mode {
	case modeEcho:
		return fmt.Sprintf("%.1fµs per echoed message", r.CPUPerMsgUS)
	case modeBroadcast:
		return fmt.Sprintf("%.2fµs per broadcast delivery", r.CPUPerMsgUS)
	}
	return "nothing served"
}

func mib(b int64) string   { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }

// rssReader returns a function reading pid's resident memory, or 0 when pid is 0.
func rssReader(pid int) func() (int64, error) {
	if pid == 0 {
		return func() (int64, error) { return 0, nil }
	}
	return func() (int64, error) {
		f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return 0, fmt.Errorf("loadgen: server memory: %w", err)
		}
		defer f.Close()
		return parseVmRSS(f)
	}
}

// parseVmRSS finds the VmRSS line of a /proc/PID/status file, in bytes.
func parseVmRSS(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("loadgen: server memory: odd VmRSS line %q", sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("loadgen: server memory: %w", err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("loadgen: server memory: %w", err)
	}
	return 0, fmt.Errorf("loadgen: server memory: no VmRSS line (a kernel thread, or a zombie?)")
}

// clockTick is the unit of utime and stime in /proc/PID/stat: USER_HZ, which Linux fixes
// at 100 for user space on every architecture Go runs on.
const clockTick = 10 * time.Millisecond

// cpuReader returns a function reading pid's CPU time (user + system), or 0 when pid is 0.
func cpuReader(pid int) func() (time.Duration, error) {
	if pid == 0 {
		return func() (time.Duration, error) { return 0, nil }
	}
	return func() (time.Duration, error) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, fmt.Errorf("loadgen: server CPU: %w", err)
		}
		return parseCPU(b)
	}
}

// parseCPU reads utime + stime (fields 14 and 15) from a /proc/PID/stat line. The second
// field, the command in parentheses, may hold spaces and parentheses itself, so the
// fields are counted from the last ')'.
func parseCPU(stat []byte) (time.Duration, error) {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("loadgen: server CPU: no command field in %q", s)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0, fmt.Errorf("loadgen: server CPU: %d fields after the command, want at least 13", len(f))
	}
	var ticks int64
	for _, v := range f[11:13] {
		t, err := strconv.ParseInt(v, 10, 64)
		if err != nil || t < 0 {
			return 0, fmt.Errorf("loadgen: server CPU: odd tick count %q", v)
		}
		ticks += t
	}
	return time.Duration(ticks) * clockTick, nil
}
