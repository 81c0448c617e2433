package main

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// errMismatch counts an echo that is not what was sent.
var errMismatch = errors.New("loadgen: echo differs from the message sent")

// echo runs every connection in a closed loop for cfg.Duration: send a message, wait for
// its echo, record the round trip, again. A stop command or the end of ctx cuts it short.
func (w *worker) echo(ctx context.Context, cmds <-chan command) workerResult {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { waitStop(ctx, cmds); cancel() })

	start := time.Now()
	end := start.Add(w.cfg.Duration)
	var msgs atomic.Uint64
	var mu sync.Mutex
	var r workerResult
	var loops sync.WaitGroup
	for i, c := range w.conns {
		if s := w.cfg.Senders; s > 0 && w.cfg.First+i >= s {
			// An idle one (-senders): it reads only to answer pings; closeAll ends it.
			c.CloseRead(context.Background())
			continue
		}
		loops.Go(func() {
			one := w.echoLoop(ctx, c, end, &msgs)
			mu.Lock()
			defer mu.Unlock()
			r.Msgs += one.Msgs
			r.Errors += one.Errors
			r.Lost += one.Lost
			r.RTT.merge(one.RTT)
		})
	}
	stopProgress := w.progress(func() event { return event{Ev: evProgress, Msgs: msgs.Load()} })
	loops.Wait()
	r.Elapsed = time.Since(start)
	stopProgress()
	cancel()
	wg.Wait()
	return r
}

// echoLoop is one connection's closed loop. An echo still in flight at end may take 10s
// more; then the connection counts as lost.
func (w *worker) echoLoop(ctx context.Context, c *websocket.Conn, end time.Time, msgs *atomic.Uint64) workerResult {
	ctx, cancel := context.WithDeadline(ctx, end.Add(10*time.Second))
	defer cancel()
	out := payload('e', w.cfg.Size)
	var r workerResult
	for time.Now().Before(end) {
		t0 := time.Now()
		err := c.Write(ctx, websocket.MessageBinary, out)
		var in []byte
		if err == nil {
			_, in, err = c.Read(ctx)
		}
		if err != nil {
			// Canceled is a stop command; a deadline is an echo that never came.
			if !errors.Is(ctx.Err(), context.Canceled) {
				r.Errors++
				r.Lost++
				w.noteErr(err)
			}
			return r
		}
		if !bytes.Equal(in, out) {
			r.Errors++
			w.noteErr(errMismatch)
			continue
		}
		r.RTT.add(time.Since(t0))
		r.Msgs++
		msgs.Add(1)
	}
	return r
}

// payload is a message of size bytes starting with first.
func payload(first byte, size int) []byte {
	p := bytes.Repeat([]byte{'x'}, size)
	p[0] = first
	return p
}

// bcastPayload is broadcast seq: "B<seq> <send time in Unix ns> " padded to size, so that
// receivers in other processes can time it.
func bcastPayload(seq int, sent time.Time, size int) []byte {
	p := payload('x', size)
	head := strconv.AppendInt([]byte{'B'}, int64(seq), 10)
	head = append(head, ' ')
	head = strconv.AppendInt(head, sent.UnixNano(), 10)
	head = append(head, ' ')
	copy(p, head)
	return p
}

// parseBcast reads a broadcast's sequence number and send time.
func parseBcast(p []byte) (seq int, sent time.Time, ok bool) {
	if len(p) == 0 || p[0] != 'B' {
		return 0, time.Time{}, false
	}
	fields := bytes.SplitN(p[1:], []byte{' '}, 3)
	if len(fields) < 3 {
		return 0, time.Time{}, false
	}
	s, err1 := strconv.Atoi(string(fields[0]))
	ns, err2 := strconv.ParseInt(string(fields[1]), 10, 64)
	if err1 != nil || err2 != nil || s < 0 {
		return 0, time.Time{}, false
	}
	return s, time.Unix(0, ns), true
}

// broadcast reads every connection; on a send command the first connection sends a
// broadcast, and once every live connection of this worker has received it the worker
// reports the slowest receiver. It ends on a stop command, closing the connections.
func (w *worker) broadcast(ctx context.Context, cmds <-chan command) workerResult {
	st := &bcastState{live: len(w.conns), seqs: make(map[int]*bseq), emit: w.emit}
	var stopping atomic.Bool
	var r workerResult
	var lost, bad atomic.Int64
	var wg sync.WaitGroup
	for _, c := range w.conns {
		wg.Go(func() {
			for {
				_, data, err := c.Read(ctx)
				if err != nil {
					if !stopping.Load() {
						lost.Add(1)
						w.noteErr(err)
						st.lose()
					}
					return
				}
				seq, sent, ok := parseBcast(data)
				if !ok {
					bad.Add(1)
					continue
				}
				st.record(seq, max(time.Since(sent), 0))
			}
		})
	}
	for done := false; !done; {
		select {
		case c, ok := <-cmds:
			switch {
			case !ok || c.Cmd == cmdStop:
				done = true
			case c.Cmd == cmdSend && len(w.conns) > 0:
				if err := w.send(ctx, c.Seq); err != nil {
					r.Errors++
					w.noteErr(err)
				}
			}
		case <-ctx.Done():
			done = true
		}
	}
	stopping.Store(true)
	w.closeAll() // ends the readers
	wg.Wait()
	r.Lost = int(lost.Load())
	r.Errors += uint64(bad.Load())
	return r
}

func (w *worker) send(ctx context.Context, seq int) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return w.conns[0].Write(ctx, websocket.MessageBinary, bcastPayload(seq, time.Now(), w.cfg.Size))
}

// bcastState counts, per broadcast, the connections that got it.
type bcastState struct {
	mu   sync.Mutex
	live int
	seqs map[int]*bseq
	emit func(event)
}

type bseq struct {
	got      int
	last     time.Duration
	reported bool
}

func (b *bcastState) record(seq int, latency time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.seqs[seq]
	if s == nil {
		s = &bseq{}
		b.seqs[seq] = s
	}
	s.got++
	s.last = max(s.last, latency)
	b.check(seq, s)
}

// lose takes a connection that ended out of the count still to receive.
func (b *bcastState) lose() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.live--
	for seq, s := range b.seqs {
		b.check(seq, s)
	}
}

func (b *bcastState) check(seq int, s *bseq) {
	if !s.reported && s.got >= b.live {
		s.reported = true
		b.emit(event{Ev: evBcast, Seq: seq, Got: s.got, Last: s.last})
	}
}
