// Command table turns the results of bench/ws/run.sh into one Markdown table, with the
// issue's bars checked as ratios between dispatchkit and its peers in the same run.
//
// Its input has one line per run: the server's name, a tab, and loadgen's -json output.
//
//	go run ./ws/table results.tsv [more-results.tsv ...]
//
// Given several files (several runs of the same sizes), every figure is the median over
// them, and each ratio is taken within one run, then the median of those is shown.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// result is the part of loadgen's -json output the table shows.
type result struct {
	Mode               string  `json:"mode"`
	Conns              int     `json:"conns"`
	Connected          int     `json:"connected"`
	Failed             int     `json:"failed"`
	ConnectRate        float64 `json:"connects_per_s"`
	BytesPerConn       float64 `json:"bytes_per_conn"`
	MsgsPerSec         float64 `json:"msgs_per_s"`
	RTTP50             float64 `json:"rtt_p50_ms"`
	RTTP99             float64 `json:"rtt_p99_ms"`
	Broadcasts         int     `json:"broadcasts"`
	BroadcastsComplete int     `json:"broadcasts_complete"`
	LastP50            float64 `json:"last_p50_ms"`
	LastP99            float64 `json:"last_p99_ms"`
	CPUPerConnUS       float64 `json:"cpu_per_conn_us"`
	CPUPerMsgUS        float64 `json:"cpu_per_msg_us"`
	Errors             uint64  `json:"errors"`
	Lost               int     `json:"lost"`

	run int // which input it came from
}

// row is one server at one size: its runs of each mode, one per results file.
type row struct {
	server string
	n      int
	idle   []*result
	echo   []*result
	bcast  []*result
}

func main() {
	var ins []io.Reader
	for _, name := range os.Args[1:] {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, "table:", err)
			os.Exit(1)
		}
		defer f.Close()
		ins = append(ins, f)
	}
	if len(ins) == 0 {
		ins = append(ins, os.Stdin)
	}
	rows, err := read(ins...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "table:", err)
		os.Exit(1)
	}
	write(os.Stdout, rows)
}

