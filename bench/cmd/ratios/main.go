// Command ratios reads `go test -bench` output and prints dispatchkit's queue figures as
// ratios to their peers' medians, measured in the same run, with the bar each must meet
// (issues 2 and 16). bench/run-queue.sh runs it after benchstat.
//
//	go run ./cmd/ratios new.txt
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// comparison is one ratio: ours / peer's median for a unit, and the bar it must be at or
// under (0: no bar, shown for information).
type comparison struct {
	what      string
	ours, per string
	unit      string
	bar       float64
}

var comparisons = []comparison{
	{"serial Async, drained, vs buffered channel + receiver", "SerialAsync", "SerialPeerChannel", "ns/op", 0.5},
	{"serial Async, drained, vs bare mutex-guarded append", "SerialAsync", "SerialPeerMutexAppend", "ns/op", 2},
	{"serial Async, drained, vs mutex slice + drainer", "SerialAsync", "SerialPeerMutexDrainer", "ns/op", 0},
	{"serial, idle after each block (one conn's message), vs goroutine + channel", "SerialIdleRoundTrip", "SerialIdleRoundTripPeerChannel", "ns/op", 0},
	{"serial as a lock: Guarded.Async vs sync.Mutex", "LockGuardedAsync", "LockPeerMutex", "ns/op", 3},
	{"serial as a lock: Guarded.Async vs channel owner", "LockGuardedAsync", "LockPeerChannelOwner", "ns/op", 0},
	{"serial as a lock: Queue.Sync vs sync.Mutex", "LockQueueSync", "LockPeerMutex", "ns/op", 5},
	{"serial as a lock: Queue.Sync, pprof labels off, vs sync.Mutex", "LockQueueSyncNoProfileLabels", "LockPeerMutex", "ns/op", 0},
	{"concurrent submit+wait vs go f() + WaitGroup", "ConcurrentAsync", "ConcurrentPeerGoWaitGroup", "ns/op", 0.6},
	{"concurrent submit+wait vs ants", "ConcurrentAsync", "ConcurrentPeerAnts", "ns/op", 1},
	{"concurrent submit+wait vs pond", "ConcurrentAsync", "ConcurrentPeerPond", "ns/op", 1},
	{"concurrent submit+wait vs errgroup SetLimit", "ConcurrentAsync", "ConcurrentPeerErrgroup", "ns/op", 0},
	{"idle queue bytes vs goroutine + channel", "IdleQueue", "IdlePeerGoroutineAndChannel", "bytes/queue", 0},
	{"ping-pong between two serial queues vs channels", "PingPong", "PingPongPeerChannels", "ns/op", 1},
	{"starfish, 1000 serial queues, per message, vs goroutines + channels", "Starfish", "StarfishPeerChannels", "ns/op", 0.5},
	{"starfish per message, pprof labels on vs off", "Starfish", "StarfishNoProfileLabels", "ns/op", 0},
	{"serial Async per block, pprof labels on vs off", "SerialAsync", "SerialAsyncNoProfileLabels", "ns/op", 0},
}

// limit is an absolute bar on one of our figures.
type limit struct {
	name, unit string
	max        float64
}

var limits = []limit{
	{"IdleQueue", "bytes/queue", 256},
	{"IdleQueue", "goroutines/queue", 0},
	{"IdleQueue", "MiB/1M-queues", 256},
}

func main() {
	in := io.Reader(os.Stdin)
	if len(os.Args) > 1 {
		f, err := os.Open(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "ratios:", err)
			os.Exit(1)
		}
		defer f.Close()
		in = f
	}
	m, err := parse(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ratios:", err)
		os.Exit(1)
	}
	report(os.Stdout, m)
}

// medians maps benchmark name (without the -GOMAXPROCS suffix) and unit to the median.
type medians map[string]map[string]float64

var cpuSuffix = regexp.MustCompile(`-\d+$`)

// parse reads benchmark result lines: name, iterations, then value-unit pairs.
func parse(in io.Reader) (medians, error) {
	samples := map[string]map[string][]float64{}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := cpuSuffix.ReplaceAllString(strings.TrimPrefix(f[0], "Benchmark"), "")
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			if samples[name] == nil {
				samples[name] = map[string][]float64{}
			}
			samples[name][f[i+1]] = append(samples[name][f[i+1]], v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	m := medians{}
	for name, units := range samples {
		m[name] = map[string]float64{}
		for unit, vs := range units {
			m[name][unit] = median(vs)
		}
	}
	return m, nil
}

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func report(w io.Writer, m medians) {
	fmt.Fprintln(w, "ratios of medians (ours / peer), same run:")
	for _, c := range comparisons {
		o, ok1 := m[c.ours][c.unit]
		p, ok2 := m[c.per][c.unit]
		if !ok1 || !ok2 || p == 0 {
			continue
		}
		r := o / p
		verdict := ""
		if c.bar > 0 {
			verdict = fmt.Sprintf("  bar ≤ %.2f×: %s", c.bar, metOrMissed(r <= c.bar))
		}
		fmt.Fprintf(w, "  %-55s %8.4g / %-8.4g %s = %6.2f×%s\n", c.what, o, p, c.unit, r, verdict)
	}
	for _, l := range limits {
		v, ok := m[l.name][l.unit]
		if !ok {
			continue
		}
		fmt.Fprintf(w, "  %-55s %8.4g %s  bar ≤ %g: %s\n", l.name+" "+l.unit, v, l.unit, l.max, metOrMissed(v <= l.max))
	}
}

func metOrMissed(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
