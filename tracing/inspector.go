package tracing

import (
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"math"
	"math/bits"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/dispatchkit/dispatchkit/wsserver"
)

//go:embed inspector.html
var inspectorPage []byte

// An Inspector is a live view of queues: an http.Handler (mount it at, say, /debug/dispatch)
// that serves a self-contained page charting the queues it observes, and their figures as
// JSON (?format=json). It gets its figures as a queue.Observer, so only the queues given to
// it pay for them: pass it to queue.WithObserver, or to an Observer with WithInspector.
//
// It holds queues weakly: a queue dropped without Close leaves the inspector once the garbage
// collector has taken it (at the next look, or the sweep that queues created later bring
// on), so a server that makes a queue per connection or per room does not leak through it.
type Inspector struct {
	queues  sync.Map // weak.Pointer[queue.Queue] -> *queueFigures
	entries sweeper  // forgets the collected queues' figures as queues come and go
	mu      sync.Mutex
	servers map[string]*wsserver.Server
	started time.Time
	hist    []HistoryPoint // the last historyLen samples, oldest first; under mu
	asked   time.Time      // the last request: the sampler runs while someone looks; under mu
	ticking bool           // the sampler's timer is armed; under mu
}

// historyLen is how many samples (one a second) the inspector keeps for its charts.
const historyLen = 120

// NewInspector returns an Inspector that observes no queue yet.
func NewInspector() *Inspector {
	return &Inspector{started: time.Now()}
}

var _ queue.Observer = (*Inspector)(nil)

// WatchServer adds a server's Stats to the inspector's page and JSON, under name.
func (in *Inspector) WatchServer(name string, s *wsserver.Server) {
	in.mu.Lock()
	if in.servers == nil {
		in.servers = map[string]*wsserver.Server{}
	}
	in.servers[name] = s
	in.mu.Unlock()
}

// queueFigures is what the inspector keeps per queue: about 200 bytes.
type queueFigures struct {
	q     weak.Pointer[queue.Queue]
	wait  waitHistogram
	syncs atomic.Uint64          // Sync blocks run (Stats.Executed counts only submitted ones)
	site  atomic.Pointer[string] // the last enqueue site seen (queue.WithCallSites)
}

// QueueCreated starts keeping figures for q.
func (in *Inspector) QueueCreated(q *queue.Queue) {
	p := weak.Make(q)
	in.queues.Store(p, &queueFigures{q: p})
	in.entries.added(func() (live int) {
		in.queues.Range(func(k, v any) bool {
			if v.(*queueFigures).q.Value() == nil {
				in.queues.Delete(k)
			} else {
				live++
			}
			return true
		})
		return live
	})
}

// QueueClosed stops keeping figures for q.
func (in *Inspector) QueueClosed(q *queue.Queue) { in.queues.Delete(weak.Make(q)) }

// Enqueued does nothing: the inspector needs nothing at enqueue.
func (in *Inspector) Enqueued(q *queue.Queue, ctx context.Context, kind queue.BlockKind) context.Context {
	return ctx
}

// Started does nothing: waits are recorded with the run, in Finished.
func (in *Inspector) Started(q *queue.Queue, ctx context.Context, b queue.BlockInfo) context.Context {
	return ctx
}

// Finished records the block's wait and where it was submitted.
func (in *Inspector) Finished(q *queue.Queue, ctx context.Context, b queue.BlockInfo) {
	v, ok := in.queues.Load(weak.Make(q))
	if !ok {
		return
	}
	f := v.(*queueFigures)
	f.wait.add(b.Wait)
	if b.Kind == queue.BlockSync {
		f.syncs.Add(1)
	}
	if b.Site != "" {
		if cur := f.site.Load(); cur == nil || *cur != b.Site {
			s := b.Site
			f.site.Store(&s)
		}
	}
}

// Rejected does nothing: refusals are in the queue's own Stats.
func (in *Inspector) Rejected(q *queue.Queue, err error) {}

// waitHistogram counts waits in power-of-two buckets of microseconds: bucket i holds waits
// below 2^i µs (bucket 0: under 1 µs), the last one everything from about 17 s up.
type waitHistogram struct {
	b [waitBuckets]atomic.Uint32
}

const waitBuckets = 26

func (h *waitHistogram) add(d time.Duration) {
	us := uint64(max(d, 0) / time.Microsecond)
	h.b[min(bits.Len64(us), waitBuckets-1)].Add(1)
}

