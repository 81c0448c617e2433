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
// It holds queues weakly: a queue dropped without Close leaves the inspector when the garbage
// collector takes it, so a server that makes a queue per connection does not leak through it.
type Inspector struct {
	queues  sync.Map // weak.Pointer[queue.Queue] -> *queueFigures
	mu      sync.Mutex
	servers map[string]*wsserver.Server
	started time.Time
}

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
	q    weak.Pointer[queue.Queue]
	wait waitHistogram
	site atomic.Pointer[string] // the last enqueue site seen (queue.WithCallSites)
}

// QueueCreated starts keeping figures for q.
func (in *Inspector) QueueCreated(q *queue.Queue) {
	p := weak.Make(q)
	in.queues.Store(p, &queueFigures{q: p})
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

// Snapshot is what the inspector serves as JSON.
type Snapshot struct {
	Time     time.Time                       `json:"time"`
	Uptime   float64                         `json:"uptime_seconds"`
	Executor queue.ExecutorStats             `json:"executor"`
	Servers  map[string]wsserver.ServerStats `json:"servers,omitempty"`
	Labels   []LabelFigures                  `json:"labels"`
	Total    int                             `json:"queues_total"` // live queues observed
	Queues   []QueueFigures                  `json:"queues"`       // the busiest, or all with ?all=1
}

// LabelFigures sums the live queues of one label.
type LabelFigures struct {
	Label    string `json:"label"`
	Queues   int    `json:"queues"`
	Pending  int    `json:"pending"`
	Running  int    `json:"running"`
	Executed uint64 `json:"executed"`
	Rejected uint64 `json:"rejected"`
}

// QueueFigures is one live queue.
type QueueFigures struct {
	Label     string  `json:"label"`
	Serial    bool    `json:"serial"`
	QoS       string  `json:"qos"`
	Width     int     `json:"width"`
	Target    string  `json:"target,omitempty"`
	Pending   int     `json:"pending"`
	Running   int     `json:"running"`
	Executed  uint64  `json:"executed"`
	Rejected  uint64  `json:"rejected"`
	Cancelled uint64  `json:"cancelled"`
	Suspended bool    `json:"suspended,omitempty"`
	Inactive  bool    `json:"inactive,omitempty"`
	Closed    bool    `json:"closed,omitempty"`
	WaitP50   float64 `json:"wait_p50_seconds"` // since the queue was made
	WaitP99   float64 `json:"wait_p99_seconds"`
	Site      string  `json:"last_site,omitempty"` // with queue.WithCallSites
}

// busiest is how many queues a snapshot lists unless asked for all of them.
const busiest = 100

// Snapshot returns the figures of every live queue observed (the busiest 100 unless all),
// summed by label, with the executor's and the watched servers' stats.
func (in *Inspector) Snapshot(all bool) Snapshot {
	s := Snapshot{Time: time.Now(), Uptime: time.Since(in.started).Seconds(), Executor: queue.Executor()}
	labels := map[string]*LabelFigures{}
	in.queues.Range(func(k, v any) bool {
		f := v.(*queueFigures)
		q := f.q.Value()
		if q == nil {
			in.queues.Delete(k)
			return true
		}
		st := q.Stats()
		qf := QueueFigures{
			Label: st.Label, Serial: st.Serial, QoS: st.QoS.String(), Width: st.Width,
			Pending: st.Pending, Running: st.Running, Executed: st.Executed,
			Rejected: st.Rejected, Cancelled: st.Cancelled,
			Suspended: st.Suspended, Inactive: st.Inactive, Closed: st.Closed,
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
			s.Servers = map[string]wsserver.ServerStats{}
		}
		s.Servers[name] = srv.Stats()
	}
	in.mu.Unlock()
	return s
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
