// Command table turns the results of bench/ws/run.sh into one Markdown table, with the
// issue's bars checked as ratios between dispatchkit and its peers in the same run.
//
// Its input has one line per run: the server's name, a tab, and loadgen's -json output.
//
//	go run ./ws/table results.tsv
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
}

// row is one server at one size: its three runs.
type row struct {
	server string
	n      int
	idle   *result
	echo   *result
	bcast  *result
}

func main() {
	in := io.Reader(os.Stdin)
	if len(os.Args) > 1 {
		f, err := os.Open(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "table:", err)
			os.Exit(1)
		}
		defer f.Close()
		in = f
	}
	rows, err := read(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "table:", err)
		os.Exit(1)
	}
	write(os.Stdout, rows)
}

// read parses the runs, keeping the order servers and sizes first appear in.
func read(in io.Reader) ([]*row, error) {
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
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		server, js, ok := strings.Cut(sc.Text(), "\t")
		if !ok || strings.TrimSpace(js) == "" {
			return nil, fmt.Errorf("line %d: want NAME<tab>JSON, got %q", line, sc.Text())
		}
		var res result
		if err := json.Unmarshal([]byte(js), &res); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		r := find(server, res.Conns)
		switch res.Mode {
		case "idle":
			r.idle = &res
		case "echo":
			r.echo = &res
		case "broadcast":
			r.bcast = &res
		default:
			return nil, fmt.Errorf("line %d: unknown mode %q", line, res.Mode)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	slices.SortStableFunc(rows, func(a, b *row) int { return a.n - b.n })
	return rows, nil
}

func write(w io.Writer, rows []*row) {
	fmt.Fprintln(w, "| server | N | connects/s | idle KiB/conn | echo KiB/conn | echo msg/s | echo RTT p50 / p99 ms | broadcast last p50 / p99 ms | server CPU µs: per connect / echo / broadcast delivery | errors, lost |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s | %s | %s / %s / %s | %s |\n", r.server, r.n,
			opt(r.idle, func(x *result) string { return fmt.Sprintf("%.0f", x.ConnectRate) }),
			opt(r.idle, func(x *result) string { return fmt.Sprintf("%.1f", x.BytesPerConn/1024) }),
			opt(r.echo, func(x *result) string { return fmt.Sprintf("%.1f", x.BytesPerConn/1024) }),
			opt(r.echo, func(x *result) string { return fmt.Sprintf("%.0f", x.MsgsPerSec) }),
			opt(r.echo, func(x *result) string { return fmt.Sprintf("%.2f / %.2f", x.RTTP50, x.RTTP99) }),
			opt(r.bcast, func(x *result) string {
				s := fmt.Sprintf("%.2f / %.2f", x.LastP50, x.LastP99)
				if x.BroadcastsComplete < x.Broadcasts {
					s += fmt.Sprintf(" (%d/%d complete)", x.BroadcastsComplete, x.Broadcasts)
				}
				return s
			}),
			opt(r.idle, func(x *result) string { return fmt.Sprintf("%.0f", x.CPUPerConnUS) }),
			opt(r.echo, func(x *result) string { return fmt.Sprintf("%.1f", x.CPUPerMsgUS) }),
			opt(r.bcast, func(x *result) string { return fmt.Sprintf("%.2f", x.CPUPerMsgUS) }),
			troubles(r))
	}
	bars(w, rows)
}

func opt(r *result, f func(*result) string) string {
	if r == nil {
		return "–"
	}
	return f(r)
}

// troubles sums what went wrong over a row's runs: failed dials and errors, lost
// connections.
func troubles(r *row) string {
	var errs uint64
	var lost int
	for _, x := range []*result{r.idle, r.echo, r.bcast} {
		if x != nil {
			errs += x.Errors + uint64(x.Failed)
			lost += x.Lost
		}
	}
	return fmt.Sprintf("%d, %d", errs, lost)
}

// ours is the row of the server under test; the others are its peers.
const ours = "dispatchkit"

// bars prints, per size, dispatchkit's figures as ratios to the best peer's: memory per
// idle connection (lower is better), echo messages/s (higher), broadcast p99 (lower).
func bars(w io.Writer, rows []*row) {
	var sizes []int
	for _, r := range rows {
		if !slices.Contains(sizes, r.n) {
			sizes = append(sizes, r.n)
		}
	}
	var lines []string
	for _, n := range sizes {
		var us *row
		var peers []*row
		for _, r := range rows {
			if r.n != n {
				continue
			}
			if r.server == ours {
				us = r
			} else {
				peers = append(peers, r)
			}
		}
		if us == nil || len(peers) == 0 {
			continue
		}
		mem := ratio(us, peers, func(r *row) *result { return r.idle }, func(x *result) float64 { return x.BytesPerConn }, false)
		echo := ratio(us, peers, func(r *row) *result { return r.echo }, func(x *result) float64 { return x.MsgsPerSec }, true)
		p99 := ratio(us, peers, func(r *row) *result { return r.bcast }, func(x *result) float64 { return x.LastP99 }, false)
		echoCPU := ratio(us, peers, func(r *row) *result { return r.echo }, func(x *result) float64 { return x.CPUPerMsgUS }, false)
		bcastCPU := ratio(us, peers, func(r *row) *result { return r.bcast }, func(x *result) float64 { return x.CPUPerMsgUS }, false)
		lines = append(lines, fmt.Sprintf("- N=%d: idle memory %s; echo msg/s %s; broadcast p99 %s; CPU per echo %s; CPU per broadcast delivery %s",
			n, mem, echo, p99, echoCPU, bcastCPU))
	}
	if len(lines) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "dispatchkit against the best peer (ratio = ours / best peer's):")
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
	}
}

// ratio compares our figure with the best peer's: the highest if higherBetter, else the
// lowest. A zero figure is one not measured and is left out.
func ratio(us *row, peers []*row, pick func(*row) *result, fig func(*result) float64, higherBetter bool) string {
	u := pick(us)
	if u == nil || fig(u) == 0 {
		return "not measured"
	}
	best, name := 0.0, ""
	for _, p := range peers {
		x := pick(p)
		if x == nil {
			continue
		}
		v := fig(x)
		if v == 0 {
			continue // not measured (or nothing completed): no figure to compare with
		}
		if name == "" || (higherBetter && v > best) || (!higherBetter && v < best) {
			best, name = v, p.server
		}
	}
	if name == "" {
		return "no peer figure"
	}
	r := fig(u) / best
	better := (higherBetter && r >= 1) || (!higherBetter && r < 1)
	verdict := "behind"
	if better {
		verdict = "ahead"
	}
	return fmt.Sprintf("%.2f× %s (%s, %s)", r, name, verdict, map[bool]string{true: "higher is better", false: "lower is better"}[higherBetter])
}