// quantile estimates the q-quantile (0 < q <= 1) in seconds, interpolating geometrically
// inside the bucket; 0 with no samples.
func (h *waitHistogram) quantile(q float64) float64 {
	var counts [waitBuckets]uint64
	var total uint64
	for i := range h.b {
		counts[i] = uint64(h.b[i].Load())
		total += counts[i]
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen float64
	for i, n := range counts {
		if n == 0 {
			continue
		}
		if seen+float64(n) >= rank {
			lo, hi := 0.0, 1e-6 // bucket 0: [0, 1 µs)
			if i > 0 {
				lo, hi = math.Ldexp(1e-6, i-1), math.Ldexp(1e-6, i)
			}
			frac := (rank - seen) / float64(n)
			if lo == 0 {
				return hi * frac
			}
			return lo * math.Pow(hi/lo, frac)
		}
		seen += float64(n)
	}
	return math.Ldexp(1e-6, waitBuckets-1)
}

// Snapshot is what the inspector serves as JSON. Every key is snake_case.
type Snapshot struct {
	Time     time.Time                `json:"time"`
	Uptime   float64                  `json:"uptime_seconds"`
	Executor ExecutorFigures          `json:"executor"`
	Servers  map[string]ServerFigures `json:"servers,omitempty"`
	Labels   []LabelFigures           `json:"labels"`
	Total    int                      `json:"queues_total"` // live queues observed
	Queues   []QueueFigures           `json:"queues"`       // the busiest, or all with ?all=1
	History  []HistoryPoint           `json:"history"`      // the last two minutes, oldest first
}

// ExecutorFigures is queue.ExecutorStats as the inspector serves it.
type ExecutorFigures struct {
	GOMAXPROCS int    `json:"gomaxprocs"`
	Workers    int    `json:"workers"`
	Blocked    int    `json:"blocked"`
	Lent       int    `json:"lent"`
	LentTotal  uint64 `json:"lent_total"`
	Queued     int    `json:"queued"`
}

// ServerFigures is what the inspector serves of a watched server's wsserver.ServerStats.
type ServerFigures struct {
	Connections        int    `json:"connections"`
	Rooms              int    `json:"rooms"`
	Accepted           uint64 `json:"accepted"`
	Rejected           uint64 `json:"rejected"`
	MessagesIn         uint64 `json:"messages_in"`
	MessagesOut        uint64 `json:"messages_out"`
	BytesIn            uint64 `json:"bytes_in"`
	BytesOut           uint64 `json:"bytes_out"`
	Dropped            uint64 `json:"dropped"`
	SlowConsumerCloses uint64 `json:"slow_consumer_closes"`
	Pending            int    `json:"pending"`
	Queued             int    `json:"queued"`
	BrokerPublished    uint64 `json:"broker_published,omitempty"`
	BrokerReceived     uint64 `json:"broker_received,omitempty"`
	BrokerDropped      uint64 `json:"broker_dropped,omitempty"`
	BrokerErrors       uint64 `json:"broker_errors,omitempty"`
	BrokerErr          string `json:"broker_error,omitempty"`
}

func serverFigures(st wsserver.ServerStats) ServerFigures {
	f := ServerFigures{
		Connections: st.Connections, Rooms: st.Rooms, Accepted: st.Accepted, Rejected: st.Rejected,
		MessagesIn: st.MessagesIn, MessagesOut: st.MessagesOut, BytesIn: st.BytesIn, BytesOut: st.BytesOut,
		Dropped: st.Dropped, SlowConsumerCloses: st.SlowConsumerCloses, Pending: st.Pending, Queued: st.Queued,
		BrokerPublished: st.BrokerPublished, BrokerReceived: st.BrokerReceived,
		BrokerDropped: st.BrokerDropped, BrokerErrors: st.BrokerErrors,
	}
	if st.BrokerErr != nil {
		f.BrokerErr = st.BrokerErr.Error()
	}
	return f
}

// HistoryPoint is one sample of the labels' figures, for the page's charts.
type HistoryPoint struct {
	Time   time.Time               `json:"time"`
	Labels map[string]LabelHistory `json:"labels"`
}

// LabelHistory is one label's figures in a HistoryPoint.
type LabelHistory struct {
	Ran     uint64 `json:"ran"` // blocks run so far: executed and Syncs
	Pending int    `json:"pending"`
}

// LabelFigures sums the live queues of one label.
type LabelFigures struct {
	Label    string `json:"label"`
	Queues   int    `json:"queues"`
	Pending  int    `json:"pending"`
	Running  int    `json:"running"`
	Executed uint64 `json:"executed"`
	Syncs    uint64 `json:"syncs"` // Sync blocks run, which Executed does not count
	Rejected uint64 `json:"rejected"`
}

// QueueFigures is one live queue.
type QueueFigures struct {
	Label     string  `json:"label"`
	Key       string  `json:"key,omitempty"` // queue.WithKey: which one of its label
	Serial    bool    `json:"serial"`
	QoS       string  `json:"qos"`
	Width     int     `json:"width"`
	Target    string  `json:"target,omitempty"`
	Pending   int     `json:"pending"`
	Running   int     `json:"running"`
	Executed  uint64  `json:"executed"`
	Syncs     uint64  `json:"syncs"`
	Rejected  uint64  `json:"rejected"`
	Cancelled uint64  `json:"cancelled"`
	Suspended bool    `json:"suspended,omitempty"`
	Inactive  bool    `json:"inactive,omitempty"`
	Closed    bool    `json:"closed,omitempty"` // always false now: a closed queue leaves the snapshot
	WaitP50   float64 `json:"wait_p50_seconds"` // since the queue was made
	WaitP99   float64 `json:"wait_p99_seconds"`
	Site      string  `json:"last_site,omitempty"` // with queue.WithCallSites
}

// busiest is how many queues a snapshot lists unless asked for all of them.
const busiest = 100

// Snapshot returns the figures of every live queue observed (the busiest 100 unless all),
// summed by label, with the executor's and the watched servers' stats.
func (in *Inspector) Snapshot(all bool) Snapshot {
	ex := queue.Executor()
	s := Snapshot{Time: time.Now(), Uptime: time.Since(in.started).Seconds(), Executor: ExecutorFigures{
		GOMAXPROCS: ex.GOMAXPROCS, Workers: ex.Workers, Blocked: ex.Blocked, Lent: ex.Lent,
		LentTotal: ex.LentTotal, Queued: ex.Queued,
	}}
	labels := map[string]*LabelFigures{}
	in.queues.Range(func(k, v any) bool {
		f := v.(*queueFigures)
		q := f.q.Value()
		if q == nil || q.Closed() {
			in.queues.Delete(k) // dropped, or closed without the Observer being told
			return true
		}
		st := q.Stats()
		qf := QueueFigures{
			Label: st.Label, Key: st.Key, Serial: st.Serial, QoS: st.QoS.String(), Width: st.Width,
			Pending: st.Pending, Running: st.Running, Executed: st.Executed, Syncs: f.syncs.Load(),
			Rejected: st.Rejected, Cancelled: st.Cancelled,
			Suspended: st.Suspended, Inactive: st.Inactive,
			WaitP50: f.wait.quantile(0.5), WaitP99: f.wait.quantile(0.99),
		}
		if t := q.Target(); t != nil {
			qf.Target = t.Label()
		}
		if site := f.site.Load(); site != nil {
			qf.Site = *site
		}
		s.Queues = append(s.Queues, qf)
		lf := labels[st.Label]
		if lf == nil {
			lf = &LabelFigures{Label: st.Label}
			labels[st.Label] = lf
		}
		lf.Queues++
		lf.Pending += st.Pending
		lf.Running += st.Running
		lf.Executed += st.Executed
		lf.Syncs += qf.Syncs
		lf.Rejected += st.Rejected
		return true
	})
	s.Total = len(s.Queues)
	slices.SortFunc(s.Queues, func(a, b QueueFigures) int {
		if c := cmp.Compare(b.Pending+b.Running, a.Pending+a.Running); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Executed, a.Executed); c != 0 {
			return c
		}
		return strings.Compare(a.Label, b.Label)
	})
	if !all && len(s.Queues) > busiest {
		s.Queues = s.Queues[:busiest]
	}
	for _, lf := range labels {
		s.Labels = append(s.Labels, *lf)
	}
	slices.SortFunc(s.Labels, func(a, b LabelFigures) int { return strings.Compare(a.Label, b.Label) })
	in.mu.Lock()
	for name, srv := range in.servers {
		if s.Servers == nil {
			s.Servers = map[string]ServerFigures{}
		}
		s.Servers[name] = serverFigures(srv.Stats())
	}
	in.recordLocked(s.Time, s.Labels)
	s.History = slices.Clone(in.hist)
	in.mu.Unlock()
	return s
}