// read parses the runs, one input per run (one invocation of run.sh), keeping the order
// servers and sizes first appear in.
func read(ins ...io.Reader) ([]*row, error) {
	var rows []*row
	find := func(server string, n int) *row {
		for _, r := range rows {
			if r.server == server && r.n == n {
				return r
			}
		}
		r := &row{server: server, n: n}
		rows = append(rows, r)
		return r
	}
	for run, in := range ins {
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for line := 1; sc.Scan(); line++ {
			server, js, ok := strings.Cut(sc.Text(), "\t")
			if !ok || strings.TrimSpace(js) == "" {
				return nil, fmt.Errorf("run %d, line %d: want NAME<tab>JSON, got %q", run+1, line, sc.Text())
			}
			res := &result{run: run}
			if err := json.Unmarshal([]byte(js), res); err != nil {
				return nil, fmt.Errorf("run %d, line %d: %w", run+1, line, err)
			}
			r := find(server, res.Conns)
			switch res.Mode {
			case "idle":
				r.idle = append(r.idle, res)
			case "echo":
				r.echo = append(r.echo, res)
			case "broadcast":
				r.bcast = append(r.bcast, res)
			default:
				return nil, fmt.Errorf("run %d, line %d: unknown mode %q", run+1, line, res.Mode)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	slices.SortStableFunc(rows, func(a, b *row) int { return a.n - b.n })
	return rows, nil
}

// median is the median of f over rs (the mean of the middle two for an even count).
func median(rs []*result, f func(*result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return medianOf(v)
}

func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// write prints one line per server and size; with several runs every figure is the
// median over them.
func write(w io.Writer, rows []*row) {
	fmt.Fprintln(w, "| server | N | runs | connects/s | idle KiB/conn | echo KiB/conn | echo msg/s | echo RTT p50 / p99 ms | broadcast last p50 / p99 ms | server CPU µs: per connect / echo / broadcast delivery | errors, lost |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		med := func(rs []*result, format string, fs ...func(*result) float64) string {
			if len(rs) == 0 {
				return "–"
			}
			a := make([]any, len(fs))
			for i, f := range fs {
				a[i] = median(rs, f)
			}
			return fmt.Sprintf(format, a...)
		}
		bcast := med(r.bcast, "%.2f / %.2f", func(x *result) float64 { return x.LastP50 }, func(x *result) float64 { return x.LastP99 })
		var complete, sent int
		for _, x := range r.bcast {
			complete += x.BroadcastsComplete
			sent += x.Broadcasts
		}
		if complete < sent {
			bcast += fmt.Sprintf(" (%d/%d complete)", complete, sent)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s / %s / %s | %s |\n", r.server, r.n,
			max(len(r.idle), len(r.echo), len(r.bcast)),
			med(r.idle, "%.0f", func(x *result) float64 { return x.ConnectRate }),
			med(r.idle, "%.1f", func(x *result) float64 { return x.BytesPerConn / 1024 }),
			med(r.echo, "%.1f", func(x *result) float64 { return x.BytesPerConn / 1024 }),
			med(r.echo, "%.0f", func(x *result) float64 { return x.MsgsPerSec }),
			med(r.echo, "%.2f / %.2f", func(x *result) float64 { return x.RTTP50 }, func(x *result) float64 { return x.RTTP99 }),
			bcast,
			med(r.idle, "%.0f", func(x *result) float64 { return x.CPUPerConnUS }),
			med(r.echo, "%.1f", func(x *result) float64 { return x.CPUPerMsgUS }),
			med(r.bcast, "%.2f", func(x *result) float64 { return x.CPUPerMsgUS }),
			troubles(r))
	}
	bars(w, rows)
}

// troubles sums what went wrong over a row's runs, all of them: failed dials and errors,
// lost connections.
func troubles(r *row) string {
	var errs uint64
	var lost int
	for _, x := range slices.Concat(r.idle, r.echo, r.bcast) {
		errs += x.Errors + uint64(x.Failed)
		lost += x.Lost
	}
	return fmt.Sprintf("%d, %d", errs, lost)
}

// ours is the row of the server under test; the others are its peers.
const ours = "dispatchkit"

// bars prints, per size, dispatchkit's figures as ratios to the best peer's in the same run
// (the median over runs when there are several): memory per idle connection (lower is
// better), echo messages/s (higher), broadcast p99 (lower), server CPU per echo and per
// broadcast delivery (lower).
func bars(w io.Writer, rows []*row) {
	var sizes []int
	for _, r := range rows {
		if !slices.Contains(sizes, r.n) {
			sizes = append(sizes, r.n)
		}
	}
	idle := func(r *row) []*result { return r.idle }
	echo := func(r *row) []*result { return r.echo }
	bcast := func(r *row) []*result { return r.bcast }
	var lines []string
	for _, n := range sizes {
		for _, load := range loads(rows) {
			var us *row
			var peers []*row
			for _, r := range rows {
				name, l := splitLoad(r.server)
				switch {
				case r.n != n || l != load:
				case name == ours:
					us = r
				case !strings.HasPrefix(name, ours): // ours under another transport is no peer
					peers = append(peers, r)
				}
			}
			if us == nil || len(peers) == 0 {
				continue
			}
			mem := ratio(us, peers, idle, func(x *result) float64 { return x.BytesPerConn }, false)
			msgs := ratio(us, peers, echo, func(x *result) float64 { return x.MsgsPerSec }, true)
			p99 := ratio(us, peers, bcast, func(x *result) float64 { return x.LastP99 }, false)
			echoCPU := ratio(us, peers, echo, func(x *result) float64 { return x.CPUPerMsgUS }, false)
			bcastCPU := ratio(us, peers, bcast, func(x *result) float64 { return x.CPUPerMsgUS }, false)
			lines = append(lines, fmt.Sprintf("- N=%d%s: idle memory %s; echo msg/s %s; broadcast p99 %s; CPU per echo %s; CPU per broadcast delivery %s",
				n, load, mem, msgs, p99, echoCPU, bcastCPU))
		}
	}
	if len(lines) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "dispatchkit against the best peer in the same run (ratio = ours / best peer's):")
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
	}
}

// splitLoad splits a row's server column, "NAME" or "NAME LOAD" (run.sh labels the mostly
// idle load "NAME 1%"), into the server and " LOAD".
func splitLoad(server string) (name, load string) {
	if i := strings.IndexByte(server, ' '); i >= 0 {
		return server[:i], server[i:]
	}
	return server, ""
}

// loads lists the loads of the rows, "" (the plain modes) first.
func loads(rows []*row) []string {
	out := []string{""}
	for _, r := range rows {
		if _, l := splitLoad(r.server); !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return out
}

// ratio compares, run by run, our figure with the best peer's of the same run: the
// highest if higherBetter, else the lowest. A zero figure is one not measured and is left
// out. Over several runs it gives the median ratio and each run's.
func ratio(us *row, peers []*row, pick func(*row) []*result, fig func(*result) float64, higherBetter bool) string {
	var rs []float64
	var each []string
	for _, u := range pick(us) {
		if fig(u) == 0 {
			continue
		}
		best, name := 0.0, ""
		for _, p := range peers {
			for _, x := range pick(p) {
				v := fig(x)
				if x.run != u.run || v == 0 {
					continue // another run, or not measured (or nothing completed)
				}
				if name == "" || (higherBetter && v > best) || (!higherBetter && v < best) {
					best, name = v, p.server
				}
			}
		}
		if name == "" {
			continue
		}
		rs = append(rs, fig(u)/best)
		each = append(each, fmt.Sprintf("%.2f× %s", fig(u)/best, name))
	}
	if len(rs) == 0 {
		return "not measured"
	}
	r := medianOf(rs)
	better := (higherBetter && r >= 1) || (!higherBetter && r < 1)
	verdict := "behind"
	if better {
		verdict = "ahead"
	}
	how := map[bool]string{true: "higher is better", false: "lower is better"}[higherBetter]
	if len(rs) == 1 {
		return fmt.Sprintf("%s (%s, %s)", each[0], verdict, how)
	}
	return fmt.Sprintf("%.2f× (median of %d runs: %s; %s, %s)", r, len(rs), strings.Join(each, ", "), verdict, how)
}