// recordLocked adds a history point, at most one a second; in.mu is held.
func (in *Inspector) recordLocked(now time.Time, labels []LabelFigures) {
	if n := len(in.hist); n > 0 && now.Sub(in.hist[n-1].Time) < 900*time.Millisecond {
		return
	}
	p := HistoryPoint{Time: now, Labels: make(map[string]LabelHistory, len(labels))}
	for _, l := range labels {
		p.Labels[l.Label] = LabelHistory{Ran: l.Executed + l.Syncs, Pending: l.Pending}
	}
	if len(in.hist) == historyLen {
		in.hist = append(in.hist[:0], in.hist[1:]...)
	}
	in.hist = append(in.hist, p)
}

// sample takes a history point every second while the inspector has been asked for
// something in the last two minutes, so that a page opened starts its charts with history.
// It runs on a timer, not a goroutine of its own, and stops when nobody looks.
func (in *Inspector) sample() {
	in.Snapshot(false)
	in.mu.Lock()
	defer in.mu.Unlock()
	if time.Since(in.asked) > historyLen*time.Second {
		in.ticking = false
		return
	}
	time.AfterFunc(time.Second, in.sample)
}

// looked notes a request and starts the sampler if it is not running.
func (in *Inspector) looked() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.asked = time.Now()
	if !in.ticking {
		in.ticking = true
		time.AfterFunc(time.Second, in.sample)
	}
}

// ServeHTTP serves the page, or the Snapshot as JSON when the request asks for it
// (?format=json, or an Accept header naming application/json); ?all=1 lists every queue.
func (in *Inspector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	in.looked()
	if r.URL.Query().Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json") {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", " ")
		_ = enc.Encode(in.Snapshot(r.URL.Query().Get("all") == "1"))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(inspectorPage)
}
